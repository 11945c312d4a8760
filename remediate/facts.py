"""Read-only probes of a host's files, and the atomic compare-and-swap write."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import StepError
from .transport.base import Transport

ABSENT = "absent"

# One round trip: a header line (mode uid gid, or MISSING), then the raw bytes.
_READ = r"""
if [ -e "$1" ]; then
  [ -f "$1" ] || { echo "remediate: $1 is not a regular file" >&2; exit 66; }
  stat -c '%a %u %g' -- "$1" && cat -- "$1"
else
  echo MISSING
fi
"""

# Written to a temp file in the same directory and checked against the new content's sha256 (a damaged
# transfer never lands), fsynced, the original checked against the sha256 read at planning time
# (compare-and-swap) and backed up, then the temp file renamed over the original. Exit 75 = conflict.
_WRITE = r"""
set -eu
f=$1 expected=$2 backup=$3 mode=$4 new=$5
dir=$(dirname -- "$f")
current() { if [ -e "$f" ]; then sha256sum < "$f" | cut -d' ' -f1; else echo absent; fi; }
[ "$(current)" = "$expected" ] || { echo "remediate: $f changed since it was read; left as it is" >&2; exit 75; }
tmp=$(mktemp "$dir/.remediate.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
[ "$(sha256sum < "$tmp" | cut -d' ' -f1)" = "$new" ] || { echo "remediate: $f: the new content arrived damaged; left as it is" >&2; exit 74; }
if [ -e "$f" ]; then
  chmod --reference="$f" -- "$tmp"
  chown --reference="$f" -- "$tmp" 2>/dev/null || true
  # a second edit of the file in the same run keeps the backup of the original, not of the first edit
  [ -e "$backup" ] || cp -p -- "$f" "$backup"
else
  chmod "$mode" -- "$tmp"
fi
sync -- "$tmp"
[ "$(current)" = "$expected" ] || { echo "remediate: $f changed since it was read; left as it is" >&2; exit 75; }
mv -f -- "$tmp" "$f"
trap - EXIT
sync -- "$dir" 2>/dev/null || true
"""


# Compare-and-swap removal: the file is moved aside (kept), not deleted. Exit 75 = conflict.
_REMOVE = r"""
set -eu
f=$1 expected=$2 stash=$3
current() { if [ -e "$f" ]; then sha256sum < "$f" | cut -d' ' -f1; else echo absent; fi; }
[ "$(current)" = "$expected" ] || { echo "remediate: $f changed since it was read; left as it is" >&2; exit 75; }
mv -f -- "$f" "$stash"
sync -- "$(dirname -- "$f")" 2>/dev/null || true
"""


class WriteConflict(StepError):
    """The file changed between reading and writing; the other writer's content was kept."""


@dataclass(frozen=True)
class FileFact:
    """A file as read from a host."""

    path: str
    exists: bool
    data: bytes = b""
    mode: str = ""
    uid: int = -1
    gid: int = -1

    @property
    def sha256(self) -> str:
        """Content hash, or 'absent' for a missing file (the compare-and-swap token)."""
        return hashlib.sha256(self.data).hexdigest() if self.exists else ABSENT


def read_file(transport: Transport, path: str) -> FileFact:
    """Read a file's content, mode and owner in one round trip."""
    result = transport.run(["sh", "-c", _READ, "sh", path])
    if result.rc != 0:
        raise StepError(f"cannot read {path}: {result.err.strip() or f'exit {result.rc}'}")
    header, _, data = result.stdout.partition(b"\n")
    if header == b"MISSING":
        return FileFact(path, False)
    mode, uid, gid = header.decode().split()
    return FileFact(path, True, data, mode, int(uid), int(gid))


def write_file(transport: Transport, path: str, data: bytes, expected_sha256: str, backup: str, mode: str = "644") -> None:
    """Atomically replace path with data if it still has the expected hash; keep a backup."""
    new_sha256 = hashlib.sha256(data).hexdigest()
    result = transport.run(["sh", "-c", _WRITE, "sh", path, expected_sha256, backup, mode, new_sha256], stdin=data)
    if result.rc == 75:
        raise WriteConflict(result.err.strip())
    if result.rc != 0:
        raise StepError(f"cannot write {path}: {result.err.strip() or f'exit {result.rc}'}")


def remove_file(transport: Transport, path: str, expected_sha256: str, stash: str) -> None:
    """Move path aside to stash if it still has the expected hash."""
    result = transport.run(["sh", "-c", _REMOVE, "sh", path, expected_sha256, stash])
    if result.rc == 75:
        raise WriteConflict(result.err.strip())
    if result.rc != 0:
        raise StepError(f"cannot remove {path}: {result.err.strip() or f'exit {result.rc}'}")
