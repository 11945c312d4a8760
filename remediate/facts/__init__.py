"""Read-only probes of a host and their pure parsers: files, the compose model and containers, Django shell
queries, Celery's state, beat's own answers, registered tasks, the source tree, the backups kept there.

Steps plan from these facts; diagnose and drift judge them; nothing here changes a host, except the locked,
atomic write and removal scripts in files.py, which share their shell fragments with the read.
"""
