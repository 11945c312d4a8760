"""Scheduled drift checks: cron schedules validated, cron/systemd jobs installed from templates, the --every loop."""
from __future__ import annotations

import enum
import os
import re
import shlex
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError, RemediateError

DOW_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
FIELDS = ("minute", "hour", "day of month", "month", "day of week")


class Kind(enum.Enum):
    """Where a scheduled job lives."""

    CRON = "cron"
    SYSTEMD = "systemd"


@dataclass(frozen=True)
class CronSchedule:
    """A validated 5-field cron schedule and its expansion."""

    text: str
    minutes: tuple[int, ...] | None  # None: every value (`*`)
    hours: tuple[int, ...] | None
    days: tuple[int, ...] | None
    months: tuple[int, ...] | None
    weekdays: tuple[int, ...] | None


def parse_schedule(text: str) -> CronSchedule:
    """Validate a cron schedule: five fields, no `%` or newline, every field valid, and it fires at some point."""
    if "\n" in text or "\r" in text:
        raise InputError("--schedule: a newline is not allowed (it would end the cron line)")
    if "%" in text:
        raise InputError("--schedule: '%' is not allowed (cron turns it into a newline)")
    fields = text.split()
    if len(fields) != 5:
        raise InputError(f"--schedule: expected 5 fields (minute hour day-of-month month day-of-week), "
                         f"got {len(fields)} in {text!r}")
    from croniter import croniter

    from ..celery import cron_never_fires

    for name, field in zip(FIELDS, fields):
        _forwards(name, field)
    expr = " ".join(fields)
    try:
        expanded = croniter.expand(expr)[0]
    except Exception as exc:  # croniter raises several types for bad fields
        raise InputError(f"--schedule: invalid cron expression {text!r}: {exc}") from None
    if cron_never_fires(expr, day_or=True):  # cron ORs a restricted day of month with a restricted day of week
        raise InputError(f"--schedule: {text!r} never fires (no month has that day)")

    def values(items: Sequence[object]) -> tuple[int, ...] | None:
        if list(items) == ["*"]:
            return None
        return tuple(sorted({int(str(v)) for v in items}))

    weekdays = values(expanded[4])
    if weekdays is not None:
        weekdays = tuple(sorted({d % 7 for d in weekdays}))  # 7 is Sunday too
    return CronSchedule(expr, values(expanded[0]), values(expanded[1]), values(expanded[2]), values(expanded[3]), weekdays)


_NAMES = {**{m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec"), start=1)},
          **{d.lower(): i for i, d in enumerate(DOW_NAMES)}}


_BOUNDS = {"minute": (0, 59), "hour": (0, 23), "day of month": (1, 31), "month": (1, 12), "day of week": (0, 6)}


def _forwards(name: str, field: str) -> None:
    """A range must go upwards: cron sets nothing from `5-1` (vixie cron's get_range loops from 5 while <= 1), so
    the job would never run there, where croniter reads it as a wrap-around."""
    for item in field.split(","):
        low, dash, high = item.split("/", 1)[0].partition("-")
        if not dash:
            continue
        ends = [int(v) if v.isdigit() else _NAMES.get(v.lower()) for v in (low, high)]
        if None not in ends and ends[0] > ends[1]:  # type: ignore[operator]
            first, last = _BOUNDS[name]
            raise InputError(f"--schedule: the {name} range {item} runs backwards: cron sets nothing from it, so the "
                             f"job would never run (a wrap-around is {low}-{last},{first}-{high})")


def on_calendar(schedule: CronSchedule) -> tuple[str, ...]:
    """systemd OnCalendar= values for a cron schedule.

    cron fires when the day of month OR the weekday matches if both are restricted; systemd ANDs them,
    so that case becomes two OnCalendar= lines (systemd fires on either).
    """
    def part(values: tuple[int, ...] | None, width: int) -> str:
        return "*" if values is None else ",".join(f"{v:0{width}d}" for v in values)

    time_part = f"{part(schedule.hours, 2)}:{part(schedule.minutes, 2)}:00"
    month = part(schedule.months, 2)

    def line(days: tuple[int, ...] | None, weekdays: tuple[int, ...] | None) -> str:
        dow = ",".join(DOW_NAMES[d] for d in weekdays) + " " if weekdays is not None else ""
        return f"{dow}*-{month}-{part(days, 2)} {time_part}"

    if schedule.days is not None and schedule.weekdays is not None:
        return (line(schedule.days, None), line(None, schedule.weekdays))
    return (line(schedule.days, schedule.weekdays),)


# --- installing jobs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A drift job to install: what runs, where, and how it is locked."""

    env: str
    schedule: CronSchedule
    argv: tuple[str, ...]
    workdir: str
    state_dir: str
    user: str

    @property
    def name(self) -> str:
        """File/unit name: cron.d ignores names with dots, systemd dislikes odd characters."""
        return "remediate-drift-" + re.sub(r"[^A-Za-z0-9_-]", "_", self.env)

    @property
    def lock(self) -> str:
        """The flock file that keeps runs from overlapping."""
        return str(Path(self.state_dir) / f"{self.name}.lock")

    @property
    def log(self) -> str:
        """Where cron appends the job's output."""
        return str(Path(self.state_dir) / f"{self.name}.log")

    @property
    def marker(self) -> str:
        """The first line of every file remediate writes, so it finds (and removes) only its own."""
        return f"# {self.name}: managed by remediate"


@dataclass(frozen=True)
class FileChange:
    """What install/uninstall did to one file."""

    path: Path
    action: str  # written | updated | unchanged | removed | absent


def _checked(job: Job) -> None:
    for value in (*job.argv, job.workdir, job.state_dir, job.user):
        if "%" in value or "\n" in value or "\r" in value:
            raise InputError(f"cannot schedule {value!r}: '%' and newlines break cron and systemd lines")


def systemd_quote(value: str) -> str:
    """One word for systemd's ExecStart=/Environment= parser (`$` doubled so it is not expanded)."""
    escaped = value.replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(kind: Kind, job: Job) -> dict[str, str]:
    """File name (relative to the root) -> content, from the templates under templates/drift/."""
    from ..inputs import resources, templating

    _checked(job)
    variables: dict[str, object] = {
        "marker": job.marker, "env": job.env, "name": job.name, "schedule": job.schedule.text, "user": job.user,
        "workdir": job.workdir, "state_dir": job.state_dir, "lock": job.lock, "log": job.log,
    }
    tpath = resources.template_path()
    if kind == Kind.CRON:
        variables["command"] = shlex.join(job.argv)
        return {f"etc/cron.d/{job.name}": templating.render_file("drift/cron.j2", tpath, variables)}
    variables["command"] = " ".join(systemd_quote(a) for a in job.argv)
    variables["workdir"] = systemd_quote(job.workdir)
    variables["environment"] = systemd_quote(f"REMEDIATE_STATE_DIR={job.state_dir}")
    variables["lock"] = systemd_quote(job.lock)
    variables["on_calendar"] = list(on_calendar(job.schedule))
    return {
        f"etc/systemd/system/{job.name}.service": templating.render_file("drift/drift.service.j2", tpath, variables),
        f"etc/systemd/system/{job.name}.timer": templating.render_file("drift/drift.timer.j2", tpath, variables),
    }


def _owned(path: Path, marker: str) -> bool:
    try:
        return path.read_text().splitlines()[:1] == [marker]
    except (OSError, UnicodeDecodeError):
        return False


def install(kind: Kind, job: Job, root: Path) -> tuple[FileChange, ...]:
    """Write the job's files under root; unchanged files are left alone; a file remediate did not write is refused."""
    files = render(kind, job)
    for rel in files:
        path = root / rel
        if path.exists() and not _owned(path, job.marker):
            raise RemediateError(f"{path} exists and was not written by remediate (no {job.marker!r} line); "
                                 "not touching it")
    Path(job.state_dir).mkdir(parents=True, exist_ok=True)  # flock and the log need it at run time
    changes = []
    for rel, content in files.items():
        path = root / rel
        if path.exists() and path.read_text() == content:
            changes.append(FileChange(path, "unchanged"))
            continue
        action = "updated" if path.exists() else "written"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.remediate-tmp")
        tmp.write_text(content)
        os.chmod(tmp, 0o644)  # cron refuses group/world-writable files
        os.replace(tmp, path)
        changes.append(FileChange(path, action))
    return tuple(changes)


def uninstall(kind: Kind, env: str, root: Path) -> tuple[FileChange, ...]:
    """Remove exactly the files install wrote for this environment (those carrying the marker)."""
    probe = Job(env, CronSchedule("* * * * *", None, None, None, None, None), (), "/", "/", "root")
    names = ([f"etc/cron.d/{probe.name}"] if kind == Kind.CRON else
             [f"etc/systemd/system/{probe.name}.timer", f"etc/systemd/system/{probe.name}.service"])
    changes = []
    for rel in names:
        path = root / rel
        if not path.exists():
            changes.append(FileChange(path, "absent"))
        elif not _owned(path, probe.marker):
            raise RemediateError(f"{path} was not written by remediate (no {probe.marker!r} line); not removing it")
        else:
            path.unlink()
            changes.append(FileChange(path, "removed"))
    return tuple(changes)


# --- the foreground loop --------------------------------------------------------------------------------------------


def run_every(
    interval: float,
    run_once: Callable[[], int],
    stop: threading.Event,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run, wait for the next slot, repeat until `stop` is set; a failed run is reported and the loop goes on.

    Runs happen one after another in this thread, so they never overlap; a run longer than the interval
    makes the loop skip to the next slot rather than start runs back to back.
    """
    runs = 0
    while not stop.is_set():
        start = clock()
        try:
            code = run_once()
            log(f"run {runs + 1} ended with exit {code}")
        except Exception:  # noqa: BLE001 (a scheduled loop must outlive any one run; the traceback is kept)
            log(f"run {runs + 1} failed:\n{traceback.format_exc().rstrip()}")
        runs += 1
        elapsed = clock() - start
        stop.wait(interval - (elapsed % interval))
    log(f"stopped after {runs} run(s)")
    return 0
