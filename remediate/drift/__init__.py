"""Drift: the playbooks in check mode plus health checks, judged as hosts x checks; history, notifications, schedules, JUnit, HTML."""
from .model import (
    Check, CheckStatus, DriftExit, DriftOptions, DriftReport, FixOutcome, HEALTH_CHECKS, OTHER_HEALTH, PLAYBOOK_PREFIX, TaskState, assess, check, fix, from_doc, health_checks, playbook_check_name, playbook_checks, render_json, render_text, shown_path, task_states, to_doc,
)

__all__ = ['Check', 'CheckStatus', 'DriftExit', 'DriftOptions', 'DriftReport', 'FixOutcome', 'HEALTH_CHECKS', 'OTHER_HEALTH', 'PLAYBOOK_PREFIX', 'TaskState', 'assess', 'check', 'fix', 'from_doc', 'health_checks', 'playbook_check_name', 'playbook_checks', 'render_json', 'render_text', 'shown_path', 'task_states', 'to_doc']
