"""Celery steps: find task modules nobody imports, verify the worker registered tasks, verify tasks really ran."""
from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import celery as cel
from ..facts import compose as cf
from ..actions.base import Action, ExecContext, Outcome
from ..core.errors import StepError, tail_lines
from ..core.results import CommandOutput
from .base import Facts, PlanContext, Probe, Step
from .compose import ComposeStep, Report, exec_action, query_result


@dataclass(frozen=True)
class SourceTree(Probe):
    """Every .py file under a directory (migrations excluded), read in one round trip as a tar stream."""

    root: str

    def gather(self, transport: Any) -> dict[str, str]:
        script = (
            'cd "$1" || exit 66; '
            "find . -name '*.py' -not -path '*/migrations/*' -not -path '*/node_modules/*' -size -512k -print0 "
            "| tar --null -T - -cf -"
        )
        result = transport.run(["sh", "-c", script, "sh", self.root])
        if result.rc == 66:
            raise StepError(f"source directory {self.root} does not exist")
        if result.rc != 0:
            raise StepError(f"cannot read {self.root}: {result.err.strip()[-300:]}")
        files = {}
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    data = tar.extractfile(member)
                    if data is not None:
                        files[posixpath.normpath(member.name)] = data.read().decode("utf-8", "replace")
        return files


@dataclass(frozen=True)
class CeleryTaskModules(Step):
    """Find modules of the project's Django apps that define Celery tasks but are not imported when the app loads.

    Registers `modules` (module, path, apps_file, config_class, tasks) and `tasks` (every task they define).

    ```yaml
    - name: task modules nobody imports
      celery_task_modules: {source: "{{ compose_dir }}/{{ source_dir }}"}
      register: found
    ```
    """

    kind = "celery_task_modules"
    source: str
    celery_names: tuple[str, ...] = ("app", "celery_app")

    def probes(self) -> tuple[Probe, ...]:
        return (SourceTree(self.source),)

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        files = facts[SourceTree(self.source)]
        found = cel.find_unimported_task_modules(files, self.celery_names)
        modules = [
            {"module": m.module, "path": m.path, "apps_file": m.app_config_file, "config_class": m.app_config_class,
             "tasks": list(m.tasks)} for m in found
        ]
        return (Report(f"task modules under {self.source}", {
            "modules": modules,
            "tasks": [t for m in found for t in m.tasks],
            "defined": list(cel.defined_tasks(files, self.celery_names)),
        }),)


@dataclass(frozen=True)
class RegisteredAction(Action):
    """Poll `celery inspect registered` in the worker until it answers; every expected task must be registered."""

    is_change = False
    argv: tuple[str, ...]
    expect: tuple[str, ...]
    timeout: float
    interval: float

    def describe(self) -> str:
        return f"worker registers {len(self.expect)} task(s): {', '.join(self.expect)}"

    def execute(self, ctx: ExecContext) -> Outcome:
        deadline = ctx.clock() + self.timeout
        last = ""
        while True:
            result = ctx.transport.run(self.argv, timeout=max(self.interval * 4, 30))
            last = (result.out + result.err).strip()
            registered = _parse_registered(result.out) if result.ok else None
            if registered is not None:
                missing = cel.unregistered(self.expect, registered)
                out = CommandOutput(self.argv, result.rc, result.out[-4000:], result.err[-2000:])
                data = {"registered": sorted(registered), "missing": missing}
                if missing:
                    return Outcome(out, failed=True, data=data,
                                   message=f"not registered with the worker: {', '.join(missing)}")
                return Outcome(out, data=data, message=f"all {len(self.expect)} expected task(s) registered")
            if ctx.clock() >= deadline:
                return Outcome(CommandOutput(self.argv, result.rc, result.out, result.err), failed=True,
                               message=f"the worker did not answer `inspect registered` within {self.timeout:g} s; "
                                       f"last output:\n{tail_lines(last, 8)}")
            ctx.progress("waiting for the worker to answer `celery inspect registered`")
            ctx.sleep(self.interval)


def _parse_registered(stdout: str) -> set[str] | None:
    """Task names from `celery inspect registered --json` (one JSON object: node -> list)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            names = set()
            for tasks in doc.values():
                for entry in tasks or ():
                    names.add(str(entry).split(" ")[0])
            return names
    return None


@dataclass(frozen=True)
class CeleryRegistered(ComposeStep):
    """Verify the worker registered every expected task (polling until the worker answers).

    ```yaml
    - name: the worker registered every task the schedules name
      celery_registered:
        service: "{{ worker_service }}"
        app: "{{ celery_app }}"
        expect: "{{ found.tasks + state.json.periodic_tasks | map(attribute='task') | list }}"
    ```
    """

    kind = "celery_registered"
    service: str
    app: str
    expect: tuple[str, ...] = ()
    timeout: float = 120.0
    interval: float = 3.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        cmd = exec_action(f.compose, self.project(), self.service,
                          ("celery", "-A", self.app, "inspect", "registered", "--json", "--timeout", "5"), {}, None)
        expect = tuple(dict.fromkeys(self.expect))
        return (RegisteredAction(cmd.argv, expect, self.timeout, self.interval),)


@dataclass(frozen=True)
class TasksRunAction(Action):
    """Wait until the PeriodicTask(s) due soonest after beat (re)started show a new run in the database."""

    is_change = False
    project_name: str
    beat_service: str
    query_argv: tuple[str, ...]
    query_env: Mapping[str, str]
    script: str
    interval: float
    grace: float
    probe_argv: tuple[str, ...] = ()
    probe_script: str = ""

    def describe(self) -> str:
        return f"periodic tasks show runs after {self.beat_service} started (last_run_at, total_run_count, TaskResult)"

    def _lag(self, ctx: ExecContext) -> tuple[timedelta, str]:
        """Beat's own answer (in its container) to how long after a send it saves last_run_at, and why."""
        env = {"REMEDIATE_CELERY_APP": self.query_env.get("REMEDIATE_CELERY_APP", "")}
        result = ctx.transport.run(self.probe_argv, stdin=self.probe_script.encode(), env=env, timeout=300)
        probe = cel.parse_beat_probe(query_result(result.out, result.err, result.rc, f"beat probe in {self.beat_service}"))
        if probe.error:
            raise StepError(f"{self.beat_service}: {probe.error}")
        return probe.lag(), probe.lag_words()

    def _query(self, ctx: ExecContext, since: datetime) -> dict[str, Any]:
        env = {**self.query_env, "REMEDIATE_SINCE": since.isoformat()}
        result = ctx.transport.run(self.query_argv, stdin=self.script.encode(), env=env, timeout=300)
        return query_result(result.out, result.err, result.rc, "state query")

    def execute(self, ctx: ExecContext) -> Outcome:
        state = cf.gather_containers(ctx.transport, self.project_name, self.beat_service)
        running = [c for c in state.containers if c.running and c.started_at]
        if not running:
            return Outcome(failed=True, message=f"{self.beat_service} is not running")
        started = max(c.started_at for c in running if c.started_at)
        doc = self._query(ctx, started)
        tasks = cel.parse_tasks(doc.get("periodic_tasks") or [])
        first = cel.soonest(tasks, started)
        if first is None:
            return Outcome(failed=True, message="no enabled PeriodicTask can fire: nothing to verify runs with")
        due, chosen = first
        lag, lag_words = self._lag(ctx)
        deadline = due + lag + timedelta(seconds=self.grace)
        now = cel.parse_time(doc.get("now")) or state.now
        names = ", ".join(t.name for t in chosen)
        limit = now + timedelta(seconds=ctx.verify_timeout)
        data: dict[str, Any] = {"tasks": [t.name for t in chosen], "due": due.isoformat(), "deadline": deadline.isoformat(),
                                "beat_started": started.isoformat(), "sync_lag": lag.total_seconds(), "lag": lag_words}
        if deadline > limit:
            return Outcome(pending=True, data={**data, "confirm_after": deadline.isoformat()},
                           message=f"PENDING: {names} first due {cel.iso(due)}; can be confirmed after {cel.iso(deadline)} "
                                   f"(beyond --verify-timeout {ctx.verify_timeout:g} s)")
        results_stored = bool(doc.get("task_results", {}).get("available")) and \
            str(doc.get("app", {}).get("result_backend", "")).startswith("django-db")
        while True:
            current = {t.name: t for t in cel.parse_tasks(doc.get("periodic_tasks") or [])}
            seen = []
            done = True
            for task in chosen:
                t = current.get(task.name)
                ran = bool(t and t.last_run_at and t.last_run_at > started and t.total_run_count > 0)
                executed = (doc.get("task_results", {}).get("since") or {}).get(task.task, 0) if results_stored else None
                seen.append(f"{task.name}: last_run_at {cel.iso(t.last_run_at) if t else 'gone'}, runs {t.total_run_count if t else 0}"
                            + (f", results since restart {executed}" if executed is not None else ""))
                done &= ran and (executed is None or executed > 0)
            summary = "; ".join(seen)
            if done:
                return Outcome(message=f"ran after {self.beat_service} started: {summary}", data={**data, "seen": summary})
            now = cel.parse_time(doc.get("now")) or now
            if now >= deadline:
                return Outcome(failed=True, data={**data, "seen": summary},
                               message=f"{names} due {cel.iso(due)} did not show a run by the deadline {cel.iso(deadline)}; "
                                       f"last seen: {summary}")
            ctx.progress(f"{names} due {cel.iso(due)}, deadline {cel.iso(deadline)} ({lag_words}); last seen: {summary}")
            ctx.sleep(self.interval)
            doc = self._query(ctx, started)


@dataclass(frozen=True)
class CeleryTasksRun(ComposeStep):
    """Verify periodic tasks really run: the task(s) due soonest after beat started must show a new run.

    The deadline is the due time plus beat's database sync lag plus `grace`; the lag is asked of beat's own
    container (its scheduler's sync_every, sync_every_tasks and tick, templates/celery_beat_probe.py.j2).
    Beyond --verify-timeout the result is PENDING with the time it can be confirmed, never passed.

    ```yaml
    - name: tasks show runs
      celery_tasks_run:
        service: "{{ backend_service }}"
        beat_service: "{{ beat_service }}"
        app: "{{ celery_app }}"
    ```
    """

    kind = "celery_tasks_run"
    service: str
    beat_service: str
    app: str
    template: str = "celery_state.py.j2"
    probe_template: str = "celery_beat_probe.py.j2"
    manage: str = "manage.py"
    interval: float = 10.0
    grace: float = 60.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        from ..inputs import templating

        f = self.facts_of(facts)
        f.model.service(self.service)
        f.model.service(self.beat_service)
        script = templating.render_file(self.template, ctx.template_path, ctx.vars)
        probe = templating.render_file(self.probe_template, ctx.template_path, ctx.vars)
        env = {"REMEDIATE_CELERY_APP": self.app, "REMEDIATE_SINCE": ""}
        cmd = exec_action(f.compose, self.project(), self.service, ("python", self.manage, "shell"), env, None)
        # beat's sync lag is asked of beat's own container: its celery and its scheduler's sync settings
        beat = exec_action(f.compose, self.project(), self.beat_service, ("python", self.manage, "shell"),
                           {"REMEDIATE_CELERY_APP": self.app}, None)
        return (TasksRunAction(f.model.name, self.beat_service, cmd.argv, {"REMEDIATE_CELERY_APP": self.app},
                               script, self.interval, self.grace, beat.argv, probe),)

