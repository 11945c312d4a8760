#!/usr/bin/env python
"""Django's command-line utility for the EDMS backend."""
import os
import sys

if __name__ == "__main__":
    # The containers get config.settings.production from .envs/.production/.django; local is the default
    # for a developer's checkout.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
