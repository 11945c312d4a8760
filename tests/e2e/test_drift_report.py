"""`remediate report ENV --html FILE` opened in headless Chromium: what a reader sees, from the DOM Chromium built.

The fleet test renders a generated history of 50 hosts and 48 runs (tests/fleet_history.py) and keeps the
screenshot under the test's tmp directory (its path is printed). The others use small histories and real
`remediate drift` runs over the suite's sshd.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from remediate.drift import history
from remediate.drift import Check, CheckStatus, DriftReport, TaskState
from tests import fleet_history
from tests.conftest import Sshd, remediate
from tests.e2e.test_ssh_cli import FIXTURES, hosts, write_inventory  # noqa: F401 (fixture)

T0 = datetime(2026, 11, 24, 22, 0, tzinfo=timezone.utc)
HOSTS = ("web-1", "web-2")
DIFF = ("--- web-1:/srv/edms/backend/edms/settings/base.py\n+++ web-1:/srv/edms/backend/edms/settings/base.py\n"
        "@@ -10,2 +10,3 @@\n CELERY_BEAT_SCHEDULE_FILENAME = '/tmp/celerybeat-schedule'\n"
        "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'\n")
TASK_CLAIM = "ran within its window"


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is missing: `apt-get install -y chromium` (lab/setup-host.sh installs it)")
    return path


def browse(tmp_path: Path, page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, offline, with a fresh profile of its own."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--hide-scrollbars", *mode, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )


def screenshot(tmp_path: Path, page: Path, name: str, size: str, capsys: pytest.CaptureFixture[str]) -> Path:
    """A PNG of the page as a reader's window shows it, kept as the test's artifact; its path is printed."""
    shot = tmp_path / name
    out = browse(tmp_path, page, f"--screenshot={shot}", f"--window-size={size}")
    assert out.returncode == 0 and shot.stat().st_size > 20_000, out.stderr
    with capsys.disabled():
        print(f"\n  screenshot: {shot}")
    return shot


class Visible(HTMLParser):
    """Text a reader sees, table cells joined with |, and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.loads: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "title", "script"):
            self.skip += 1
        self.pre += tag == "pre"
        if tag in ("script", "link", "img", "iframe", "object", "embed"):
            self.loads.append(tag)
        self.loads += [f"{tag}[{k}]={v}" for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]
        if tag in ("tr", "p", "h1", "h2", "h3", "h4", "li", "pre", "br", "dt", "div"):
            self.text.append("\n")
        if tag in ("td", "th"):
            self.text.append("|")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script"):
            self.skip -= 1
        self.pre -= tag == "pre"

    def handle_data(self, data: str) -> None:
        if not self.skip:
            # a line break in the source is a space to a reader, except inside <pre>
            self.text.append(data if self.pre else data.replace("\n", " "))

    def lines(self) -> list[str]:
        lines = (re.sub(r"\s+", " ", line).strip() for line in "".join(self.text).splitlines())
        return [re.sub(r" ?\| ?", "|", line) for line in lines if line]


@dataclass
class Node:
    """An element of the DOM Chromium dumped."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    BLOCKS = frozenset({"td", "th", "tr", "li", "p", "div", "h3", "h4", "br", "small", "pre", "ul", "table"})

    def text(self) -> str:
        """Its text as a reader sees it: table cells, list items and blocks apart."""
        parts = [c if isinstance(c, str) else f" {c.text()} " if c.tag in self.BLOCKS else c.text() for c in self.children]
        return re.sub(r"\s+", " ", "".join(parts)).strip()

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and (cls is None or cls in c.attrs.get("class", "").split()):
                    out.append(c)
                out += c.all(tag, cls)
        return out

    def by_id(self, id_: str) -> Node:
        found = [n for n in self.all() if n.attrs.get("id") == id_]
        assert len(found) == 1, f"{len(found)} elements with id {id_!r}"
        return found[0]


class Tree(HTMLParser):
    VOID = {"meta", "br", "wbr", "hr", "img", "input", "link"}  # Chromium closes SVG elements explicitly

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(tmp_path: Path, page: Path) -> tuple[Node, list[str], list[str]]:
    """The DOM Chromium built from the page, the lines a reader sees, and anything it would load."""
    out = browse(tmp_path, page, "--dump-dom")
    assert out.returncode == 0 and "<html" in out.stdout, out.stderr
    tree = Tree()
    tree.feed(out.stdout)
    seen = Visible()
    seen.feed(out.stdout)
    return tree.root, seen.lines(), seen.loads


def report_page(tmp_path: Path, state: Path, env: str, *extra: str) -> tuple[Path, str]:
    page = tmp_path / f"{env}.html"
    out = remediate("report", env, "--html", str(page), *extra, env={"REMEDIATE_STATE_DIR": str(state)})
    assert out.returncode == 0, out.stdout + out.stderr
    return page, out.stdout


def test_a_50_host_48_run_history_reads_fleet_first_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    fleet_history.write(state / "drift.sqlite3")
    page, said = report_page(tmp_path, state, "fleet")
    assert "(49 run(s) of fleet, celery-beat-database-scheduler + celery-register-task-modules, with health checks)" in said
    root, lines, loads = dom(tmp_path, page)
    assert loads == [], "the page loads something from elsewhere"
    assert not root.all("script"), "the page needs no script"

    # the counts on top, from the latest run
    counts = {n.attrs["id"]: n.text() for n in root.by_id("counts").all("div")}
    assert counts == {"count-clean": "46 clean same as the run at 11-25 21:00Z",
                      "count-drift": "3 drifted same as the run at 11-25 21:00Z",
                      "count-unreachable": "1 unreachable same as the run at 11-25 21:00Z"}
    assert root.by_id("verdict").text() == "error"  # an unreachable host: drift's exit 1

    # one matrix for the fleet: 50 rows, worst first, 6 checks each, a strip of 24 runs
    fleet = root.by_id("fleet")
    (table,) = fleet.all("table")
    rows = table.all("tbody")[0].all("tr")
    assert len(rows) == 50 and len(root.all("table", "matrix")) == 2  # the second: the same rows by name
    head = [th.text() for th in table.all("thead")[0].all("th", "col")]
    assert head == ["celery-register-task-modules", "celery-beat-database-scheduler", "containers", "beat_scheduler",
                    "tasks_registered", "tasks_ran"]
    order = [r.all("th")[0].text() for r in rows]
    assert order[:4] == ["web-14", "web-36", "web-23", "web-42"] and sorted(order[4:]) == order[4:]

    def cells(row: Node) -> list[str]:
        return [td.text() for td in row.all("td", "cell")]

    assert cells(rows[0]) == ["✓", "✗", "✓", "✗", "✓", "✗"] and rows[0].all("td", "state")[0].text() == "drift: 3 check(s)"
    assert cells(rows[2]) == ["✓", "✓", "✗", "✓", "✓", "✗"]  # web-23: the worker went down
    assert cells(rows[3]) == ["⊘"] * 6 and rows[3].all("td", "state")[0].text() == "unreachable"
    strip = [a.text() for a in rows[2].all("a", "s")]
    assert len(strip) == 24 and strip[-2:] == ["✗", "✗"] and set(strip[:-2]) == {"✓"}
    web17 = next(r for r in rows if r.all("th")[0].text() == "web-17")
    assert [a.text() for a in web17.all("a", "s")][5:11] == ["✓"] + ["⊘"] * 4 + ["✓"]  # runs 24-47: unreachable in 30-33

    # every link inside the page leads somewhere on it
    ids = {n.attrs["id"] for n in root.all() if "id" in n.attrs}
    targets = {n.attrs["href"][1:] for n in root.all("a") if n.attrs.get("href", "").startswith("#")}
    assert targets - ids == set()
    assert {"host-web-14", "host-web-36", "host-web-23", "host-web-42"} <= targets

    # the chart: one bar per run in each panel, axis labels that are all different
    chart = root.by_id("chart")
    drifted = chart.all("g")[0]
    unreachable = chart.all("g")[1]
    assert drifted.attrs["id"] == "panel-drift" and len(drifted.all("rect")) == 49
    assert unreachable.attrs["id"] == "panel-unreachable" and len(unreachable.all("rect")) == 49
    titles = [r.all("title")[0].text() for r in drifted.all("rect")]
    assert titles[0] == "2026-11-24 22:00:00Z: 44 drifted checks" and titles[-1] == "2026-11-25 21:30:00Z: 8 drifted checks"
    ticks = [t.text() for t in chart.all("text") if re.fullmatch(r"\d\d-\d\d \d\d:\d\d(:\d\d)?", t.text())]
    assert len(ticks) >= 6 and len(set(ticks)) == len(ticks) and ticks[-1] == "11-25 21:30"
    assert "Latest run: 8 drifted check(s), 1 unreachable host(s)" in root.by_id("chart-legend").text()

    # per-host detail: only hosts with something to say, worst first; the same change is shown once
    details = root.by_id("hosts").all("article")
    assert [a.attrs["id"] for a in details] == ["host-web-14", "host-web-36", "host-web-23", "host-web-42",
                                                "host-web-03", "host-web-31"]
    web36 = root.by_id("host-web-36").text()
    assert "Same diff as on web-14." in web36
    assert "drift in all 49 runs shown, since at least 2026-11-24 22:00:00Z" in web36
    web23 = root.by_id("host-web-23").text()
    assert "containers: drift drift in the last 2 runs, since 2026-11-25 21:00:00Z; ok at 2026-11-25 20:30:00Z" in web23
    assert "Verify chain apps.audit.integrity_tasks.verify_chain never run 2026-11-25 20:00:00Z never" in web23
    web42 = root.by_id("host-web-42").text()
    assert "containers, beat_scheduler, tasks_registered, tasks_ran: unreachable" in web42
    assert "Clean in the latest run, every check ok and no warnings (44 host(s)):" in root.by_id("clean-hosts").text()

    # the other check set is named, not mixed in; the runs table has every run with its duration
    assert "celery-beat-database-scheduler, without health checks: 3 run(s)" in root.by_id("other-sets").text()
    runs = root.by_id("runs").all("tbody")[0].all("tr")
    assert len(runs) == 49
    assert [td.text() for td in runs[0].all("td")][:6] == ["2026-11-25 21:30:00Z", "20261124-47", "45.4 s", "error", "50", "46"]
    fix = next(r for r in runs if "after --fix" in r.text())
    assert "cleared:" in fix.text()
    assert not [line for line in lines if "+00:00" in line], "a time not in the page's format"

    shot = screenshot(tmp_path, page, "fleet-report.png", "1280,2600", capsys)
    assert shot.exists()


def small_history(db: Path) -> None:
    """Three runs of two hosts: drift on web-1 (setting missing, a task never run), web-2 unreachable once."""
    def report(at: datetime, run_id: str, web1: CheckStatus, web2: CheckStatus) -> DriftReport:
        checks = [
            Check("web-1", "playbook:celery-beat-database-scheduler", web1,
                  ("beat's settings module sets the database scheduler [site.yml:30]: would write base.py",)
                  if web1 == CheckStatus.DRIFT else (), (), DIFF if web1 == CheckStatus.DRIFT else "", 1.25,
                  "playbooks/celery-beat-database-scheduler.yml"),
            Check("web-1", "tasks_ran", web1,
                  ("never_run: PeriodicTask 'Verify chain': never run; was due 2026-11-24 21:00:00Z",)
                  if web1 == CheckStatus.DRIFT else (),
                  ("never_fires: PeriodicTask 'Send Test Email': cron '0 0 31 2 *' (UTC) can never fire",), "", 3.5),
            Check("web-2", "playbook:celery-beat-database-scheduler", web2,
                  ("unreachable: connection refused",) if web2 == CheckStatus.ERROR else (), duration=0.5),
            Check("web-2", "tasks_ran", web2, ("ssh: connection refused",) if web2 == CheckStatus.ERROR else ()),
        ]
        tasks = (TaskState("web-1", "Verify chain", "apps.audit.integrity_tasks.verify_chain", "never_run",
                           "cron '0 * * * *' (UTC)", "2026-11-24T21:00:00+00:00", None, "2026-11-24T23:00:00+00:00",
                           "never run; was due 2026-11-24 21:00:00Z"),) if web1 == CheckStatus.DRIFT else ()
        return DriftReport("lab", run_id, at, HOSTS, tuple(checks), tasks, "check", 7.25, ("playbooks/site.yml",))

    history.record(report(T0, "run-1", CheckStatus.DRIFT, CheckStatus.OK), db)
    history.record(report(T0 + timedelta(minutes=30), "run-2", CheckStatus.DRIFT, CheckStatus.ERROR), db)
    history.record(report(T0 + timedelta(minutes=60), "run-3", CheckStatus.DRIFT, CheckStatus.OK), db)


def test_a_small_history_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    small_history(state / "drift.sqlite3")
    page, said = report_page(tmp_path, state, "lab")
    assert f"wrote {page} (3 run(s) of lab, celery-beat-database-scheduler, with health checks)" in said
    root, lines, loads = dom(tmp_path, page)
    assert loads == []
    assert "Drift report: lab" in lines
    assert any(line.startswith("Latest run run-3 at 2026-11-24 23:00:00Z, took 7.2 s: drift on 2 host(s), "
                               "2 drifted check(s).") for line in lines), lines
    matrix = [line for line in lines if line.startswith("|web-")]
    assert matrix[:2] == ["|web-1|drift: 2 check(s)|✗|✗|✗✗✗|4.8 s", "|web-2|clean|✓|✓|✓⊘✓|0.5 s"]
    detail = root.by_id("host-web-1").text()
    assert "playbook:celery-beat-database-scheduler: drift drift in all 3 runs shown, since at least " \
           "2026-11-24 22:00:00Z · took 1.2 s · playbooks/celery-beat-database-scheduler.yml" in detail
    assert "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in detail
    # the task times arrive as +00:00 ISO strings and are shown as the rest of the page shows times
    assert "Verify chain apps.audit.integrity_tasks.verify_chain never run 2026-11-24 21:00:00Z never " \
           "2026-11-24 23:00:00Z cron '0 * * * *' (UTC)" in detail
    assert "tasks_ran: never_fires: PeriodicTask 'Send Test Email': cron '0 0 31 2 *' (UTC) can never fire" in detail
    checked = root.by_id("checked").text()
    assert "tasks_ran: ok on 1 host(s): there every enabled PeriodicTask" in checked and "drift on 1 host(s)" in checked
    assert [td.text() for td in root.by_id("runs").all("tbody")[0].all("tr")[1].all("td")][:4] == [
        "2026-11-24 22:30:00Z", "run-2", "7.2 s", "error"]
    assert not [line for line in lines if "+00:00" in line]
    screenshot(tmp_path, page, "small-report.png", "1100,1400", capsys)


def test_report_without_history_says_so(tmp_path: Path) -> None:
    page, said = report_page(tmp_path, tmp_path / "s", "nowhere")
    assert "wrote" in said and "(0 run(s) of nowhere)" in said
    seen = Visible()
    seen.feed(page.read_text())
    assert any("No drift runs of nowhere are recorded yet" in line for line in seen.lines())


def test_last_and_since_window_the_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fleet_history.write(state / "drift.sqlite3")
    _, said = report_page(tmp_path, state, "fleet", "--last", "10")
    assert "(10 run(s) of fleet" in said
    page, said = report_page(tmp_path, state, "fleet", "--since", "2026-11-25T20:00Z")
    assert "(4 run(s) of fleet" in said
    assert "the newest 50 at most, started since 2026-11-25 20:00:00Z" in page.read_text()
    # the scheduler-only set is chosen by the flags drift took
    _, said = report_page(tmp_path, state, "fleet", "-p", str(FIXTURES.parent.parent / "playbooks" /
                                                              "celery-beat-database-scheduler.yml"), "--no-health")
    assert "(3 run(s) of fleet, celery-beat-database-scheduler, without health checks)" in said
    bad = remediate("report", "fleet", "--html", str(tmp_path / "x.html"), "--since", "last tuesday",
                    env={"REMEDIATE_STATE_DIR": str(state)})
    assert bad.returncode == 3 and "--since: expected a date or time" in bad.stderr
    assert not (tmp_path / "x.html").exists()
    listed = remediate("drift", "history", "fleet", "--since", "2026-11-25T20:00Z", env={"REMEDIATE_STATE_DIR": str(state)})
    assert [line.split()[2] for line in listed.stdout.splitlines()] == [f"20261124-{n}" for n in (44, 45, 46, 47)]
    misplaced = remediate("drift", "fleet", "--since", "1h", env={"REMEDIATE_STATE_DIR": str(state)})
    assert misplaced.returncode == 3 and "--since goes with `remediate drift history ENV`" in misplaced.stderr


@pytest.mark.ssh
def test_a_no_health_run_makes_no_task_claim(tmp_path: Path, sshd: Sshd, hosts: dict[str, Path]) -> None:  # noqa: F811
    """Real runs over sshd: one with health checks (these hosts have no Celery: they cannot be made), then --no-health."""
    inventory = write_inventory(tmp_path / "inv.yml", sshd, hosts)
    state = {"REMEDIATE_STATE_DIR": str(tmp_path / "state")}
    playbook = str(FIXTURES / "playbooks" / "drift.yml")
    health = remediate("drift", "x", "-i", str(inventory), "-p", playbook, env=state)
    assert health.returncode == 1, health.stdout + health.stderr  # the health checks could not be made
    no_health = remediate("drift", "x", "-i", str(inventory), "-p", playbook, "--no-health", env=state)
    assert no_health.returncode == 2, no_health.stdout + no_health.stderr

    page, said = report_page(tmp_path, tmp_path / "state", "x")
    assert "(1 run(s) of x, drift, without health checks)" in said
    root, lines, _ = dom(tmp_path, page)
    text = root.by_id("summary").text() + root.by_id("hosts").text()
    assert "No health checks in this run (it ran with --no-health)" in text
    assert TASK_CLAIM not in page.read_text() and "Periodic tasks not running on time" not in text
    head = [th.text() for th in root.by_id("fleet").all("th", "col")]
    assert head == ["drift"]
    assert "drift, with health checks: 1 run(s)" in root.by_id("other-sets").text()
    for name in ("web-1", "web-2", "web-3"):
        took = next(r for r in root.by_id("fleet").all("tr") if r.all("th") and r.all("th")[0].text() == name)
        assert re.fullmatch(r"\d+\.\d s", took.all("td", "took")[0].text()), took.text()  # measured, over SSH

    # the run with health checks: tasks_ran could not be made, so nothing is claimed about tasks there either
    page, said = report_page(tmp_path, tmp_path / "state", "x", "-p", playbook)
    assert "(1 run(s) of x, drift, with health checks)" in said
    root, _, _ = dom(tmp_path, page)
    checked = root.by_id("checked").text()
    assert "tasks_ran: could not be checked on 3 host(s)." in checked and "there every enabled" not in page.read_text()
    # the column's legend says what a ✓ would mean; no cell under it says ✓
    column = [th.text() for th in root.by_id("fleet").all("th", "col")].index("tasks_ran")
    rows = [r for r in root.by_id("fleet").all("tbody")[0].all("tr")]
    assert {r.all("td", "cell")[column].text() for r in rows} == {"!"}
