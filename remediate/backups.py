"""`remediate backups list|prune`: the backups runs keep on each host (BACKUP_DIR/RUN_ID/...), and their retention.

A run's backups on a host are *needed* while `remediate rollback RUN_ID` would restore one of them: the run is
in this controller's audit trail, it changed files on that host, it was not rolled back there (no rollback
of it ended ok or changed on that host), and at least one file it backed up still has the sha256 the run
left (once every such file changed again, a rollback refuses without --force). A run this trail does not
know (another controller's, or a trail that was replaced) counts as needed too. Prune removes backups older
than --older-than that are not needed, and with --force those too. Deciding is pure (`decide`); one
connection per host lists, hashes and removes.
"""
from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .core.errors import RemediateError, StepError
from .core.results import ExitCode
from .facts.backups import HostBackups, RunBackups, current_shas, list_backups
from .facts.files import _SWEEP
from .inputs.inventory import Host
from .core.changes import FileChange, from_record, per_path
from .transport.base import Transport


# Args: root run_id...: sweeps staging that killed writers left, then removes each run's directory.
_PRUNE = _SWEEP + r"""
set -eu
root=$1
shift
sweep_staging
for run in "$@"; do
  case $run in ""|.*|*/*) echo "remediate: $run does not name a run directory" >&2; exit 64;; esac
  if [ -d "$root/$run" ]; then rm -rf -- "$root/$run"; fi
  printf 'removed %s\n' "$run"
done
"""


@dataclass(frozen=True)
class TrailView:
    """What the audit trail says about runs and hosts, for deciding what a rollback still needs."""

    runs: frozenset[str] = frozenset()
    changes: Mapping[tuple[str, str], tuple[FileChange, ...]] = field(default_factory=dict)
    rolled_back: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Sequence[Mapping[str, Any]]) -> TrailView:
        """Index the trail: runs started, files changed per (run, host), rollbacks that ended well per (run, host)."""
        runs = {str(r.get("run_id")) for r in records if r.get("event") == "run_start"}
        rollbacks = {
            str(r.get("run_id")): str(r.get("rollback_of")) for r in records
            if r.get("event") == "run_start" and r.get("command") == "rollback" and r.get("rollback_of")
            and not (r.get("options") or {}).get("check")
        }
        writes: dict[tuple[str, str], list[FileChange]] = {}
        rolled_back: dict[tuple[str, str], str] = {}
        for r in records:
            key = (str(r.get("run_id")), str(r.get("host")))
            change = from_record(r) if r.get("event") == "result" and r.get("outcome") == "ok" else None
            if isinstance(change, FileChange):
                writes.setdefault(key, []).append(change)
            elif r.get("event") == "host_end" and key[0] in rollbacks and r.get("status") in ("ok", "changed"):
                rolled_back.setdefault((rollbacks[key[0]], key[1]), key[0])
        changes = {key: per_path(ws) for key, ws in writes.items()}
        return cls(frozenset(runs), changes, rolled_back)

    def needed_paths(self, host: str, root: str, run: str) -> tuple[FileChange, ...]:
        """The changes of run on host whose backup is in that run's directory under root."""
        prefix = posixpath.join(root, run) + "/"
        return tuple(c for c in self.changes.get((run, host), ()) if c.backup and c.backup.startswith(prefix))


@dataclass(frozen=True)
class Decision:
    """What prune does with one run's backups on one host, and why."""

    run: RunBackups
    remove: bool
    reason: str
    needed: bool = False
    young: bool = False


def decide(host: str, root: str, run: RunBackups, trail: TrailView, shas: Mapping[str, str],
           now: float, older_than: float, force: bool) -> Decision:
    """Pure: remove run's backups on host, or keep them (young, needed by a rollback, unknown to the trail)."""
    age = now - run.started
    if age < older_than:
        return Decision(run, False, f"younger than {_age(older_than)} ({_age(age)} old)", young=True)
    needed = _needed(host, root, run, trail, shas)
    if needed:
        return Decision(run, force, ("--force: " if force else "") + needed, needed=True)
    rb = trail.rolled_back.get((run.run_id, host))
    if rb:
        return Decision(run, True, f"rolled back by run {rb}")
    changes = trail.needed_paths(host, root, run.run_id)
    if not changes:
        return Decision(run, True, "no file it changed on this host can be restored from it (its writes did not complete)")
    return Decision(run, True, f"every file it backed up changed since ({changes[0].path}{_more(changes)}): "
                               "a rollback would refuse them")


def _needed(host: str, root: str, run: RunBackups, trail: TrailView, shas: Mapping[str, str]) -> str:
    """Why run's backups are still needed on host, or ""."""
    if run.run_id not in trail.runs:
        return "not in this controller's audit trail (another controller's run?)"
    if (run.run_id, host) in trail.rolled_back:
        return ""
    still = [c for c in trail.needed_paths(host, root, run.run_id) if shas.get(c.path) == c.after_sha256]
    if not still:
        return ""
    return f"`remediate rollback {run.run_id}` would restore {still[0].path}{_more(still)} (still as that run left it)"


def _more(items: Sequence[Any]) -> str:
    return f" and {len(items) - 1} more" if len(items) > 1 else ""


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.0f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 60:.0f}m"


def size_text(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


# ---- one host, over its one connection ----


@dataclass(frozen=True)
class HostOutcome:
    """list/prune on one host: what it holds, the decisions, what was removed or swept, or the error."""

    host: str
    backups: HostBackups | None = None
    decisions: tuple[Decision, ...] = ()
    removed: tuple[str, ...] = ()
    swept: tuple[str, ...] = ()
    error: str = ""


def examine(host: Host, transport: Transport, trail: TrailView, now: float, older_than: float,
            force: bool) -> tuple[HostBackups, tuple[Decision, ...]]:
    """The host's backups and a decision for each run directory."""
    found = list_backups(host, transport)
    candidates = [r for r in found.runs if now - r.started >= older_than]
    paths = sorted({c.path for r in candidates for c in trail.needed_paths(host.name, found.root, r.run_id)})
    shas = current_shas(transport, paths)
    return found, tuple(decide(host.name, found.root, r, trail, shas, now, older_than, force) for r in found.runs)


def prune_host(host: Host, transport: Transport, trail: TrailView, now: float, older_than: float, force: bool,
               check: bool, audit: Any = None) -> HostOutcome:
    """Decide, then (unless check) remove the run directories that may go, intents audited before, results after."""
    def record(event: str, **fields: Any) -> None:
        if audit is not None:
            audit.record(event, host.name, **fields)

    try:
        found, decisions = examine(host, transport, trail, now, older_than, force)
        record("host", **transport.identity().audit_fields(), backup_dir=found.root)
        for d in decisions:
            if not d.remove and not d.young:
                record("notice", message=f"kept backups of run {d.run.run_id}: {d.reason}")
        doomed = [d for d in decisions if d.remove]
        actions = {d.run.run_id: f"remove {posixpath.join(found.root, d.run.run_id)} "
                                 f"({len(d.run.files)} file(s), {size_text(d.run.size)})" for d in doomed}
        if check:
            for d in doomed:
                record("notice", message=f"would {actions[d.run.run_id]}: {d.reason}")
            record("host_end", status="ok", message="")
            return HostOutcome(host.name, found, decisions)
        for d in doomed:
            record("intent", step="prune backups", action=actions[d.run.run_id], type="prune",
                   backup=posixpath.join(found.root, d.run.run_id), run=d.run.run_id,
                   files=[f.path for f in d.run.files], reason=d.reason, forced=force and d.needed)
        result = transport.run(["sh", "-c", _PRUNE, "sh", found.root, *actions])
        lines = result.out.splitlines()
        swept = tuple(line[6:] for line in lines if line.startswith("swept "))
        removed = tuple(line[8:] for line in lines if line.startswith("removed "))
        for d in doomed:
            ok = d.run.run_id in removed
            record("result", step="prune backups", action=actions[d.run.run_id], outcome="ok" if ok else "failed",
                   rc=0 if ok else result.rc, message="" if ok else (result.err.strip() or f"exit {result.rc}"))
        if swept:
            record("notice", message="removed what a killed run left: " + ", ".join(swept))
        if result.rc != 0:
            raise StepError(f"cannot remove backups in {found.root}: {result.err.strip() or f'exit {result.rc}'}")
        record("host_end", status="changed" if removed or swept else "ok", message="")
        return HostOutcome(host.name, found, decisions, removed, swept)
    except (RemediateError, OSError) as exc:
        try:
            record("host_end", status="failed", message=str(exc))
        except RemediateError:
            pass
        return HostOutcome(host.name, error=str(exc))


def list_host(host: Host, transport: Transport, trail: TrailView, now: float) -> HostOutcome:
    """Read-only: the host's backups, each run judged as prune would judge it at any age."""
    try:
        found, decisions = examine(host, transport, trail, now, 0.0, False)
    except (RemediateError, OSError) as exc:
        return HostOutcome(host.name, error=str(exc))
    return HostOutcome(host.name, found, decisions)


def each_host(hosts: Sequence[Host], make_transport: Callable[[Host], Transport],
              work: Callable[[Host, Transport], HostOutcome], forks: int = 10) -> tuple[HostOutcome, ...]:
    """work on every host in parallel, one connection each."""
    def one(host: Host) -> HostOutcome:
        transport = make_transport(host)
        try:
            return work(host, transport)
        except (RemediateError, OSError) as exc:
            return HostOutcome(host.name, error=str(exc))
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts) or 1))) as pool:
        return tuple(pool.map(one, hosts))


# ---- output ----


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def render_list(outcomes: Sequence[HostOutcome]) -> str:
    """Per host: the root, each run directory with date, size, files, and whether a rollback still needs it."""
    lines: list[str] = []
    for o in outcomes:
        if o.error or o.backups is None:
            lines.append(f"{o.host}: ERROR {o.error}")
            continue
        b = o.backups
        total = sum(r.size for r in b.runs)
        lines.append(f"{o.host}: {len(b.runs)} run(s), {size_text(total)} in {b.root}")
        for d in o.decisions:
            r = d.run
            state = "needed" if d.needed else "prunable"
            lines.append(f"  {r.run_id}  {_date(r.started)}  {len(r.files)} file(s)  {size_text(r.size)}  {state}: {d.reason}")
            lines += [f"      {f.path}  {size_text(f.size)}" for f in r.files]
        stale = [p for p, s in b.staging if s == "stale"]
        if stale:
            lines.append(f"  staging left by killed runs (the next write or prune removes them): {', '.join(stale)}")
    return "\n".join(lines)


def render_prune(outcomes: Sequence[HostOutcome], check: bool, older_than: float) -> str:
    """Per host: what was (or would be) removed and kept, and why."""
    lines: list[str] = []
    for o in outcomes:
        if o.error or o.backups is None:
            lines.append(f"{o.host}: ERROR {o.error}")
            continue
        old = [d for d in o.decisions if not d.young]
        if not old:
            lines.append(f"{o.host}: no backups older than {_age(older_than)} in {o.backups.root}")
        for d in old:
            r = d.run
            what = f"{r.run_id} ({len(r.files)} file(s), {size_text(r.size)}, {_date(r.started)})"
            verb = ("would remove" if check else "removed") if d.remove else "kept"
            lines.append(f"{o.host}: {verb} {what}: {d.reason}")
        for path in o.swept:
            lines.append(f"{o.host}: removed {path} (left by a killed run)")
    removed = sum(1 for o in outcomes for d in o.decisions if d.remove)
    failed = sum(1 for o in outcomes if o.error)
    lines.append(f"{'would remove' if check else 'removed'} {removed} run directory(ies); "
                 f"{failed} host(s) failed; exit {int(prune_exit_code(outcomes, check))}")
    return "\n".join(lines)


def to_json(outcomes: Sequence[HostOutcome]) -> str:
    """One JSON document: per host its root, runs (with files, needed, reason, removed) and errors."""
    hosts: dict[str, Any] = {}
    for o in outcomes:
        if o.error or o.backups is None:
            hosts[o.host] = {"error": o.error}
            continue
        hosts[o.host] = {
            "backup_dir": o.backups.root,
            "runs": [{"run_id": d.run.run_id, "started": _date(d.run.started), "size": d.run.size,
                      "files": [{"path": f.path, "size": f.size} for f in d.run.files], "needed": d.needed,
                      "prune": d.remove, "reason": d.reason, "removed": d.run.run_id in o.removed}
                     for d in o.decisions],
            "staging": [{"path": p, "state": s} for p, s in o.backups.staging],
            "swept": list(o.swept),
        }
    return json.dumps({"hosts": hosts}, indent=2)


def prune_exit_code(outcomes: Sequence[HostOutcome], check: bool) -> ExitCode:
    """1 when a host failed; with --check 2 when something would be removed; else 0."""
    if any(o.error for o in outcomes):
        return ExitCode.FAILED
    return ExitCode.PENDING_CHANGES if check and any(d.remove for o in outcomes for d in o.decisions) else ExitCode.OK


@dataclass(frozen=True)
class BackupsReport:
    """`backups list` or `prune` over the hosts; it owns its exit code and renderings."""

    hosts: tuple[HostOutcome, ...]
    prune: bool = False
    check: bool = False
    older_than: float = 0.0

    def exit_code(self) -> ExitCode:
        """1 when a host failed; prune --check: 2 when something would be removed; else 0."""
        return prune_exit_code(self.hosts, self.check and self.prune)

    def render(self, fmt: str) -> str:
        """text or json."""
        if fmt == "json":
            return to_json(self.hosts)
        return render_prune(self.hosts, self.check, self.older_than) if self.prune else render_list(self.hosts)
