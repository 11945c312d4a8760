"""Celery steps: find task modules nobody imports, verify the worker registered tasks, verify tasks really ran."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..actions.base import Action
from ..actions.celery import OncePerPeriodAction, RegisteredAction, TasksRunAction
from ..actions.commands import Report
from ..celery.tasks import defined_tasks, find_unimported_task_modules
from ..core.errors import StepError
from ..facts.base import Facts, Probe
from ..facts.celery import SourceTree, beat_query, registered_argv, state_query
from .base import PlanContext, Step
from .compose import ComposeStep


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
        found = find_unimported_task_modules(files, self.celery_names)
        modules = [
            {"module": m.module, "path": m.path, "apps_file": m.app_config_file, "config_class": m.app_config_class,
             "tasks": list(m.tasks)} for m in found
        ]
        return (Report(f"task modules under {self.source}", {
            "modules": modules,
            "tasks": [t for m in found for t in m.tasks],
            "defined": list(defined_tasks(files, self.celery_names)),
        }),)


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
        expect = tuple(dict.fromkeys(self.expect))
        return (RegisteredAction(registered_argv(f.compose, self.project(), self.service, self.app), expect,
                                 self.timeout, self.interval),)


@dataclass(frozen=True)
class CeleryTasksRun(ComposeStep):
    """Verify periodic tasks really run: the task(s) due soonest after beat started must show a new run.

    The deadline is the due time plus beat's database sync lag plus `grace`; the lag is asked of beat's own
    container (its scheduler's sync_every, sync_every_tasks and tick, templates/celery_beat_probe.py.j2).
    Beyond --verify-timeout the result is PENDING with the time it can be confirmed, never passed.

    `since` (an ISO time registered before a change) counts only runs after it, `rows` verifies the named rows
    instead of the soonest-due ones, and `by_results: true` takes a TaskResult since then as the proof (the worker
    writes it when the task ends: no wait for beat's database sync, 185 s with Celery's defaults).

    `once_per_period: N` proves a row is sent by one beat only: from the row's first due time after the step
    starts, N full periods, each holding exactly one TaskResult of the row (`rows`, else the enabled row whose
    periods end soonest; django-celery-results names the row with CELERY_RESULT_EXTENDED). Two in a period fail
    at once, naming their times; N periods beyond --verify-timeout are PENDING.

    ```yaml
    - name: tasks show runs
      celery_tasks_run:
        service: "{{ backend_service }}"
        beat_service: "{{ beat_service }}"
        app: "{{ celery_app }}"
    - name: one beat sends the every-minute row (one TaskResult in each of two minutes)
      celery_tasks_run: {service: celery_worker, beat_service: celery_beat, app: edms, once_per_period: 2}
    - name: the row beat had not seen leaves a TaskResult after the bump
      celery_tasks_run: {service: backend, beat_service: celery_beat, app: edms, since: "{{ state.json.now }}",
                         rows: [lab-heartbeat], by_results: true}
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
    since: str = ""  # an ISO time (a query's `now` registered before the change): runs after it count
    rows: tuple[str, ...] = ()  # verify these PeriodicTasks (names) instead of the soonest-due ones
    by_results: bool = False  # with the django-db backend a TaskResult after `since` is the proof (no sync wait)
    once_per_period: int = 0  # count TaskResults over this many periods: exactly one in each (not with since)

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        f.model.service(self.beat_service)
        after = None
        if self.since:
            try:
                after = datetime.fromisoformat(self.since)
            except ValueError:
                raise StepError(f"since: not an ISO time: {self.since!r}") from None
            after = after if after.tzinfo else after.replace(tzinfo=timezone.utc)
        tpath = ctx.template_path
        state = state_query(f.compose, self.project(), self.service, self.app, ctx.vars, tpath, self.manage)
        if self.once_per_period:
            if self.once_per_period < 0 or self.since or self.by_results:
                raise StepError("once_per_period: a number of periods (1 or more) counted from the step's start; "
                                "not with since or by_results")
            return (OncePerPeriodAction(state, self.once_per_period, tuple(self.rows), self.interval),)
        # beat's sync lag is asked of beat's own container: its celery and its scheduler's sync settings
        probe = beat_query(f.compose, self.project(), self.beat_service, self.app, ctx.vars, tpath, manage=self.manage)
        return (TasksRunAction(f.model.name, self.beat_service, state, probe, self.interval, self.grace, after,
                               tuple(self.rows), self.by_results),)
