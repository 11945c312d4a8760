"""`remediate report ENV --html FILE`: recorded drift runs as one self-contained page (no scripts, no network).

`page()` turns the runs of one check set into a view model (pure); `render()` fills the Jinja2 template shipped
in the package (`templates/report.html.j2`, autoescaped). Fleet first: the latest run's counts and its hosts x
checks matrix, worst hosts first; then drift over time (an inline SVG chart, a strip of recent runs per host);
then per-host detail and the runs table. Every sentence is generated from a check that ran in the run it
speaks of; what a run did not check is shown as not checked.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from .model import PLAYBOOK_PREFIX, Check, CheckStatus, DriftReport, TaskState
from .history import CheckSet, SetSummary, StoredRun

TEMPLATES = Path(__file__).resolve().parent / "templates"
STRIP_RUNS = 24  # runs in each host's strip
CHECK_SYMBOL = {CheckStatus.OK: "✓", CheckStatus.DRIFT: "✗", CheckStatus.ERROR: "!", CheckStatus.SKIPPED: "–"}
NOT_CHECKED = "·"
CHECK_WORD = {CheckStatus.OK: "ok", CheckStatus.DRIFT: "drift", CheckStatus.ERROR: "could not check",
              CheckStatus.SKIPPED: "skipped"}
# what a health check asserts when it is ok (README "Drift checks"); shown only for checks the run made
ABOUT = {
    "containers": "every compose service has a running container, and none is unhealthy",
    "beat_scheduler": "beat runs the intended scheduler (django_celery_beat's DatabaseScheduler)",
    "tasks_registered": "the worker registers every task the schedules name; no task module is left unimported",
    "tasks_ran": "every enabled PeriodicTask ran within its window (its last due time plus beat's database "
                 "sync lag plus a grace); a task last due before beat started is pending, not drift",
    "celery_health": "no other Celery health problem diagnose knows of",
}
_UTC_STAMP = re.compile(r"\b(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:\+00:00|Z)")


class HostState(enum.Enum):
    """A host in one run, worst first."""

    DRIFT = "drift"
    UNREACHABLE = "unreachable"
    ERROR = "error"
    CLEAN = "clean"
    ABSENT = "absent"


HOST_SYMBOL = {HostState.DRIFT: "✗", HostState.UNREACHABLE: "⊘", HostState.ERROR: "!", HostState.CLEAN: "✓",
               HostState.ABSENT: NOT_CHECKED}
HOST_WORD = {HostState.DRIFT: "drift", HostState.UNREACHABLE: "unreachable", HostState.ERROR: "could not check",
             HostState.CLEAN: "clean", HostState.ABSENT: "not in this run"}
RANK = {s: i for i, s in enumerate(HostState)}


# --- the view model ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One check of the latest run: a matrix column."""

    name: str
    parts: tuple[str, ...]  # the label, split where it may wrap
    group: str  # playbook | health
    about: str


@dataclass(frozen=True)
class Cell:
    """A host x check of the latest run, or a host in one run of its strip."""

    css: str
    symbol: str
    title: str
    href: str = ""


@dataclass(frozen=True)
class Row:
    """A matrix row: one host of the latest run."""

    host: str
    anchor: str
    state: HostState
    word: str
    cells: tuple[Cell, ...]
    strip: tuple[Cell, ...]
    took: str


@dataclass(frozen=True)
class Tile:
    """A count on top."""

    css: str
    count: int
    word: str
    change: str


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff, with its kind (add, del, hunk, file, '')."""

    css: str
    text: str


@dataclass(frozen=True)
class CheckDetail:
    """Checks of one host that were not ok in the latest run (several when they say the same)."""

    names: tuple[str, ...]
    anchors: tuple[str, ...]
    css: str
    symbol: str
    word: str
    since: str
    details: tuple[str, ...]
    diff: tuple[DiffLine, ...]
    same_diff_as: tuple[str, str] | None  # (host, anchor) showing the same change
    took: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class TaskRow:
    """A PeriodicTask named by the latest run's tasks_ran check."""

    name: str
    task: str
    status: str
    last_due: str
    last_run: str
    next_due: str
    schedule: str


@dataclass(frozen=True)
class HostDetail:
    """What the latest run found on one host that is not simply ok."""

    host: str
    anchor: str
    state: HostState
    word: str
    checks: tuple[CheckDetail, ...]
    late: tuple[TaskRow, ...]
    pending: tuple[TaskRow, ...]
    warnings: tuple[tuple[str, str], ...]
    took: str


@dataclass(frozen=True)
class Bar:
    """One run's bar in a panel of the chart."""

    x: float
    y: float
    width: float
    height: float
    title: str
    href: str


@dataclass(frozen=True)
class Tick:
    """An axis label at a position."""

    at: float
    label: str


@dataclass(frozen=True)
class Panel:
    """One measure per run, on its own scale: drifted checks, or unreachable hosts."""

    title: str
    css: str
    top: int
    height: int
    bars: tuple[Bar, ...]
    y_ticks: tuple[Tick, ...]


@dataclass(frozen=True)
class Chart:
    """Drifted checks and unreachable hosts per run: two panels over one time axis, in SVG user units."""

    width: int
    height: int
    left: int
    plot_width: int
    panels: tuple[Panel, ...]
    axis_y: int
    x_ticks: tuple[Tick, ...]
    caption: str
    summary: str


@dataclass(frozen=True)
class RunRow:
    """One run in the runs table (newest first)."""

    anchor: str
    when: str
    run_id: str
    phase: str
    took: str
    hosts: int
    clean: int
    drifted: int
    unreachable: int
    errors: int
    drifted_checks: int
    verdict: str
    appeared: tuple[str, ...]
    cleared: tuple[str, ...]


@dataclass(frozen=True)
class OtherSet:
    """A check set recorded in the window but not shown, and how to show it."""

    label: str
    runs: int
    latest: str
    command: str


@dataclass(frozen=True)
class Page:
    """Everything the template shows."""

    env: str
    generated: str
    check_set: str
    playbooks: tuple[str, ...]
    window: str
    others: tuple[OtherSet, ...]
    empty: str
    latest: RunRow | None
    hosts: int
    tiles: tuple[Tile, ...]
    checked: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    rows_by_name: tuple[Row, ...]
    strip_label: str
    missing_hosts: tuple[str, ...]
    chart: Chart | None
    details: tuple[HostDetail, ...]
    clean_hosts: tuple[str, ...]
    runs: tuple[RunRow, ...]


# --- building it -------------------------------------------------------------------------------------------------


def when(dt: datetime) -> str:
    """The one time format of the page: UTC with Z."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def utc_text(text: str) -> str:
    """UTC ISO stamps inside a text (`2026-11-24T21:00:00+00:00`) in the page's format."""
    return _UTC_STAMP.sub(lambda m: f"{m.group(1)} {m.group(2)}Z", text)


def took(seconds: float | None) -> str:
    """A duration for people: 0.4 s, 12.3 s, 2 min 05 s; — when it was not measured."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def host_state(report: DriftReport, host: str) -> HostState:
    """Drift beats unreachable beats could-not-check beats clean; a host the run did not include is absent."""
    if host not in report.hosts:
        return HostState.ABSENT
    checks = [c for c in report.checks if c.host == host]
    statuses = {c.status for c in checks}
    if CheckStatus.DRIFT in statuses:
        return HostState.DRIFT
    if any(_unreachable(c) for c in checks):
        return HostState.UNREACHABLE
    return HostState.ERROR if CheckStatus.ERROR in statuses else HostState.CLEAN


def _unreachable(check: Check) -> bool:
    # drift.playbook_checks words an unreachable host's checks "unreachable: <why>"
    return check.status == CheckStatus.ERROR and bool(check.details) and check.details[0].startswith("unreachable")


def distinct_labels(times: Sequence[datetime]) -> tuple[str, ...]:
    """The shortest labels that tell every one of `times` apart (HH:MM within a day, MM-DD HH:MM across days)."""
    utc = [t.astimezone(timezone.utc) for t in times]
    days = {t.date() for t in utc}
    years = {t.year for t in utc}
    formats = ["%H:%M", "%H:%M:%S"] if len(days) <= 1 else ["%m-%d %H:%M", "%m-%d %H:%M:%S"]
    if len(years) > 1:
        formats = ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
    for fmt in formats:
        labels = tuple(t.strftime(fmt) for t in utc)
        if len(set(labels)) == len(labels):
            return labels
    # runs within one second: number them
    labels = tuple(t.strftime(formats[-1]) for t in utc)
    return tuple(f"{label} #{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels))


def _anchor(prefix: str, name: str, taken: set[str]) -> str:
    base = f"{prefix}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "x")
    anchor, n = base, 1
    while anchor in taken:
        n += 1
        anchor = f"{base}-{n}"
    taken.add(anchor)
    return anchor


def _counts(report: DriftReport) -> dict[HostState, int]:
    counts = {s: 0 for s in HostState}
    for host in report.hosts:
        counts[host_state(report, host)] += 1
    return counts


def _run_row(stored: StoredRun, previous: DriftReport | None) -> RunRow:
    r = stored.report
    counts = _counts(r)
    now = {c.key: c.status for c in r.checks}
    before = {c.key: c.status for c in previous.checks} if previous else {}
    # only what both runs checked: a host one of them left out (--limit) neither drifted nor cleared
    appeared = sorted(k for k, s in now.items() if s == CheckStatus.DRIFT and before.get(k) not in (None, CheckStatus.DRIFT))
    cleared = sorted(k for k, s in before.items() if s == CheckStatus.DRIFT and now.get(k) == CheckStatus.OK)
    return RunRow(
        f"run-{stored.id}", when(r.started_at), r.run_id, "after --fix" if r.phase == "after-fix" else "",
        took(r.duration), len(r.hosts), counts[HostState.CLEAN], counts[HostState.DRIFT],
        counts[HostState.UNREACHABLE], counts[HostState.ERROR], len(r.drifted()),
        {0: "clean", 1: "error", 2: "drift"}[int(r.exit_code())], tuple(appeared), tuple(cleared),
    )


def _columns(report: DriftReport) -> tuple[Column, ...]:
    out = []
    for name in report.check_names():
        if name.startswith(PLAYBOOK_PREFIX):
            short = name[len(PLAYBOOK_PREFIX):]
            file = next((c.file for c in report.checks if c.name == name and c.file), f"{short}.yml")
            out.append(Column(name, _wrap(short), "playbook", f"{file} in check mode: no step would change anything"))
        else:
            out.append(Column(name, _wrap(name), "health", ABOUT.get(name, "")))
    # playbooks first, then health, each in the run's order
    return tuple(sorted(out, key=lambda c: c.group != "playbook"))


def _wrap(label: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[^-_]+[-_]?", label)) or (label,)


def _streak(runs: Sequence[StoredRun], host: str, name: str) -> str:
    """How long a check has said what it says in the latest run, from the runs that included the host."""
    seen: list[tuple[datetime, str]] = []
    for stored in runs:
        r = stored.report
        if host in r.hosts:
            check = next((c for c in r.checks if c.host == host and c.name == name), None)
            down = host_state(r, host) == HostState.UNREACHABLE
            seen.append((r.started_at, _word(check, down) if check else "not checked"))
    word = seen[-1][1]
    n = 0
    while n < len(seen) and seen[-1 - n][1] == word:
        n += 1
    first = seen[-n][0]
    if n == len(seen) == len(runs):
        return f"{word} in all {n} runs shown, since at least {when(first)}" if n > 1 else f"{word} in the only run shown"
    if n == len(seen):
        return f"{word} in each of the {n} run(s) shown that included this host, since at least {when(first)}"
    before_at, was = seen[-1 - n]
    if n == 1:
        return f"new in the latest run; {was} at {when(before_at)}"
    return f"{word} in the last {n} runs, since {when(first)}; {was} at {when(before_at)}"


def _diff(text: str) -> tuple[DiffLine, ...]:
    out = []
    for line in text.rstrip("\n").splitlines():
        if line.startswith(("+++", "---")):
            css = "file"
        else:
            css = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")
        out.append(DiffLine(css, line))
    return tuple(out)


def _task_row(t: TaskState) -> TaskRow:
    return TaskRow(t.name, t.task, t.status.replace("_", " "), utc_text(t.last_due or "—"),
                   utc_text(t.last_run_at or "never"), utc_text(t.next_due or "—"), t.schedule)


def _details(runs: Sequence[StoredRun], report: DriftReport, anchors: Mapping[str, str],
             check_anchors: Mapping[str, str], order: Sequence[str]) -> tuple[HostDetail, ...]:
    out = []
    # a diff names its host (`--- web-1:/srv/...`): the same change on another host is said once, then linked
    diffs: dict[tuple[str, str], tuple[str, str]] = {}
    for host in (h for h in order if h in anchors):
        checks = [c for c in report.checks if c.host == host]
        state = host_state(report, host)
        down = state == HostState.UNREACHABLE
        shown: list[CheckDetail] = []
        for c in checks:
            if c.status == CheckStatus.OK or c.status == CheckStatus.SKIPPED and not c.details:
                continue
            key = (c.name, c.diff.replace(f"{host}:", "\0:"))
            same = diffs.get(key) if c.diff else None
            if c.diff and same is None:
                diffs[key] = (host, check_anchors[c.key])
            detail = CheckDetail(
                (c.name,), (check_anchors[c.key],), _css(c, down), _symbol(c, down), _word(c, down),
                _streak(runs, host, c.name), tuple(utc_text(d) for d in c.details),
                _diff(c.diff) if c.diff and same is None else (), same, took(c.duration) if c.duration is not None else "",
                (c.file,) if c.file else (),
            )
            previous = shown[-1] if shown else None
            if previous and not c.diff and not previous.diff and not previous.same_diff_as and (
                    previous.css, previous.details, previous.since) == (detail.css, detail.details, detail.since):
                # the checks an unreachable host (or a failed diagnosis) could not make say it once, together
                shown[-1] = CheckDetail(
                    previous.names + detail.names, previous.anchors + detail.anchors, previous.css, previous.symbol,
                    previous.word, previous.since, previous.details, (), None,
                    previous.took if previous.took == detail.took else "", previous.files + detail.files)
            else:
                shown.append(detail)
        ran = any(c.name == "tasks_ran" for c in checks)
        tasks = [t for t in report.tasks if t.host == host] if ran else []
        out.append(HostDetail(
            host, anchors[host], state, HOST_WORD[state], tuple(shown),
            tuple(_task_row(t) for t in tasks if t.status in ("never_run", "overdue")),
            tuple(_task_row(t) for t in tasks if t.status == "pending"),
            tuple((c.name, utc_text(w)) for c in checks for w in c.warnings),
            took(None if down else _host_seconds(checks)),
        ))
    return tuple(out)


# a check that could not be made because its host was unreachable says so (the health checks' own error texts
# come from the connection library and vary)
def _symbol(check: Check, down: bool) -> str:
    return HOST_SYMBOL[HostState.UNREACHABLE] if down and check.status == CheckStatus.ERROR else CHECK_SYMBOL[check.status]


def _word(check: Check, down: bool) -> str:
    return "unreachable" if down and check.status == CheckStatus.ERROR else CHECK_WORD[check.status]


def _css(check: Check, down: bool) -> str:
    return "unreachable" if down and check.status == CheckStatus.ERROR else check.status.value


def _host_seconds(checks: Iterable[Check]) -> float | None:
    """A host's checks' time: its playbook checks' steps plus its one diagnosis (which every health check shares)."""
    playbooks = [c.duration for c in checks if c.name.startswith(PLAYBOOK_PREFIX) and c.duration is not None]
    health = [c.duration for c in checks if not c.name.startswith(PLAYBOOK_PREFIX) and c.duration is not None]
    if not playbooks and not health:
        return None
    return sum(playbooks) + (max(health) if health else 0.0)


def _cell(check: Check | None, anchor: str, down: bool) -> Cell:
    if check is None:
        return Cell("none", NOT_CHECKED, "not checked in this run")
    first = utc_text(check.details[0]) if check.details else ""
    title = f"{check.name}: {_word(check, down)}" + (f" — {first}" if first else "")
    linked = anchor and check.status != CheckStatus.OK
    return Cell(_css(check, down), _symbol(check, down), title, f"#{anchor}" if linked else "")


def _strip(runs: Sequence[StoredRun], host: str, labels: Sequence[str]) -> tuple[Cell, ...]:
    out = []
    for stored, label in zip(runs, labels):
        r = stored.report
        state = host_state(r, host)
        what = ", ".join(c.name for c in r.checks if c.host == host and c.status == CheckStatus.DRIFT)
        title = f"{when(r.started_at)}: {HOST_WORD[state]}" + (f" ({what})" if what else "")
        out.append(Cell(state.value, HOST_SYMBOL[state], title, f"#run-{stored.id}"))
    return tuple(out)


def _tiles(report: DriftReport, previous: DriftReport | None, label: str) -> tuple[Tile, ...]:
    """The counts, each against `previous`: the newest earlier run of the same hosts (a --limit run is not)."""
    now = _counts(report)
    before = _counts(previous) if previous else None
    tiles = []
    for state, word in ((HostState.CLEAN, "clean"), (HostState.DRIFT, "drifted"), (HostState.UNREACHABLE, "unreachable"),
                        (HostState.ERROR, "could not check")):
        if state == HostState.ERROR and not now[state]:
            continue
        change = ""
        if before is not None:
            delta = now[state] - before[state]
            change = f"{delta:+d} since the run at {label}" if delta else f"same as the run at {label}"
        tiles.append(Tile(state.value, now[state], word, change))
    return tuple(tiles)


def _checked(report: DriftReport) -> tuple[str, ...]:
    """What the latest run checked, and the fleet-wide task claim, from its checks alone."""
    hosts = len(report.hosts)
    playbooks = [n[len(PLAYBOOK_PREFIX):] for n in report.check_names() if n.startswith(PLAYBOOK_PREFIX)]
    health = [n for n in report.check_names() if not n.startswith(PLAYBOOK_PREFIX)]
    lines = []
    if playbooks:
        lines.append(f"Playbooks in check mode on {hosts} host(s): {', '.join(playbooks)}.")
    if not health:
        lines.append("No health checks in this run (it ran with --no-health): containers, beat's scheduler, task "
                     "registration and periodic task runs were not checked.")
        return tuple(lines)
    lines.append(f"Health checks on {hosts} host(s): {', '.join(health)}.")
    ran = [c for c in report.checks if c.name == "tasks_ran"]
    if not ran:
        lines.append("Periodic task runs were not checked in this run.")
        return tuple(lines)
    by = {s: sum(c.status == s for c in ran) for s in CheckStatus}
    parts = []
    if by[CheckStatus.OK]:
        parts.append(f"ok on {by[CheckStatus.OK]} host(s): there every enabled PeriodicTask that was due since beat "
                     "started ran within its window")
    if by[CheckStatus.DRIFT]:
        late = [t for t in report.tasks if t.status in ("never_run", "overdue")]
        never = sum(t.status == "never_run" for t in late)
        what = [f"{n} task(s) {word}" for n, word in ((never, "never run"), (len(late) - never, "overdue")) if n]
        parts.append(f"drift on {by[CheckStatus.DRIFT]} host(s)" + (f" ({', '.join(what)}: see each host below)"
                                                                      if what else " (see each host below)"))
    if by[CheckStatus.ERROR]:
        parts.append(f"could not be checked on {by[CheckStatus.ERROR]} host(s)")
    unchecked = hosts - len({c.host for c in ran})
    if unchecked:
        parts.append(f"not checked on {unchecked} host(s)")
    lines.append("tasks_ran: " + "; ".join(parts) + ".")
    checked = {c.host for c in ran if c.status != CheckStatus.ERROR}
    pending = [t for t in report.tasks if t.status == "pending" and t.host in checked]
    if pending:
        lines.append(f"{len(pending)} task(s) on {len({t.host for t in pending})} host(s) are pending, not judged yet: "
                     "last due before beat started, so their next due time is their first test.")
    return tuple(lines)


def _chart(runs: Sequence[StoredRun], labels: Sequence[str]) -> Chart:
    width, left, right = 960, 44, 44
    pw = width - left - right
    slot = pw / len(runs)
    bar_w = max(1.0, min(28.0, slot * 0.72))
    drifted = [len(s.report.drifted()) for s in runs]
    unreachable = [_counts(s.report)[HostState.UNREACHABLE] for s in runs]
    panels = []
    top = 18
    for title, css, values, height in (("drifted checks", "drift", drifted, 150),
                                       ("unreachable hosts", "unreachable", unreachable, 64)):
        peak = max([*values, 1])
        step = _nice_step(peak, 5 if height > 100 else 2)
        scale = step * -(-peak // step)
        bars = []
        for i, (stored, value) in enumerate(zip(runs, values)):
            h = height * value / scale
            bars.append(Bar(round(left + slot * (i + 0.5) - bar_w / 2, 1), round(top + height - h, 1), round(bar_w, 1),
                            round(h, 1), f"{when(stored.report.started_at)}: {value} {title}", f"#run-{stored.id}"))
        ticks = tuple(Tick(round(top + height - height * v / scale, 1), str(v)) for v in range(0, scale + 1, step))
        panels.append(Panel(title, css, top, height, tuple(bars), ticks))
        top += height + 30
    axis_y = top - 30
    every = max(1, -(-len(runs) // 8))
    chosen = sorted({*range(len(runs) - 1, -1, -every)})
    x_ticks = tuple(Tick(round(left + slot * (i + 0.5), 1), labels[i]) for i in chosen)
    first, last = runs[0].report.started_at, runs[-1].report.started_at
    caption = f"{len(runs)} run(s), {when(first)} to {when(last)}, one slot per run, oldest left; axis times UTC"
    summary = (f"latest run: {drifted[-1]} drifted check(s), {unreachable[-1]} unreachable host(s); "
               f"most in one run of the window: {max(drifted)} drifted check(s), {max(unreachable)} unreachable host(s)")
    return Chart(width, axis_y + 24, left, pw, tuple(panels), axis_y, x_ticks, caption, summary)


def _nice_step(peak: int, ticks: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if peak / step <= ticks:
            return step
    return int(10 ** len(str(peak)))


def page(env: str, runs: Sequence[StoredRun], generated: datetime | None = None, others: Sequence[SetSummary] = (),
         window: str = "", selection: Sequence[str] = ()) -> Page:
    """The view model of the runs of one check set (oldest first); `others`: sets recorded but not shown."""
    generated_at = when(generated or datetime.now(timezone.utc))
    shown = CheckSet.of(runs[-1].report) if runs else None
    other_sets = tuple(
        OtherSet(o.check_set.label(), o.runs, when(o.latest), _command(env, o))
        for o in others if o.check_set != shown
    )
    if not runs:
        what = f"for {' '.join(selection)}" if selection else "yet"
        return Page(env, generated_at, "", (), window, other_sets,
                    f"No drift runs of {env} are recorded {what}{f' ({window})' if 'since' in window else ''}: "
                    f"run remediate drift {env}.", None, 0, (), (), (), (), (), "", (), None, (), (), ())
    latest_stored = runs[-1]
    latest = latest_stored.report
    same_hosts = [i for i in range(len(runs) - 1) if set(runs[i].report.hosts) == set(latest.hosts)]
    compared = same_hosts[-1] if same_hosts else None
    labels = distinct_labels([s.report.started_at for s in runs])
    strip_runs = runs[-STRIP_RUNS:]
    strip_labels = labels[-STRIP_RUNS:]
    taken: set[str] = set()
    anchors: dict[str, str] = {}
    check_anchors: dict[str, str] = {}
    for host in latest.hosts:
        checks = [c for c in latest.checks if c.host == host]
        if host_state(latest, host) != HostState.CLEAN or any(c.warnings for c in checks) or any(
                t.host == host for t in latest.tasks):
            anchors[host] = _anchor("host", host, taken)
            for c in checks:
                check_anchors[c.key] = _anchor("check", c.key, taken)
    columns = _columns(latest)
    rows = []
    for host in latest.hosts:
        state = host_state(latest, host)
        named = {c.name: c for c in latest.checks if c.host == host}
        cells = tuple(_cell(named.get(col.name), check_anchors.get(f"{host}/{col.name}", ""),
                            state == HostState.UNREACHABLE) for col in columns)
        drifted = [c.name for c in named.values() if c.status == CheckStatus.DRIFT]
        word = HOST_WORD[state] + (f": {len(drifted)} check(s)" if drifted else "")
        # an unreachable host's checks took no time worth showing: nothing ran there
        seconds = None if state == HostState.UNREACHABLE else _host_seconds(named.values())
        rows.append(Row(host, anchors.get(host, ""), state, word, cells, _strip(strip_runs, host, strip_labels),
                        took(seconds)))
    worst = sorted(rows, key=lambda r: (RANK[r.state], -sum(c.css == "drift" for c in r.cells), r.host))
    missing = []
    for h in dict.fromkeys(h for s in runs for h in s.report.hosts):
        if h not in latest.hosts:
            last = next(s.report for s in reversed(runs) if h in s.report.hosts)
            missing.append(f"{h} (last checked at {when(last.started_at)}: {HOST_WORD[host_state(last, h)]})")
    run_rows = tuple(_run_row(s, runs[i - 1].report if i else None) for i, s in enumerate(runs))
    tiles = _tiles(latest, runs[compared].report, f"{labels[compared]}Z") if compared is not None else \
        _tiles(latest, None, "")
    return Page(
        env=env, generated=generated_at, check_set=CheckSet.of(latest).label(), playbooks=latest.playbooks,
        window=window, others=other_sets, empty="", latest=run_rows[-1], hosts=len(latest.hosts),
        tiles=tiles, checked=_checked(latest), columns=columns, rows=tuple(worst),
        rows_by_name=tuple(sorted(rows, key=lambda r: r.host)),
        strip_label=f"last {len(strip_runs)} run(s), oldest left: {strip_labels[0]} … {strip_labels[-1]}",
        missing_hosts=tuple(missing), chart=_chart(runs, labels),
        details=_details(runs, latest, anchors, check_anchors, [r.host for r in worst]),
        clean_hosts=tuple(h for h in latest.hosts if h not in anchors),
        runs=tuple(reversed(run_rows)),
    )


def _command(env: str, summary: SetSummary) -> str:
    flags = [f"-p {p}" for p in summary.playbooks] or [f"-p {n}" for n in summary.check_set.playbooks]
    if not summary.check_set.health:
        flags.append("--no-health")
    return f"remediate report {env} --html FILE {' '.join(flags)}".rstrip()


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(env: str, runs: Sequence[StoredRun], generated: datetime | None = None, others: Sequence[SetSummary] = (),
           window: str = "", selection: Sequence[str] = ()) -> str:
    """The page as HTML."""
    view = page(env, runs, generated, others, window, selection)
    return str(_environment().get_template("report.html.j2").render(page=view, symbols=CHECK_SYMBOL, about=ABOUT))
