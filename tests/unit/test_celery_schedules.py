"""Never-firing schedules (pure): reported for what they are, and caught before the DatabaseScheduler dies on them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from remediate import celery as cel
from remediate import templating
from remediate.errors import Location

NOW = datetime(2026, 11, 25, 10, 0, 30, tzinfo=timezone.utc)


def row(name: str, cron: tuple[str, str, str, str, str], enabled: bool = True) -> dict[str, object]:
    minute, hour, dom, moy, dow = cron
    return {"name": name, "task": f"apps.t.{name}", "enabled": enabled, "last_run_at": None, "total_run_count": 0,
            "crontab": {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": moy,
                        "day_of_week": dow, "timezone": "UTC"}, "interval": None}


FEB31 = ("0", "0", "31", "2", "*")


@pytest.mark.parametrize(("cron", "never"), [
    (FEB31, True), (("0", "0", "30", "2", "*"), True), (("0", "0", "31", "4,6", "*"), True),
    (("0", "0", "29", "2", "*"), False),            # leap years exist
    (("0", "0", "31", "2", "1"), False),            # cron ORs a restricted day of week with the day of month
    (("0", "0", "31", "*", "*"), False), (("*", "*", "*", "*", "*"), False),
])
def test_never_fires(cron: tuple[str, str, str, str, str], never: bool) -> None:
    (task,) = cel.parse_tasks([row("t", cron)])
    assert cel.never_fires(task) is never


def test_a_disabled_never_firing_row_is_a_manual_only_task_and_an_enabled_one_is_named() -> None:
    rows = [row("Send Test Email", FEB31, enabled=False), row("broken", FEB31), row("every minute", ("*",) * 5)]
    health = {h.task.name: h for h in cel.assess(cel.parse_tasks(rows), NOW, None, timedelta(seconds=10))}
    assert health["Send Test Email"].status == "never_fires" and "manual-only" in health["Send Test Email"].detail
    assert health["broken"].status == "never_fires" and "DatabaseScheduler crashes" in health["broken"].detail
    assert cel.enabled_never_firing(rows) == ["broken"]


def test_the_playbook_filter_and_ansible_regex_tests() -> None:
    at = Location("p.yml", 3)
    scope = {"rows": [row("a", FEB31), row("b", FEB31, enabled=False)], "argv": ["celery", "--scheduler=x", "-S"]}
    assert templating.evaluate("rows | celery_never_fires", scope, at, "t") == ["a"]
    assert templating.evaluate("argv | select('match', '--scheduler=') | list", scope, at, "t") == ["--scheduler=x"]
    assert templating.evaluate("argv | select('search', 'sched') | list", scope, at, "t") == ["--scheduler=x"]
    with pytest.raises(templating.TemplateError, match=r"p\.yml:3: t: .*invalid regular expression"):
        templating.evaluate("argv | select('match', '(') | list", scope, at, "t")


def test_celery_builtins_count_as_registered() -> None:
    expected = ["apps.a.t", "celery.backend_cleanup", "apps.a.t", "apps.b.u"]
    assert cel.unregistered(expected, {"apps.a.t"}) == ["apps.b.u"]
