"""Drift: the playbooks in check mode plus diagnose's health checks, judged as hosts x checks (model.py,
assess.py), read as text or JSON (text.py), JUnit (junit.py) or one HTML page (html.py), recorded (history.py),
announced (notify.py) and scheduled (schedule.py). api.drift runs it.

The names below are imported from their modules when first used (PEP 562), so that importing one of the package's
modules (history for `remediate report`, say) does not import assess, and with it diagnose."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assess import HEALTH_CHECKS, OTHER_HEALTH, assess, health_checks, playbook_checks, task_states
    from .model import (
        PLAYBOOK_PREFIX, Check, CheckStatus, DriftReport, FixOutcome, TaskState, from_doc, playbook_check_name,
        shown_path, to_doc,
    )
    from .text import render_json, render_text

_WHERE = {
    **dict.fromkeys(("HEALTH_CHECKS", "OTHER_HEALTH", "assess", "health_checks", "playbook_checks", "task_states"),
                    "assess"),
    **dict.fromkeys(("PLAYBOOK_PREFIX", "Check", "CheckStatus", "DriftReport", "FixOutcome", "TaskState", "from_doc",
                     "playbook_check_name", "shown_path", "to_doc"), "model"),
    **dict.fromkeys(("render_json", "render_text"), "text"),
}

__all__ = ["HEALTH_CHECKS", "OTHER_HEALTH", "PLAYBOOK_PREFIX", "Check", "CheckStatus", "DriftReport", "FixOutcome",
           "TaskState", "assess", "from_doc", "health_checks", "playbook_check_name", "playbook_checks",
           "render_json", "render_text", "shown_path", "task_states", "to_doc"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
