"""`remediate report ENV --html FILE` opened in headless Chromium: what a reader sees."""
from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from remediate import history
from remediate.drift import Check, CheckStatus, DriftReport, TaskState
from tests.conftest import remediate

T0 = datetime(2026, 11, 24, 22, 0, tzinfo=timezone.utc)
HOSTS = ("web-1", "web-2")
DIFF = ("--- web-1:/srv/edms/backend/edms/settings/base.py\n+++ web-1:/srv/edms/backend/edms/settings/base.py\n"
        "@@ -10,2 +10,3 @@\n CELERY_BEAT_SCHEDULE_FILENAME = '/tmp/celerybeat-schedule'\n"
        "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'\n")


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is missing: `apt-get install -y chromium` (lab/setup-host.sh installs it)")
    return path


def browse(tmp_path: Path, page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, offline and without a profile of its own to leak into the test."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         *mode, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )


class Visible(HTMLParser):
    """Text a reader sees, table cells joined with |, and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.loads: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "title", "script"):
            self.skip += 1
        if tag in ("script", "link", "img", "iframe", "object", "embed"):
            self.loads.append(tag)
        self.loads += [f"{tag}[{k}]" for k, v in attrs if k in ("src", "href") and v]
        if tag in ("tr", "p", "h1", "h2", "h3", "li", "pre", "br"):
            self.text.append("\n")
        if tag in ("td", "th"):
            self.text.append("|")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.text.append(data)

    def lines(self) -> list[str]:
        return [re.sub(r"\s+", " ", line).strip() for line in "".join(self.text).splitlines() if line.strip()]


def stored_runs(db: Path) -> None:
    """Three runs: drift on web-1 (setting missing, a task never run), web-2 unreachable once, then clean after --fix."""
    def report(at: datetime, run_id: str, phase: str, web1: CheckStatus, web2: CheckStatus) -> DriftReport:
        checks = [
            Check("web-1", "playbook:celery-beat-database-scheduler", web1,
                  ("beat's settings module sets the database scheduler [site.yml:30]: would write base.py",)
                  if web1 == CheckStatus.DRIFT else (), (), DIFF if web1 == CheckStatus.DRIFT else ""),
            Check("web-1", "tasks_ran", web1,
                  ("never_run: PeriodicTask 'Verify chain': never run; was due 2026-11-24 21:00:00Z",)
                  if web1 == CheckStatus.DRIFT else (),
                  ("never_fires: PeriodicTask 'Send Test Email': cron '0 0 31 2 *' (UTC) can never fire",)),
            Check("web-2", "playbook:celery-beat-database-scheduler", web2,
                  ("unreachable: connection refused",) if web2 == CheckStatus.ERROR else ()),
            Check("web-2", "tasks_ran", web2, ("unreachable",) if web2 == CheckStatus.ERROR else ()),
        ]
        tasks = (TaskState("web-1", "Verify chain", "apps.audit.integrity_tasks.verify_chain", "never_run",
                           "cron '0 * * * *' (UTC)", "2026-11-24 21:00:00Z", None, "2026-11-24 23:00:00Z",
                           "never run; was due 2026-11-24 21:00:00Z"),) if web1 == CheckStatus.DRIFT else ()
        return DriftReport("lab", run_id, at, HOSTS, tuple(checks), tasks, phase)

    history.record(report(T0, "run-1", "check", CheckStatus.DRIFT, CheckStatus.OK), db)
    history.record(report(T0 + timedelta(minutes=30), "run-2", "check", CheckStatus.DRIFT, CheckStatus.ERROR), db)
    history.record(report(T0 + timedelta(minutes=60), "run-3", "check", CheckStatus.DRIFT, CheckStatus.OK), db)


def test_html_report_in_chromium(tmp_path: Path) -> None:
    state = tmp_path / "state"
    stored_runs(state / "drift.sqlite3")
    page = tmp_path / "report.html"
    out = remediate("report", "lab", "--html", str(page), env={"REMEDIATE_STATE_DIR": str(state)})
    assert out.returncode == 0 and f"wrote {page} (3 run(s) of lab)" in out.stdout, out.stderr

    dom = browse(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    seen = Visible()
    seen.feed(dom.stdout)
    assert seen.loads == [], "the page loads something from elsewhere"
    lines = seen.lines()
    assert "Drift report: lab" in lines
    assert any(line.startswith("Latest run run-3 at 2026-11-24 23:00:00Z: drift") and "2 host(s), 2 drifted check(s)" in line
               for line in lines), lines
    # the timeline, per host: a row per check with a cell per run and the latest state
    web1, web2 = lines.index("web-1"), lines.index("web-2")
    assert lines[web1 + 1:web1 + 4] == [
        "|check|11-24 22:00|11-24 22:30|11-24 23:00|latest",
        "|playbook:celery-beat-database-scheduler|✗|✗|✗|drift",
        "|tasks_ran|✗|✗|✗|drift",
    ]
    assert lines[web2 + 2:web2 + 4] == [  # unreachable in the middle run
        "|playbook:celery-beat-database-scheduler|✓|!|✓|ok",
        "|tasks_ran|✓|!|✓|ok",
    ]
    # overdue tasks with their due times
    tasks = lines.index("Periodic tasks not running on time")
    assert lines[tasks + 1:tasks + 4] == [
        "|host|task|status|was due|last run|next due|schedule",
        "|web-1|Verify chain",
        "apps.audit.integrity_tasks.verify_chain|never run|2026-11-24 21:00:00Z|never|2026-11-24 23:00:00Z"
        "|cron '0 * * * *' (UTC)",
    ]
    # warnings apart from drift, and the latest diff
    assert "web-1/tasks_ran: never_fires: PeriodicTask 'Send Test Email': cron '0 0 31 2 *' (UTC) can never fire" in lines
    diffs = lines.index("Latest drift details and diffs")
    assert lines[diffs + 1:diffs + 4] == [
        "web-1/playbook:celery-beat-database-scheduler: drift",
        "beat's settings module sets the database scheduler [site.yml:30]: would write base.py",
        "--- web-1:/srv/edms/backend/edms/settings/base.py",
    ]
    assert "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in lines

    shot = browse(tmp_path, page, "--screenshot=" + str(tmp_path / "report.png"), "--window-size=1100,1300")
    assert shot.returncode == 0 and (tmp_path / "report.png").stat().st_size > 10_000, shot.stderr


def test_report_without_history_says_so(tmp_path: Path) -> None:
    page = tmp_path / "empty.html"
    out = remediate("report", "nowhere", "--html", str(page), env={"REMEDIATE_STATE_DIR": str(tmp_path / "s")})
    assert out.returncode == 0
    seen = Visible()
    seen.feed(page.read_text())
    assert any("No drift runs are recorded for nowhere yet" in line for line in seen.lines())
