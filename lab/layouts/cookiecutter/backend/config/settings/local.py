"""Settings for a developer's checkout (manage.py's default)."""
from .base import *  # noqa: F403
from .base import os

DEBUG = True
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "local-only-not-a-secret")
ALLOWED_HOSTS = ["localhost", "0.0.0.0", "127.0.0.1"]
