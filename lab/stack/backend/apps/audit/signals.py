"""Audit trail signal handlers."""
import logging

from django.db.models.signals import post_migrate
from django.dispatch import receiver

logger = logging.getLogger(__name__)


@receiver(post_migrate)
def audit_migrations(sender, **kwargs):
    logger.debug("audit: migrations applied for %s", sender.label)
