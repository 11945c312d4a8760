"""Drift: the playbooks in check mode plus diagnose's health checks, judged as hosts x checks (model.py,
assess.py), read as text or JSON (text.py), JUnit (junit.py) or one HTML page (html.py), recorded (history.py),
announced (notify.py) and scheduled (schedule.py). api.drift runs it."""
from .assess import HEALTH_CHECKS, OTHER_HEALTH, assess, health_checks, playbook_checks, task_states
from .model import (
    PLAYBOOK_PREFIX, Check, CheckStatus, DriftReport, FixOutcome, TaskState, from_doc, playbook_check_name, shown_path,
    to_doc,
)
from .text import render_json, render_text

__all__ = ["HEALTH_CHECKS", "OTHER_HEALTH", "PLAYBOOK_PREFIX", "Check", "CheckStatus", "DriftReport", "FixOutcome",
           "TaskState", "assess", "from_doc", "health_checks", "playbook_check_name", "playbook_checks",
           "render_json", "render_text", "shown_path", "task_states", "to_doc"]
