"""The queue-length probe: which queues Celery's workers consume, where tasks are sent, how many messages wait
in each (through Celery's own broker connection), and TaskResult rows since a moment; read, or waited on."""
from __future__ import annotations

from dataclasses import dataclass

from ..actions.base import Action
from ..actions.queues import QueuesAction
from ..facts.base import Facts
from ..facts.celery import queues_query
from .base import PlanContext
from .compose import ComposeStep


@dataclass(frozen=True)
class CeleryQueues(ComposeStep):
    """Read the queues (registers `default_queue`, `routed` {queue: [what sends there]}, `nodes` {node: [queues
    it consumes]}, `lengths`, `consumed`, `unconsumed`, `idle_nodes`, and from `service`'s command
    `command_queues`, `missing` (sent to, not named, not consumed) and `stuck` (named, not consumed)), or with
    `consumed` / `drained` / `results` wait until a worker consumes those queues, they hold no message, and
    those tasks ("*": any) left TaskResult rows since `since_service` started (`timeout` s; a wait for results
    alone, on an app whose beat reads django-celery-beat's rows, lasts until `timeout` s after the soonest row
    is due, and is PENDING when that is beyond --verify-timeout).

    ```yaml
    - name: the queues
      celery_queues: {service: celery_worker, app: edms}
      register: queues
    - name: the queue drains and its tasks leave results
      celery_queues:
        service: celery_worker
        app: edms
        drained: [monitoring]
        results: ["*"]
        since_service: celery_worker
    ```
    """

    kind = "celery_queues"
    service: str
    app: str
    consumed: tuple[str, ...] = ()
    drained: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    since_service: str = ""
    timeout: float = 180.0
    interval: float = 3.0
    manage: str = "manage.py"

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        if self.since_service:
            f.model.service(self.since_service)
        query = queues_query(f.compose, self.project(), self.service, self.app, ctx.vars, ctx.template_path, self.manage)
        return (QueuesAction(query, f.model.name, f.model.service(self.service).command, tuple(self.consumed),
                             tuple(self.drained), tuple(self.results), self.since_service, self.timeout, self.interval),)
