"""Reloads held for the whole run: the `compose_reload` handlers that several plays (or imported playbooks) notify
on one host, merged per compose project into one reload (one build per image, one recreate per service) that runs
once, before the first verification after them or when the host's plays end. Each member keeps its own play, the
names that notified it and the paths whose changes caused it, for the audit trail and the owed-reload record."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..core.errors import StepError
from ..inputs import templating
from ..inputs.playbook import Play, StepSpec
from ..steps import REGISTRY
from ..steps.base import Step
from .context import playbook_key


@dataclass(frozen=True)
class HeldReload:
    """A notified compose_reload handler that has not run yet."""

    handler: StepSpec
    play: Play
    variables: Mapping[str, Any]
    paths: tuple[str, ...]  # what the notifying steps changed (restart or rebuild is decided from these)
    hits: tuple[str, ...]  # the names it was notified by: its name or one of its `listen`

    def audit_fields(self) -> dict[str, Any]:
        """What the trail names about this member of a merged reload."""
        return {"handler": self.handler.name, "playbook": playbook_key(self.play), "play": self.play.name,
                "notified_by": list(self.hits), "changed_paths": list(self.paths)}


@dataclass(frozen=True)
class MergedReload:
    """One compose_reload over the union of its members' services and changed paths."""

    spec: StepSpec
    members: tuple[HeldReload, ...]
    paths: tuple[str, ...]

    @property
    def play(self) -> Play:
        return self.members[0].play

    @property
    def variables(self) -> Mapping[str, Any]:
        return self.members[0].variables


def mergeable(handler: StepSpec) -> bool:
    """A plain compose_reload handler (no loop, condition, retries, judgement or register): safe to merge."""
    return (handler.kind == "compose_reload" and handler.loop is None and handler.when is None
            and handler.until is None and handler.changed_when is None and handler.failed_when is None
            and handler.register is None)


def build(spec: StepSpec, variables: Mapping[str, Any]) -> Step:
    """The typed step a handler's arguments make with its play's variables (StepError when they are bad)."""
    cls = REGISTRY[spec.kind]
    what = f"step {spec.name!r}"
    args = {**cls.var_defaults(variables), **templating.render_value(dict(spec.args), variables, spec.where, what)}
    return cls.build(args, spec.where, what)


def merge(held: tuple[HeldReload, ...],
          build: Callable[[StepSpec, Mapping[str, Any]], Step] = build) -> tuple[MergedReload, ...]:
    """The held reloads, one per compose project (in order of first notification); a handler whose arguments do
    not render stays on its own, so that its run reports the error."""
    if not held:
        return ()
    from ..steps.compose import ComposeReload  # imported with the first held reload, not by every run

    groups: dict[object, list[tuple[HeldReload, ComposeReload | None]]] = {}
    for n, h in enumerate(held):
        try:
            step = build(h.handler, h.variables)
        except StepError:
            step = None
        key: object = (step.project(), step.wait, step.settle) if isinstance(step, ComposeReload) else n
        groups.setdefault(key, []).append((h, step if isinstance(step, ComposeReload) else None))
    merged = []
    for members in groups.values():
        first, step = members[0]
        paths = tuple(dict.fromkeys(p for h, _ in members for p in h.paths))
        if step is None or len(members) == 1:
            merged.append(MergedReload(first.handler, (first,), paths))
            continue
        services = tuple(dict.fromkeys(s for _, st in members if st is not None for s in st.service))
        project = step.project()
        args = {"service": list(services), "project_dir": project.dir, "files": list(project.files) or None,
                "project_name": project.name, "wait": step.wait, "settle": step.settle}
        names = tuple(dict.fromkeys(h.handler.name for h, _ in members))
        spec = replace(first.handler, name=" + ".join(names), args=args, ignore_errors=all(
            h.handler.ignore_errors for h, _ in members))
        merged.append(MergedReload(spec, tuple(h for h, _ in members), paths))
    return tuple(merged)
