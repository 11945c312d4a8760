"""What a host's beat says it does with each enabled row and when it saves runs (templates/celery_beat_probe.py.j2's answer)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .schedules import cron_never_fires


DATABASE_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"


OUTCOMES = ("ok", "skips", "dies", "retries", "disables", "writes")


@dataclass(frozen=True)
class RowVerdict:
    """What this host's beat does with one enabled PeriodicTask row, as its own celery and django-celery-beat say."""

    name: str
    outcome: str  # one of OUTCOMES
    error: str = ""
    log: tuple[str, ...] = ()
    cron: str | None = None
    tz: str = "UTC"
    # for a row never run: what this django-celery-beat counts its due times from, "load" (the moment beat
    # builds its entry: a due time before beat loads its schedule is never sent) or "date_changed"; "" unknown
    never_run_from: str = ""

    @property
    def never_fires(self) -> bool:
        """Its crontab can never fire (Celery's semantics)."""
        return bool(self.cron) and cron_never_fires(str(self.cron))


@dataclass(frozen=True)
class BeatProbe:
    """The beat probe's answer: versions, the scheduler's sync settings, and a verdict per enabled row."""

    versions: Mapping[str, str]
    scheduler: str
    effective: str
    reads_rows: bool
    sync_every: float | None
    sync_every_tasks: int | None
    max_interval: float | None
    rows: tuple[RowVerdict, ...] = ()
    builtin_tasks: tuple[str, ...] = ()
    error: str = ""

    @property
    def who(self) -> str:
        """'celery 5.7.0 / django-celery-beat 2.9.0'."""
        out = f"celery {self.versions.get('celery', '?')}"
        if "django_celery_beat" in self.versions:
            out += f" / django-celery-beat {self.versions['django_celery_beat']}"
        return out

    @property
    def runs_probed(self) -> bool:
        """Beat already runs the scheduler that was probed (else the verdicts say what it would do with it)."""
        def norm(name: str) -> str:
            return name.replace(":", ".")
        return norm(self.effective) == norm(self.scheduler)

    def lag(self) -> timedelta:
        """How long after sending a task this beat saves its last_run_at to the database, at most.

        Beat syncs when a send finds `sync_every_tasks` sends since the last sync, or, after any of its sleeps
        (at most `max_interval`), when `sync_every` seconds have passed: celery 5.4.0 and 5.7.0 alike.
        """
        tick = float(self.max_interval or 5)
        if self.sync_every_tasks == 1:
            return timedelta(seconds=tick + 5)
        return timedelta(seconds=float(self.sync_every if self.sync_every is not None else 180) + tick)

    def lag_words(self) -> str:
        """Where the lag comes from, for progress lines and findings."""
        every = f"{self.sync_every:g} s" if self.sync_every is not None else "an unknown interval (180 s assumed)"
        tasks = f" or {self.sync_every_tasks} send(s)" if self.sync_every_tasks else ""
        short = self.scheduler.replace(":", ".").rsplit(".", 1)[-1]
        return (f"{self.who}'s {short} saves runs every {every}{tasks}, ticking every "
                f"{float(self.max_interval or 5):g} s: sync lag {self.lag().total_seconds():g} s")

    def verdict(self, name: str) -> RowVerdict | None:
        """The verdict on one row, if the probe saw it."""
        return next((v for v in self.rows if v.name == name), None)

    def words(self, v: RowVerdict, it: str = "it") -> str:
        """What this beat does with the row (called `it`), naming its versions (for messages and diffs)."""
        short = self.scheduler.replace(":", ".").rsplit(".", 1)[-1]
        once = "" if self.runs_probed else f" once it runs the {short}"
        error = f": {v.error}" if v.error else ""
        celery_v = self.versions.get("celery", "?")
        dcb = self.versions.get("django_celery_beat", "?")
        if v.outcome == "dies":
            return f"celery {celery_v}'s beat dies on {it}{once}{error}"
        if v.outcome == "skips":
            return f"{self.who} skip {it}" + (f" ({v.error})" if v.error else "")
        if v.outcome == "retries":
            return (f"celery {celery_v}'s beat cannot compute the next run of {it}{once}{error}; it logs an error "
                    f"every {float(self.max_interval or 5):g} s and never sends it")
        if v.outcome in ("disables", "writes"):
            what = "disables" if v.outcome == "disables" else "saves"
            return f"django-celery-beat {dcb}'s {short} {what} {it} when it loads it{error}"
        return f"{self.who} schedule {it}"


def parse_beat_probe(doc: Mapping[str, Any]) -> BeatProbe:
    """The probe's JSON line as a BeatProbe."""
    rows = []
    for row in doc.get("rows") or ():
        cron = row.get("crontab")
        expr = " ".join(str(cron[k]) for k in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")) \
            if cron else None
        rows.append(RowVerdict(str(row.get("name")), str(row.get("outcome") or "ok"), str(row.get("error") or ""),
                               tuple(str(x) for x in row.get("log") or ()), expr,
                               str((cron or {}).get("timezone") or "UTC"), str(row.get("never_run_from") or "")))

    def number(key: str) -> float | None:
        value = doc.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    tasks = doc.get("sync_every_tasks")
    return BeatProbe(
        versions={str(k): str(v) for k, v in (doc.get("versions") or {}).items()},
        scheduler=str(doc.get("scheduler") or ""), effective=str(doc.get("effective_scheduler") or ""),
        reads_rows=bool(doc.get("reads_rows")), sync_every=number("sync_every"),
        sync_every_tasks=int(tasks) if isinstance(tasks, int) and not isinstance(tasks, bool) else None,
        max_interval=number("max_interval"), rows=tuple(rows),
        builtin_tasks=tuple(str(t) for t in doc.get("builtin_tasks") or ()),
        error=str(doc.get("error") or doc.get("load_error") or ""),
    )


def beat_verdicts(doc: Mapping[str, Any], outcome: str | None = None) -> list[dict[str, Any]]:
    """Playbook filter: the probe's verdicts (of one outcome, or every one but ok) as plain mappings.

    Each: name, outcome, error, never_fires, who (the versions), why (what this beat does with it, naming the
    versions) and sentence ("celery 5.7.0 / django-celery-beat 2.9.0 skip 'Send Test Email' (ValueError: ...)").
    """
    probe = parse_beat_probe(doc or {})
    out = []
    for v in probe.rows:
        if (outcome is None and v.outcome == "ok") or (outcome is not None and v.outcome != outcome):
            continue
        out.append({"name": v.name, "outcome": v.outcome, "error": v.error, "never_fires": v.never_fires,
                    "who": probe.who, "why": probe.words(v), "sentence": probe.words(v, repr(v.name))})
    return out
