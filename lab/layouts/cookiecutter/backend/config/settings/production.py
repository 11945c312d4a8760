"""Settings of the staging and production servers (DJANGO_SETTINGS_MODULE in .envs/.production/.django)."""
from .base import *  # noqa: F403
from .base import os

# GENERAL
# ------------------------------------------------------------------------------
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1").split(",")

# DATABASES
# ------------------------------------------------------------------------------
DATABASES["default"]["CONN_MAX_AGE"] = 60  # noqa: F405
