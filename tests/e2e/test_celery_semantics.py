"""remediate's due-time math against Celery's own crontab, in each lab version set's image (no stack needed).

Celery ANDs day of month with day of week where cron (and croniter's default) ORs them; a crontab that can never
fire is refused by celery 5.7's constructor and makes celery 5.4 fail to roll over. The table pins both.
"""
from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone

import pytest

from remediate import celery as cel
from tests.lab import VERSION_SETS, Versions

pytestmark = pytest.mark.lab

AFTER = ("2026-12-01T10:00:30+00:00", "2027-02-27T23:59:30+00:00", "2028-02-28T12:00:30+00:00")
FIRES = ("0 9 1-7 * 1", "0 0 13 * 5", "*/30 * * * *", "15 */4 * * *", "0 0 29 2 *", "0 7 * * 0", "0 0 1,15 * 1-5",
         "30 2 * 3,9 *", "0 0 31 * *", "0 1 * * 0", "0 0,4,8,12,16,20 * * *", "5-10/2 3 * * *")
NEVER = ("0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 1", "0 0 30-31 2 *")

# For each expression and instant: Celery's next run after it (or the error Celery raises), computed as beat
# does: a crontab whose last run was that instant, remaining_delta() from it.
SCRIPT = r"""
import json, sys
from datetime import datetime
from celery import Celery
from celery.schedules import crontab

app = Celery(set_as_current=True)
app.conf.timezone = "UTC"
table = json.load(sys.stdin)
out = []
for expr, after in table:
    minute, hour, dom, moy, dow = expr.split()
    at = datetime.fromisoformat(after)
    try:
        c = crontab(minute=minute, hour=hour, day_of_week=dow, day_of_month=dom, month_of_year=moy, app=app,
                    nowfun=lambda at=at: at)
        start, delta, _ = c.remaining_delta(at)
        out.append([expr, after, (start + delta).isoformat()])
    except Exception as exc:
        out.append([expr, after, f"{type(exc).__name__}: {exc}"])
print(json.dumps(out))
"""


def celery_says(versions: Versions, table: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    image = f"remediate-lab-base:{versions}"
    result = subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", image, "python", "-c", SCRIPT],
                            input=json.dumps(table), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return [tuple(row) for row in json.loads(result.stdout)]  # type: ignore[misc]


def task(expr: str) -> cel.Task:
    return cel.Task("t", "t", True, expr, "UTC", None, None, 0)


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_next_due_and_never_fires_match_celerys_own_crontab(versions: Versions) -> None:
    table = [(expr, after) for expr in (*FIRES, *NEVER) for after in AFTER]
    answers = celery_says(versions, table)
    for expr, after, celery in answers:
        ours = cel.next_due(task(expr), datetime.fromisoformat(after))
        if expr in NEVER:
            assert ours is None and cel.never_fires(task(expr)), expr
            assert celery.startswith(("ValueError: Invalid crontab", "RuntimeError: unable to rollover")), (expr, celery)
        else:
            assert not cel.never_fires(task(expr)), expr
            assert ours == datetime.fromisoformat(celery).astimezone(timezone.utc), (versions, expr, after, celery)


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_inspect_registered_leaves_out_celerys_builtins(versions: Versions) -> None:
    """cel.unregistered counts celery.* as registered only because the worker's `registered` command omits them."""
    script = ("from types import SimpleNamespace as S\nfrom celery import Celery\n"
              "from celery.worker.control import registered\n"
              "app = Celery(set_as_current=True)\napp.finalize()\n"
              "listed = registered(S(app=app))\n"
              "print(any('backend_cleanup' in t for t in listed), 'celery.backend_cleanup' in app.tasks)\n")
    result = subprocess.run(["docker", "run", "--rm", "--network", "none", f"remediate-lab-base:{versions}", "python",
                             "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "True"]
