"""File steps: Python-aware edits, lines in files, rendered templates."""
from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..actions.base import Action
from ..actions.files import RemoveFile, WriteFile
from ..core.errors import StepError
from ..facts.base import Facts, Probe
from ..facts.files import FileFact, FileProbe, backup_path
from .base import PlanContext, Step


@dataclass(frozen=True)
class FileStep(Step):
    """A step that writes files: `backup_dir` (from the host variable of that name) says where backups go;
    `follow_symlinks: true` edits a symbolic link's target in place (by default a link is refused)."""

    backup_dir: str = field(default="", kw_only=True)
    follow_symlinks: bool = field(default=False, kw_only=True)

    @classmethod
    def var_defaults(cls, variables: Mapping[str, Any]) -> dict[str, Any]:
        value = variables.get("backup_dir")
        return {"backup_dir": value} if isinstance(value, str) and value else {}

    def probe(self, path: str) -> FileProbe:
        """The probe of one file this step reads."""
        return FileProbe(path, self.backup_dir, self.follow_symlinks)


def _inside(path: str, directory: str) -> bool:
    path, directory = posixpath.normpath(path), posixpath.normpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def check_backup_root(fact: FileFact, ctx: PlanContext) -> None:
    """Refuse a write whose backups or temporary files would land inside the project (or beside the file)."""
    backup_path(fact.backup_root, ctx.run_id or "run", fact.path)  # an absolute path and a known root
    project = ctx.vars.get("compose_dir")
    for directory in (posixpath.dirname(fact.path), project if isinstance(project, str) and project else None):
        if directory and directory != "/" and _inside(fact.backup_root, directory):
            raise StepError(f"backup_dir {fact.backup_root} is inside {directory}: backups and temporary files must "
                            f"stay outside the compose project, its build contexts and bind mounts; {fact.path} "
                            "left as it is (set the host variable backup_dir elsewhere)")


def _edit(fact: FileFact, edit: Any, ctx: PlanContext) -> tuple[Action, ...]:
    """Decode, apply a pure text edit, validate, and plan a write only if the bytes differ."""
    from ..edits import textpatch

    if not fact.exists:
        raise StepError(f"{fact.path} does not exist")
    try:
        text, fmt = textpatch.decode(fact.data)
        new_text = edit(text)
    except textpatch.EditError as exc:
        at = f":{exc.line}" if exc.line else ""
        raise StepError(f"{fact.path}{at}: {exc.message}") from None
    content = textpatch.encode(new_text, fmt, text)
    if content == fact.data:
        return ()
    check_backup_root(fact, ctx)
    return (WriteFile(fact.path, fact, content, text, new_text),)


@dataclass(frozen=True)
class PythonAssignment(FileStep):
    """Ensure a module-level assignment `NAME = value`, found by parsing, replaced in place or inserted.

    ```yaml
    - name: beat uses the database scheduler
      python_assignment:
        path: "{{ compose_dir }}/backend/edms/settings/base.py"
        name: CELERY_BEAT_SCHEDULER
        value: django_celery_beat.schedulers:DatabaseScheduler
        after: CELERY_BEAT_SCHEDULE_FILENAME
    ```
    """

    kind = "python_assignment"
    path: str
    name: str
    value: Any
    after: str | None = None

    def probes(self) -> tuple[Probe, ...]:
        return (self.probe(self.path),)

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        from ..edits.pyedit import ensure_assignment

        if not self.name.isidentifier():
            raise StepError(f"{self.name!r} is not a Python name")
        return _edit(facts[self.probe(self.path)],
                     lambda text: ensure_assignment(text, self.name, self.value, after=self.after), ctx)


@dataclass(frozen=True)
class PythonStatement(FileStep):
    """Ensure a statement inside a function or method (created when the class lacks it), matched by meaning.

    ```yaml
    - name: integrity tasks imported when the app loads
      python_statement:
        path: "{{ compose_dir }}/backend/apps/audit/apps.py"
        function: AuditConfig.ready
        statement: import apps.audit.integrity_tasks  # noqa
    ```
    """

    kind = "python_statement"
    path: str
    function: str
    statement: str
    module: str | None = None

    def probes(self) -> tuple[Probe, ...]:
        return (self.probe(self.path),)

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        from ..edits.pyedit import ensure_statement

        return _edit(
            facts[self.probe(self.path)],
            lambda text: ensure_statement(text, self.function, self.statement, module=self.module), ctx,
        )


@dataclass(frozen=True)
class LineInFile(FileStep):
    """Ensure a line is present (after/before a unique anchor regex) or absent.

    ```yaml
    - name: scheduler setting present
      lineinfile:
        path: /srv/app/settings.py
        line: "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'"
        after: "^CELERY_BEAT_SCHEDULE_FILENAME"
    ```
    """

    kind = "lineinfile"
    path: str
    line: str
    state: str = "present"
    regexp: str | None = None
    after: str | None = None
    before: str | None = None

    def probes(self) -> tuple[Probe, ...]:
        return (self.probe(self.path),)

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        from ..edits.textpatch import ensure_line

        if self.state not in ("present", "absent"):
            raise StepError(f"state must be 'present' or 'absent', not {self.state!r}")
        return _edit(
            facts[self.probe(self.path)],
            lambda text: ensure_line(
                text, self.line, state=self.state, regexp=self.regexp, after=self.after, before=self.before
            ), ctx,
        )


@dataclass(frozen=True)
class Template(FileStep):
    """Render a Jinja2 template from templates/ to a file on the host (created when missing).

    ```yaml
    - name: beat settings override
      template:
        src: celery_override.py.j2
        dest: "{{ compose_dir }}/backend/edms/settings/override.py"
        mode: "644"
    ```
    """

    kind = "template"
    src: str
    dest: str
    mode: str = "644"

    def probes(self) -> tuple[Probe, ...]:
        return (self.probe(self.dest),)

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        from ..inputs import templating
        from ..edits import textpatch

        fact: FileFact = facts[self.probe(self.dest)]
        rendered = templating.render_file(self.src, ctx.template_path, ctx.vars)
        if fact.exists:
            before, fmt = textpatch.decode(fact.data)
            content = textpatch.encode(rendered, fmt, before)
        else:
            before, content = "", rendered.encode()
        if fact.exists and content == fact.data:
            return ()
        check_backup_root(fact, ctx)
        return (WriteFile(fact.path, fact, content, before, rendered, self.mode),)


@dataclass(frozen=True)
class RestoreBackup(FileStep):
    """Put back a file's original from its backup, refusing a file changed since (`expected_sha256`) unless `force`.

    Without `backup`, the file did not exist before: it is removed (and kept in this run's backups).
    `mode` and `owner` (uid:gid) are what a file that has to be created again gets (backups are 0600; the
    audit trail records the original's). `remediate rollback` writes these steps from the audit trail; a
    playbook may use one too.

    ```yaml
    - name: settings as they were before run 20261124T101500Z-1a2b3c
      restore_backup:
        path: /srv/edms/backend/edms/settings/base.py
        backup: /var/lib/remediate/backups/20261124T101500Z-1a2b3c/srv/edms/backend/edms/settings/base.py
        expected_sha256: 9f2c...   # what that run left; anything else was changed by someone since
    ```
    """

    kind = "restore_backup"
    path: str
    backup: str | None = None
    expected_sha256: str | None = None
    original_sha256: str | None = None
    force: bool = False
    mode: str | None = None
    owner: str | None = None

    def probes(self) -> tuple[Probe, ...]:
        return (self.probe(self.path),) + ((self.probe(self.backup),) if self.backup else ())

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        current: FileFact = facts[self.probe(self.path)]
        if self.backup:
            saved: FileFact = facts[self.probe(self.backup)]
            if not saved.exists:
                raise StepError(f"backup {self.backup} is missing; {self.path} left as it is")
            if self.original_sha256 and saved.sha256 != self.original_sha256 and not self.force:
                raise StepError(f"backup {self.backup} changed since it was made (sha256 {saved.sha256}, "
                                f"recorded {self.original_sha256}); left as it is (--force restores it anyway)")
            if current.exists and current.data == saved.data:
                return ()
            self._refuse_if_changed(current)
            check_backup_root(current, ctx)
            return (WriteFile(self.path, current, saved.data, _text(current), _text(saved),
                              self.mode or saved.mode or "644", self.owner or ""),)
        if not current.exists:
            return ()
        self._refuse_if_changed(current)
        check_backup_root(current, ctx)
        return (RemoveFile(self.path, current, _text(current)),)

    def _refuse_if_changed(self, current: FileFact) -> None:
        if self.expected_sha256 and current.sha256 != self.expected_sha256 and not self.force:
            raise StepError(f"{self.path} changed since that run (sha256 now {current.sha256}, the run left "
                            f"{self.expected_sha256}); left as it is (--force restores it anyway)")


def _text(fact: FileFact) -> str:
    return fact.data.decode("utf-8", "replace") if fact.exists else ""
