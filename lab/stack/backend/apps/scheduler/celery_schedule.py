"""Scheduler notes kept next to the tasks. Nothing imports this module: a setting here never reaches Django
settings (the first write-up found CELERY_BEAT_SCHEDULER in a file like this and assumed it was in effect)."""

CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'
