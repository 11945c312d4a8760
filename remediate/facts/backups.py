"""The backups a host keeps (BACKUP_DIR/RUN_ID/...): listed, sized and hashed over the host's one connection."""
from __future__ import annotations

import calendar
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import StepError
from ..inputs.inventory import Host
from ..transport.base import Transport
from .files import _ROOT

# Args: backup_dir. The root, then per run directory R\0RUN\0MTIME\0 and its files F\0PATH\0SIZE\0,
# then the staging directories S\0PATH\0stale|live\0.
_LIST = _ROOT + r"""
resolve_root "$1"
printf 'ROOT\0%s\0' "$root"
[ -d "$root" ] || exit 0
for d in "$root"/*/; do
  [ -d "$d" ] || continue
  run=${d%/}; run=${run##*/}
  printf 'R\0%s\0%s\0' "$run" "$(stat -c %Y -- "$d")"
  find "$d" -type f -printf 'F\0%P\0%s\0' 2>/dev/null || true
done
for s in "$root"/.staging/*; do
  [ -d "$s" ] || continue
  if ( exec 7<"$s" && flock -n 7 ) 2>/dev/null; then state=stale; else state=live; fi
  printf 'S\0%s\0%s\0' "$s" "$state"
done
"""


# Args: paths. PATH\0SHA256\0 for each ("absent" when missing).
_SHAS = r"""
for f in "$@"; do
  if [ -e "$f" ]; then h=$(sha256sum < "$f" | cut -d' ' -f1) || h=unreadable; else h=absent; fi
  printf '%s\0%s\0' "$f" "$h"
done
"""


@dataclass(frozen=True)
class BackupFile:
    """One backed-up file: the path it is the original of, and its size."""

    path: str
    size: int


@dataclass(frozen=True)
class RunBackups:
    """One run's backups on a host: ROOT/RUN_ID/ mirroring the absolute paths."""

    run_id: str
    started: float
    files: tuple[BackupFile, ...] = ()

    @property
    def size(self) -> int:
        """Bytes, all files."""
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class HostBackups:
    """What a host keeps: its backup root, the run directories, and staging directories (live or stale)."""

    host: str
    root: str
    runs: tuple[RunBackups, ...] = ()
    staging: tuple[tuple[str, str], ...] = ()


def run_started(run_id: str, mtime: float) -> float:
    """A run's start from its id (20261124T101500Z-...), else its directory's mtime."""
    try:
        return float(calendar.timegm(time.strptime(run_id[:16], "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return mtime


def parse_listing(host: str, data: bytes) -> HostBackups:
    """The list script's NUL-separated output."""
    fields = data.decode("utf-8", "surrogateescape").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    root = ""
    runs: dict[str, tuple[float, list[BackupFile]]] = {}
    staging: list[tuple[str, str]] = []
    i = 0
    files: list[BackupFile] = []
    while i < len(fields):
        tag = fields[i]
        if tag == "ROOT":
            root, i = posixpath.normpath(fields[i + 1]), i + 2
        elif tag == "R":
            files = []
            runs[fields[i + 1]] = (float(fields[i + 2]), files)
            i += 3
        elif tag == "F":
            files.append(BackupFile("/" + fields[i + 1], int(fields[i + 2])))
            i += 3
        elif tag == "S":
            staging.append((fields[i + 1], fields[i + 2])); i += 3
        else:
            raise StepError(f"unexpected output of the backup listing at field {i}: {tag[:40]!r}")
    out = tuple(RunBackups(r, run_started(r, mtime), tuple(sorted(files, key=lambda f: f.path)))
                for r, (mtime, files) in sorted(runs.items()))
    return HostBackups(host, root, out, tuple(staging))


def list_backups(host: Host, transport: Transport) -> HostBackups:
    """List the host's backups (one round trip)."""
    result = transport.run(["sh", "-c", _LIST, "sh", str(host.vars.get("backup_dir") or "")])
    if result.rc != 0:
        raise StepError(f"cannot list the backups: {result.err.strip() or f'exit {result.rc}'}")
    return parse_listing(host.name, result.stdout)


def current_shas(transport: Transport, paths: Sequence[str]) -> dict[str, str]:
    """sha256 of each path on the host ("absent" when missing), one round trip."""
    if not paths:
        return {}
    result = transport.run(["sh", "-c", _SHAS, "sh", *paths])
    if result.rc != 0:
        raise StepError(f"cannot hash the backed-up files: {result.err.strip() or f'exit {result.rc}'}")
    fields = result.stdout.decode("utf-8", "surrogateescape").split("\0")
    return {fields[i]: fields[i + 1] for i in range(0, len(fields) - 1, 2)}
