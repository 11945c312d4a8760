"""Django shell queries in a service's container, and the one parser of their `REMEDIATE_JSON:` line.

A query is a script from templates/ fed on stdin to `python manage.py shell` through `compose exec -T`; its
inputs reach it as environment variables, never templated into the code, and it prints one JSON line.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import StepError, tail_lines
from ..inputs import resources, templating
from ..transport.base import Transport
from .base import Probe
from .compose import Compose, Project, detect

MARKER = "REMEDIATE_JSON:"
ROWS_TEMPLATE = "django_rows.py.j2"


def parse_json_line(stdout: str, stderr: str = "", rc: int | None = 0, what: str = "query") -> dict[str, Any]:
    """The JSON object of a script's last `REMEDIATE_JSON:` line.

    StepError when there is none or it is not a JSON object, with the exit code and the output's tail.
    """
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                doc = json.loads(line[len(MARKER):])
            except json.JSONDecodeError as exc:
                raise StepError(f"{what} printed invalid JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise StepError(f"{what} printed JSON that is not an object")
            return doc
    raise StepError(f"{what} printed no {MARKER} line (exit {rc}); output:\n{tail_lines(stdout + stderr, 10)}")


@dataclass(frozen=True)
class ShellQuery:
    """A Django shell script to run in a service's container, with the environment variables it reads."""

    compose: Compose
    project: Project
    service: str
    script: str
    env: Mapping[str, str] = field(default_factory=dict)
    manage: str = "manage.py"
    timeout: float | None = 300.0

    def argv(self, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """`compose exec -T SERVICE python manage.py shell`, naming the variables it passes."""
        return self.compose.exec_argv(self.project, self.service, ("python", self.manage, "shell"),
                                      tuple(env if env is not None else self.env))

    def ask(self, transport: Transport, what: str, **more: str) -> dict[str, Any]:
        """Run it (with `more` variables) and return its JSON object; StepError when it printed none."""
        env = {**self.env, **more}
        result = transport.run(self.argv(env), stdin=self.script.encode(), env=env or None, timeout=self.timeout)
        return parse_json_line(result.out, result.err, result.rc, what)


def rows_script() -> str:
    """The row script (reads and compare-and-swap writes of django_rows / restore_rows)."""
    return templating.render_file(ROWS_TEMPLATE, resources.template_path(), {})


@dataclass(frozen=True)
class RowsProbe(Probe):
    """Read-only: the rows of a model a filter selects, the named fields' values, and which differ from `want`."""

    project: Project
    service: str
    model: str
    filter_json: str
    fields_json: str = "[]"
    want_json: str = "{}"
    label: str = "pk"
    manage: str = "manage.py"

    def gather(self, transport: Transport) -> dict[str, Any]:
        env = {"REMEDIATE_MODEL": self.model, "REMEDIATE_MODE": "read", "REMEDIATE_FILTER": self.filter_json,
               "REMEDIATE_FIELDS": self.fields_json, "REMEDIATE_SET": self.want_json, "REMEDIATE_LABEL": self.label}
        query = ShellQuery(detect(transport), self.project, self.service, rows_script(), env, self.manage)
        doc = query.ask(transport, f"reading {self.model} rows in {self.service}")
        if not doc.get("ok"):
            raise StepError(f"cannot read {self.model} rows in {self.service}: {doc.get('error')}")
        return doc
