"""Catalogue faults read from the state query and beat's log (issue 16 items 3-6), pure: a time zone that
makes beat read its last runs in the future, an enabled row beat never loaded (schedule changes beat never
sees), Celery's migrations not applied, a result backend that leaves TaskResult empty.

Each `*_evidence` function returns None when the fault is absent (or a part it needs was not seen), else what
was seen, quoted; diagnose turns it into a finding and the playbooks ask the same functions (template filters).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .schedules import Task, iso, last_due, never_fires, parse_time

CELERY_APPS = ("django_celery_beat", "django_celery_results")
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu",
                       "GMT", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "GMT0", "Etc/Greenwich"})
# a last run this far ahead of the host's clock is not clock skew
FUTURE_SLACK = timedelta(seconds=60)


@dataclass(frozen=True)
class Evidence:
    """A fault seen: what it means, and what was seen (quoted)."""

    message: str
    evidence: tuple[str, ...]


# --- 6 result backend ----------------------------------------------------------------------------------------

def result_backend_evidence(settings: Mapping[str, Any], app: Mapping[str, Any], installed: Mapping[str, bool],
                            task_results: Mapping[str, Any] | None) -> Evidence | None:
    """django_celery_results is installed, yet Celery stores results elsewhere: TaskResult stays empty (and every
    verification that counts TaskResult rows is blind)."""
    if not installed.get("django_celery_results"):
        return None
    backend = str(app.get("result_backend") or "")
    if backend.startswith(("django-db", "django-cache")):
        return None
    where = ("the celery_taskmeta table (SQLAlchemy's), not django_celery_results' TaskResult" if backend.startswith("db+")
             else "nowhere" if backend in ("", "None", "disabled") else f"{backend.split(':', 1)[0]}, not the database")
    info = task_results or {}
    newest = info.get("newest") or {}
    return Evidence(
        f"results go to {where}: TaskResult stays empty although django_celery_results is installed",
        (f"app.conf.result_backend = {backend!r}", f"settings.CELERY_RESULT_BACKEND = {settings.get('CELERY_RESULT_BACKEND')!r}",
         "django_celery_results is in INSTALLED_APPS",
         f"TaskResult rows: {info.get('count', 'unknown')}"
         + (f" (newest {newest.get('task_name')} {newest.get('date_done')})" if newest else "")))


# --- 5 migrations --------------------------------------------------------------------------------------------

def unapplied(migrations: Mapping[str, Any] | None, apps: Iterable[str] = CELERY_APPS) -> dict[str, list[str]]:
    """The Celery apps' migrations Django's plan has not applied yet (app -> names, in migrate's order)."""
    pending = (migrations or {}).get("unapplied") or {}
    return {a: list(pending[a]) for a in apps if pending.get(a)}


MISSING = re.compile(r'(?:relation|column) "?[\w.]+"?(?: of relation "\w+")? does not exist')


def migrations_evidence(migrations: Mapping[str, Any] | None, beat_state: str = "",
                        beat_log: str = "", results_error: str = "") -> Evidence | None:
    """Migrations of django_celery_beat / django_celery_results not applied: beat dies on a missing relation
    (a database never migrated: the issue's form) or column (an upgrade without `migrate`), results cannot be
    stored. Beat's own exception line is quoted when its log tail holds it, else the last line naming what is
    missing (celery 5.7.0 logs the traceback after it, a line per fragment)."""
    missing = unapplied(migrations)
    if not missing:
        return None
    lines = [f"{app}: {len(names)} not applied ({', '.join(names)})" for app, names in missing.items()]
    if beat_state:
        lines.append(beat_state)
    logged = [line.strip() for line in beat_log.splitlines() if MISSING.search(line)]
    raised = [line for line in logged if "beat raised exception" in line]
    quoted = (raised or logged)[-1:]
    lines += quoted
    if MISSING.search(results_error):
        lines.append(f"TaskResult: {results_error}")
    died = MISSING.search(quoted[0]) if quoted and beat_state else None
    why = f"beat dies on start ({died.group(0)})" if died else "their tables lack what the installed package expects"
    return Evidence(f"migrations of {', '.join(missing)} are not applied: {why}", tuple(lines))


# --- 3 time zone ---------------------------------------------------------------------------------------------

def _is_utc(name: Any) -> bool:
    return str(name) in UTC_NAMES


def timezone_evidence(settings: Mapping[str, Any], app: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                      now: datetime | None) -> Evidence | None:
    """Beat reads its last runs in the future: under USE_TZ = False Django hands django-celery-beat's aware last
    runs back as naive TIME_ZONE readings, which celery takes as UTC (DJANGO_CELERY_BEAT_TZ_AWARE left True);
    or last runs sit in the future for another reason (TIME_ZONE changed under saved naive values)."""
    use_tz, tz_aware, time_zone = settings.get("USE_TZ"), settings.get("DJANGO_CELERY_BEAT_TZ_AWARE"), settings.get("TIME_ZONE")
    if use_tz is None and tz_aware is None:
        return None  # a state query that did not ask
    misread = use_tz is False and tz_aware is not False and time_zone is not None and not _is_utc(time_zone)
    ahead = future_rows(rows, now) if now is not None else []
    if not misread and not ahead:
        return None
    lines = [f"TIME_ZONE = {time_zone!r}, USE_TZ = {use_tz!r}, DJANGO_CELERY_BEAT_TZ_AWARE = {tz_aware!r} (effective), "
             f"CELERY_TIMEZONE = {settings.get('CELERY_TIMEZONE')!r}, app.conf.timezone = {app.get('timezone')!r}, "
             f"enable_utc = {app.get('enable_utc')!r}"]
    for name, beat_reads, real in ahead:
        lines.append(f"PeriodicTask {name!r}: beat reads its last run as {iso(beat_reads)}, "
                     f"{_hours(beat_reads - now) if now else ''} ahead of now" + (f" (it ran at {iso(real)})" if real else ""))
    if misread:
        why = (f"Django hands beat its last runs as naive {time_zone} times (USE_TZ = False) and celery reads them as UTC: "
               "each run beat saves lands in the future, and the row stops firing after beat restarts")
    else:
        why = "PeriodicTask last runs lie in the future: beat will not send those rows until then"
    return Evidence(why, tuple(lines))


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if abs(hours) >= 1 else f"{delta.total_seconds() / 60:.0f} min"


def future_rows(rows: Sequence[Mapping[str, Any]], now: datetime | None) -> list[tuple[str, datetime, datetime | None]]:
    """Enabled rows whose last run, as beat reads it, is later than now: (name, beat's reading, the real instant)."""
    if now is None:
        return []
    out = []
    for row in rows:
        beat_reads = parse_time(row.get("last_run_at_beat"))
        if row.get("enabled") and beat_reads is not None and beat_reads > now + FUTURE_SLACK:
            out.append((str(row.get("name")), beat_reads, parse_time(row.get("last_run_at"))))
    return out


def timezone_misread(state: Mapping[str, Any]) -> bool:
    """USE_TZ = False with a TIME_ZONE other than UTC and DJANGO_CELERY_BEAT_TZ_AWARE (effectively) True: beat
    misreads every last run it saves."""
    settings = state.get("settings") or {}
    return (settings.get("USE_TZ") is False and settings.get("DJANGO_CELERY_BEAT_TZ_AWARE") is not False
            and settings.get("TIME_ZONE") is not None and not _is_utc(settings.get("TIME_ZONE")))


def timezone_rewrites(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The last runs the time zone fix rewrites: each enabled row beat reads in the future, whose naive value read
    in TIME_ZONE (how Django handed back what beat saved aware) is a past instant, gets the naive UTC reading of
    that instant: what beat itself saves once DJANGO_CELERY_BEAT_TZ_AWARE is False. A row that would still lie in
    the future is not the time zone's doing and is left out (`timezone_unexplained`)."""
    return [r for r in _rewrites(state) if r["explained"]]


def timezone_unexplained(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows beat reads in the future that reading their value in TIME_ZONE does not explain."""
    return [r for r in _rewrites(state) if not r["explained"]]


def _rewrites(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    from zoneinfo import ZoneInfo

    now = parse_time(state.get("now"))
    settings = state.get("settings") or {}
    try:
        zone = ZoneInfo(str(settings.get("TIME_ZONE") or "UTC"))
    except (ValueError, KeyError):
        zone = ZoneInfo("UTC")
    naive = {str(r.get("name")): r.get("last_run_at_naive") for r in state.get("periodic_tasks") or ()}
    out = []
    for name, beat_reads, _ in future_rows(state.get("periodic_tasks") or (), now):
        value = naive.get(name)
        real = datetime.fromisoformat(value).replace(tzinfo=zone).astimezone(timezone.utc) if value else None
        explained = real is not None and now is not None and real <= now + FUTURE_SLACK
        out.append({"name": name, "beat_reads": iso(beat_reads), "ran": iso(real) if real else None,
                    "last_run_at": real.replace(tzinfo=None).isoformat() if real else None, "explained": explained})
    return out


def crontab_zones_differ(state: Mapping[str, Any]) -> list[dict[str, str]]:
    """Enabled crontab rows whose timezone is not app.conf.timezone: with DJANGO_CELERY_BEAT_TZ_AWARE = False beat
    evaluates every crontab in app.conf.timezone, so these rows' hours would move."""
    zone = str((state.get("app") or {}).get("timezone"))
    out = []
    for row in state.get("periodic_tasks") or ():
        cron = row.get("crontab")
        if row.get("enabled") and cron and str(cron.get("timezone")) != zone:
            out.append({"name": str(row.get("name")), "timezone": str(cron.get("timezone")), "app_timezone": zone})
    return out


# --- 4 schedule changes beat never sees ----------------------------------------------------------------------

DOCKER_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z\s(.*)$")
SENDING = re.compile(r"Scheduler: Sending due task (.+?) \(")


@dataclass(frozen=True)
class BeatEvents:
    """What beat's log (`docker logs --timestamps`, since its container started) says about its schedule."""

    started: datetime | None = None  # the last "beat: Starting..."
    changed: tuple[datetime, ...] = ()  # "DatabaseScheduler: Schedule changed."
    sent: Mapping[str, tuple[datetime, ...]] | None = None  # row name -> "Sending due task NAME (" times

    def loaded(self, fallback: datetime | None = None) -> datetime | None:
        """When beat last loaded its schedule from the table, as its log says (its start, a "Schedule changed")."""
        times = [t for t in (self.started, *self.changed, fallback) if t is not None]
        return max(times) if times else None

    def last_sent(self, name: str) -> datetime | None:
        return max((self.sent or {}).get(name, ()), default=None)


def parse_beat_events(text: str) -> BeatEvents:
    """The events in `docker logs --timestamps` output of beat (lines without a timestamp are ignored)."""
    started = None
    changed: list[datetime] = []
    sent: dict[str, list[datetime]] = {}
    for line in text.splitlines():
        m = DOCKER_STAMP.match(line)
        if not m:
            continue
        when = datetime.fromisoformat(m.group(1) + "." + (m.group(2) or "0")[:6].ljust(6, "0")).replace(tzinfo=timezone.utc)
        rest = m.group(3)
        if "beat: Starting..." in rest:
            started, changed, sent = when, [], {}
        elif "Schedule changed" in rest:
            changed.append(when)
        else:
            s = SENDING.search(rest)
            if s:
                sent.setdefault(s.group(1), []).append(when)
    return BeatEvents(started, tuple(changed), {k: tuple(v) for k, v in sent.items()})


@dataclass(frozen=True)
class Unseen:
    """An enabled row due since beat last loaded its schedule that beat has not sent since."""

    task: Task
    due: datetime
    loaded: datetime
    last_sent: datetime | None


def unseen_rows(tasks: Sequence[Task], events: BeatEvents, now: datetime, beat_started: datetime | None,
                schedulable: frozenset[str] | None = None, last_update: datetime | None = None,
                tick: timedelta = timedelta(seconds=5), ahead: frozenset[str] = frozenset()) -> tuple[Unseen, ...]:
    """Rows beat's loaded schedule lacks: enabled, schedulable by this beat (`schedulable`: the names its own
    scheduler loads, from the probe; None: unknown), last due at least two ticks plus 5 s before `now` and after
    beat's last schedule load, and not sent since that load; while PeriodicTasks.last_update is not later than
    the load (else beat has been told and reloads within a tick). Rows whose last run beat reads in the future
    (`ahead`) are not sent for that reason: the time zone fault's, not this one's."""
    loaded = events.loaded(beat_started)
    if loaded is None:
        return ()
    if last_update is not None and last_update > loaded + tick * 2:
        return ()
    margin = tick * 2 + timedelta(seconds=5)
    out = []
    for t in tasks:
        if not t.enabled or t.one_off or never_fires(t) or t.name in ahead or (schedulable is not None and t.name not in schedulable):
            continue
        due = last_due(t, now - margin)
        if due is None or due <= loaded:
            continue
        sent = events.last_sent(t.name)
        if sent is not None and sent >= loaded:
            continue
        out.append(Unseen(t, due, loaded, sent))
    return tuple(out)


def unseen_evidence(unseen: Sequence[Unseen], last_update: datetime | None) -> Evidence | None:
    """The finding's words for rows beat never loaded."""
    if not unseen:
        return None
    loaded = unseen[0].loaded
    lines = [f"beat last loaded its schedule at {iso(loaded)} (its start or its last \"Schedule changed\")",
             f"PeriodicTasks.last_update = {iso(last_update) if last_update else None} (not later: beat was not told)"]
    for u in unseen:
        lines.append(f"PeriodicTask {u.task.name!r} ({u.task.schedule_words}) is enabled, was due {iso(u.due)}; beat's log "
                     f"has no \"Sending due task {u.task.name}\" since " + (f"(last sent {iso(u.last_sent)})" if u.last_sent else "then"))
    return Evidence(f"{', '.join(repr(u.task.name) for u in unseen)}: enabled but not in beat's schedule: changed without "
                    "PeriodicTasks being bumped (QuerySet.update(), a data migration, SQL), so beat never reloaded",
                    tuple(lines))


def unseen_rows_doc(state: Mapping[str, Any], log: str, started: str | None,
                    probe: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`unseen_rows` from the state query's and beat probe's JSON and beat's `docker logs --timestamps` (what the
    playbook registers): [{name, task, due, loaded, last_sent}]."""
    from .schedules import parse_tasks

    now = parse_time(state.get("now"))
    if now is None:
        return []
    schedulable = None
    tick = timedelta(seconds=5)
    if probe:
        schedulable = frozenset(str(r.get("name")) for r in probe.get("rows") or () if r.get("outcome") == "ok")
        interval = probe.get("max_interval")
        if isinstance(interval, (int, float)) and interval > 0:
            tick = timedelta(seconds=float(interval))
    ahead = frozenset(name for name, _, _ in future_rows(state.get("periodic_tasks") or (), now))
    rows = unseen_rows(parse_tasks(state.get("periodic_tasks") or ()), parse_beat_events(log), now,
                       parse_time(started), schedulable, parse_time(state.get("periodic_tasks_last_update")), tick, ahead)
    return [{"name": u.task.name, "task": u.task.task, "due": iso(u.due), "loaded": iso(u.loaded),
             "last_sent": iso(u.last_sent) if u.last_sent else None} for u in rows]
