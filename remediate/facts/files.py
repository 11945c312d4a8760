"""Read-only probes of a host's files, and the locked, atomic compare-and-swap write and removal.

Nothing these scripts leave, even for a moment, is inside the directory of the file they change, except in
one case: the new content is staged in remediate's own directory on the host (`backup_dir`, by default
/var/lib/remediate/backups for root, ~/.local/state/remediate/backups for anyone else) and renamed onto the
target from there; only when that directory is on another mount than the target does a temp file
`.remediate.XXXXXX` exist beside the target, for the final copy and rename, under the directory's lock.
"""
from __future__ import annotations

import hashlib
import posixpath
import secrets
from collections.abc import Hashable
from dataclasses import dataclass

from ..core.errors import StepError
from ..transport.base import Transport
from .base import Probe

ABSENT = "absent"
# How long a write waits for another remediate write in the same directory to finish (seconds)
LOCK_WAIT = 30
STAGING = ".staging"
# The largest file remediate reads to edit, compare or back up (a larger one is refused before it is sent)
MAX_EDIT_BYTES = 16 << 20

# The backup root for a configured `backup_dir` ($1, "" for the default), on the host's side: the SSH
# user's HOME is only known there.
_ROOT = r"""
resolve_root() {
  root=$1
  if [ -z "$root" ]; then
    # the effective uid from the shell's own /proc entry, read by builtins (no process); `id -u` without /proc
    uid=
    if [ -r /proc/self/status ]; then
      while read -r k _ e _; do if [ "$k" = Uid: ]; then uid=$e; break; fi; done < /proc/self/status
    fi
    [ -n "$uid" ] || uid=$(id -u)
    if [ "$uid" = 0 ]; then root=/var/lib/remediate/backups; else root=${HOME:?}/.local/state/remediate/backups; fi
  fi
  case $root in "~") root=$HOME;; "~/"*) root=$HOME/${root#"~/"};; esac
  case $root in /*) ;; *) echo "remediate: backup_dir $root is not an absolute path" >&2; exit 64;; esac
}
"""

# the same, for scripts elsewhere (the run lock's holder lives in the backup root too)
ROOT_SCRIPT = _ROOT

# One round trip, three processes (sh, stat, cat): the backup root and a NUL, a header line (mode uid gid, MISSING, or TOOBIG size for a file
# above $3 bytes, whose content is not sent), then the raw bytes. A symbolic link is `LINK TARGET` (its
# canonical target) and nothing more; with $4 = 1 it is followed: `VIA TARGET`, then the target as above.
_READ = _ROOT + r"""
resolve_root "$2"
printf '%s\0' "$root"
if [ -L "$1" ]; then
  t=$(readlink -f -- "$1") || t=$(readlink -- "$1")
  if [ "$4" != 1 ]; then printf 'LINK %s\n' "$t"; exit 0; fi
  printf 'VIA %s\n' "$t"
  set -- "$t" "$2" "$3" "$4"
fi
if [ -e "$1" ]; then
  [ -f "$1" ] || { echo "remediate: $1 is not a regular file" >&2; exit 66; }
  meta=$(stat -c '%s %a %u %g' -- "$1") || exit 66
  size=${meta%% *}
  if [ "$size" -gt "$3" ]; then echo "TOOBIG $size"; exit 0; fi
  printf '%s\n' "${meta#* }" && cat -- "$1"
else
  echo MISSING
fi
"""

# Staging directories of writers that died (`backups prune` runs this too): older than a minute (a writer
# locks its own right after creating it) and unlocked; with the temp file a writer had made beside its target.
_SWEEP = r"""
sweep_one() {
  if [ -f "$1/project-temp" ]; then
    t=$(cat -- "$1/project-temp")
    case ${t##*/} in .remediate.*) if [ -f "$t" ]; then rm -f -- "$t" && printf 'swept %s\n' "$t"; fi;; esac
  fi
  rm -rf -- "$1" && printf 'swept %s\n' "$1"
}
sweep_staging() {
  for s in "$root"/.staging/*; do
    [ -d "$s" ] && [ -n "$(find "$s" -maxdepth 0 -mmin +1 2>/dev/null)" ] || continue
    ( exec 7<"$s" && flock -n 7 && sweep_one "$s" ) 2>/dev/null || true
  done
}
"""

# What the write and remove scripts share: cleanup on every exit path a shell can see (EXIT, and HUP, INT,
# TERM, PIPE: a controller that dies closes the script's stdin and its stdout/stderr, so the script reads a
# short stream and then gets SIGPIPE when it reports that), a staging directory of its own in ROOT/.staging
# locked for its lifetime (a later run removes one nobody holds: its writer was killed), and the lock on the
# target's directory under which the compare-and-swap and the rename happen.
# Every process on the host counts (at 50 hosts on two cores a write of ~35 processes took 0.6 s): shell
# builtins instead of dirname/cut/printf pipelines, one sha256sum for every file compared, one `sync FILE...`
# (fsync of each) for the new content, the backup and the backup's directories, nothing done twice.
_COMMON = _SWEEP + r"""
set -eu
umask 077
dir=${f%/*}
[ -n "$dir" ] || dir=/
sd= tmp= made=
prune_dirs() {
  d=$1
  while [ "${#d}" -gt "${#root}" ] && rmdir -- "$d" 2>/dev/null; do d=${d%/*}; done
}
cleanup() {
  set +e
  if [ -n "$tmp" ]; then rm -f -- "$tmp"; fi
  if [ -n "$made" ]; then rm -f -- "$made"; prune_dirs "${made%/*}"; fi
  if [ -n "$sd" ]; then rm -rf -- "$sd"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
say() { printf 'remediate: %s\n' "$*" >&2; }
conflict() { say "$f changed since it was read; left as it is"; exit 75; }
drain() { if [ "$has_stdin" = 1 ]; then cat >/dev/null 2>&1 || true; fi; }
# sha256 of files in the staging directory, by their plain names there ("-": stdin), in one process
sums() {
  if ! out=$(cd "$sd" && sha256sum -- "$@" 2>&1); then say "cannot read $f or what was staged for it: $out; left as it is"; exit 73; fi
  set -f
  set -- $out
  set +f
  sum1=$1 sum2=${3:-}
}
command -v flock >/dev/null 2>&1 || {
  drain; say "flock (util-linux) is not installed on the host; it is needed to lock $dir while $f is replaced; left as it is"; exit 69; }
# the staging directory (its name from the controller: random, never reused) and the directories of the
# backup, in one mkdir (those it made are removed again unless the write goes through); a second change in
# the same run keeps the original's backup
[ -e "$backup" ] || made=$backup
sweep_staging
case $token in *[!0-9a-f]*|"") drain; say "bad staging token $token"; exit 64;; esac
if ! err=$(mkdir -p -- "$root/.staging/w.$token" ${made:+"${backup%/*}"} 2>&1); then
  drain; say "cannot create a staging directory in $root/.staging or the directory of $backup (backup_dir): $err; $f left as it is"; exit 73
fi
sd=$root/.staging/w.$token
exec 8<"$sd"
flock -n 8
lock_dir() {
  [ -d "$dir" ] || { say "$dir does not exist; $f left as it is"; exit 73; }
  if [ -r "$dir" ]; then exec 9<"$dir"; else
    [ -d "$root/.locks" ] || mkdir -p -- "$root/.locks"
    exec 9>>"$root/.locks/$(printf '%s' "$dir" | sha256sum | cut -c1-32)"
  fi
  flock -w "$wait" 9 || { say "another remediate write held the lock on $dir for more than $wait s; $f left as it is"; exit 73; }
  # never through a link, nor replacing one: one that appeared since the file was read is refused here
  if [ -L "$f" ]; then say "$f is a symbolic link (it became one after it was read); left as it is"; exit 73; fi
  # temp files beside targets exist only under this lock: one found now was left by a killed writer
  for t in "$dir"/.remediate.??????; do
    [ -f "$t" ] && [ -n "$(find "$t" -maxdepth 0 -mmin +1 2>/dev/null)" ] || continue
    rm -f -- "$t" && printf 'swept %s\n' "$t"
  done
}
# Under the lock, for a file that exists: the compare-and-swap and the backup. A complete copy of the file is
# staged (mode 0600), and its sha256 compared with what planning read: equal, it is the file as it was read;
# it is put in place and fsynced (with the new content, $1 = new, and every directory of the backup's path
# up to ROOT) before the file is touched. A backup that cannot be written fails the step before the file is
# touched, and a partial one (and the directories made for it) is removed. A second change in the same run
# keeps the original's backup and compares the file itself.
cas_back_up() {
  if [ -e "$backup" ]; then
    sums ${1:+"$1"} - < "$f"
    if [ -n "${1:-}" ]; then check_new "$sum1"; sum1=$sum2; fi
    [ "$sum1" = "$expected" ] || conflict
    if [ -n "${1:-}" ]; then sync -- "$sd/$1" 2>/dev/null || sync; fi
    return 0
  fi
  if ! err=$(install -m 600 -- "$f" "$sd/backup" 2>&1); then
    say "cannot back $f up to $backup: $err; $f left as it is"; exit 73
  fi
  sums ${1:+"$1"} backup
  if [ -n "${1:-}" ]; then check_new "$sum1"; sum1=$sum2; fi
  [ "$sum1" = "$expected" ] || conflict
  files=${1:+$sd/$1}
  set -- ${1:+"$sd/$1"} "$backup"
  d=${backup%/*}
  while [ "${#d}" -ge "${#root}" ]; do set -- "$@" "$d"; d=${d%/*}; done
  # a file system that cannot fsync a directory still fsyncs the files
  if ! err=$( { mv -f -- "$sd/backup" "$backup" &&
                { sync -- "$@" 2>/dev/null || sync -- ${files:+"$files"} "$backup"; }; } 2>&1 ); then
    say "cannot back $f up to $backup: $err; $f left as it is"; exit 73
  fi
}
"""

# Args: f expected backup mode new_sha256 root owner wait token; the new content on stdin. Staged in the staging
# directory, mode and owner copied from the target; then under the directory's lock: the staged content checked
# against its sha256 (a damaged transfer never lands), compare-and-swap, backup, fsync, rename. Exit 75 =
# conflict, 74 = damaged transfer, 73 = cannot stage, back up or lock, 69 = no flock.
_WRITE = r"""
f=$1 expected=$2 backup=$3 mode=$4 new=$5 root=$6 owner=$7 wait=$8 token=$9 has_stdin=1
""" + _COMMON + r"""
check_new() { [ "$1" = "$new" ] || { say "$f: the new content arrived damaged; left as it is"; exit 74; }; }
if ! cat > "$sd/new"; then drain; say "cannot stage the new content of $f in $sd; left as it is"; exit 73; fi
if [ -e "$f" ]; then
  # mode (ACLs with it) and owner as the target's, in one process; an owner it may not give is kept as it was
  cp --attributes-only --preserve=mode,ownership -- "$f" "$sd/new" 2>/dev/null || chmod --reference="$f" -- "$sd/new"
else
  chmod -- "$mode" "$sd/new"
  if [ -n "$owner" ]; then chown -- "$owner" "$sd/new" 2>/dev/null || true; fi
fi
# through the target's own directory, for the final copy and rename only (ROOT is on another mount)
beside() {
  tmp=$dir/.remediate.${token%??????????}  # six characters: what the sweep under the lock knows
  printf '%s\n' "$tmp" > "$sd/project-temp"
  if ! err=$( { set -C; cat -- "$sd/new" > "$tmp"; } 2>&1 ); then say "cannot write $tmp: $err; $f left as it is"; exit 73; fi
  cp --attributes-only --preserve=mode,ownership -- "$sd/new" "$tmp" 2>/dev/null || chmod --reference="$sd/new" -- "$tmp"
  h=$(sha256sum < "$tmp")
  [ "${h%% *}" = "$new" ] || { say "$f: the copy in $tmp is damaged; left as it is"; exit 74; }
  sync -- "$tmp" 2>/dev/null || sync
  mv -f -- "$tmp" "$f"
  tmp=
}
lock_dir
if [ -e "$f" ]; then
  [ "$expected" != absent ] || conflict
  cas_back_up new
  # a hard link of the target into the staging directory works only on the same mount: then the
  # rename from there is a rename(2), never mv's copy (the link goes with the staging directory)
  if ln -- "$f" "$sd/probe" 2>/dev/null; then mv -f -- "$sd/new" "$f"; else beside; fi
else
  [ "$expected" = absent ] || conflict
  sums new
  check_new "$sum1"
  sync -- "$sd/new" 2>/dev/null || sync
  if ln -- "$sd/new" "$f" 2>/dev/null; then
    :  # created complete, in one step
  elif [ -L "$f" ]; then
    say "$f is a symbolic link to a missing file; left as it is"; exit 73
  elif [ -e "$f" ]; then
    conflict
  else
    beside
  fi
fi
made=
sync -- "$dir" 2>/dev/null || true
"""

# Args: f expected backup root wait token. Compare-and-swap removal: the file is backed up, then unlinked.
_REMOVE = r"""
f=$1 expected=$2 backup=$3 root=$4 wait=$5 token=$6 has_stdin=0
""" + _COMMON + r"""
lock_dir
[ -e "$f" ] || { [ "$expected" = absent ] && exit 0; conflict; }
cas_back_up
rm -f -- "$f"
made=
sync -- "$dir" 2>/dev/null || true
"""


class WriteConflict(StepError):
    """The file changed between reading and writing; the other writer's content was kept."""


@dataclass(frozen=True)
class FileFact:
    """A file as read from a host, and where backups of that host live (`backup_root`)."""

    path: str
    exists: bool
    data: bytes = b""
    mode: str = ""
    uid: int = -1
    gid: int = -1
    backup_root: str = ""
    # read through a symbolic link (follow_symlinks): `path` is the link's canonical target, `via` the link
    via: str = ""

    @property
    def sha256(self) -> str:
        """Content hash, or 'absent' for a missing file (the compare-and-swap token)."""
        return hashlib.sha256(self.data).hexdigest() if self.exists else ABSENT

    @property
    def owner(self) -> str:
        """uid:gid, or "" when unknown."""
        return f"{self.uid}:{self.gid}" if self.exists and self.uid >= 0 else ""


def read_file(transport: Transport, path: str, backup_dir: str = "", follow: bool = False) -> FileFact:
    """Read a file's content, mode and owner, and resolve the host's backup root, in one round trip. A symbolic
    link is refused naming its target, or with `follow` read as its target (the fact's path, `via` the link)."""
    result = transport.run(["sh", "-c", _READ, "sh", path, backup_dir, str(MAX_EDIT_BYTES), "1" if follow else "0"])
    if result.rc != 0:
        raise StepError(f"cannot read {path}: {result.err.strip() or f'exit {result.rc}'}")
    root, _, rest = result.stdout.partition(b"\0")
    header, _, data = rest.partition(b"\n")
    backup_root = posixpath.normpath(root.decode("utf-8", "surrogateescape")) if root else ""
    via = ""
    if header.startswith(b"LINK "):
        target = header[5:].decode("utf-8", "surrogateescape")
        raise StepError(f"{path} is a symbolic link to {target}; left as it is (follow_symlinks: true edits "
                        f"{target} in place and keeps the link)")
    if header.startswith(b"VIA "):
        via, path = path, header[4:].decode("utf-8", "surrogateescape")
        header, _, data = data.partition(b"\n")
    if header == b"MISSING":
        return FileFact(path, False, backup_root=backup_root, via=via)
    if header.startswith(b"TOOBIG "):
        size = int(header.split()[1])
        raise StepError(f"{path} is {size / (1 << 20):.1f} MiB; remediate reads and edits files up to "
                        f"{MAX_EDIT_BYTES >> 20} MiB; left as it is")
    mode, uid, gid = header.decode().split()
    return FileFact(path, True, data, mode, int(uid), int(gid), backup_root, via)


def backup_path(root: str, run_id: str, path: str) -> str:
    """Where run_id keeps the original of path: ROOT/RUN_ID/ mirroring the absolute path."""
    if not root:
        raise StepError(f"{path}: no backup directory is known for this host")
    if not posixpath.isabs(path):
        raise StepError(f"{path}: a file remediate changes needs an absolute path (its backup mirrors it)")
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise StepError(f"run id {run_id!r} cannot name a backup directory")
    return posixpath.join(root, run_id, posixpath.normpath(path).lstrip("/"))


def _swept(stdout: bytes) -> tuple[str, ...]:
    return tuple(line[6:] for line in stdout.decode("utf-8", "replace").splitlines() if line.startswith("swept "))


def write_file(transport: Transport, path: str, data: bytes, expected_sha256: str, backup: str, mode: str = "644",
               *, root: str, owner: str = "", wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Atomically replace path with data if it still has the expected hash; keep a backup in root.

    Returns the stale staging files of killed runs that it removed on the way.
    """
    new_sha256 = hashlib.sha256(data).hexdigest()
    argv = ["sh", "-c", _WRITE, "sh", path, expected_sha256, backup, mode, new_sha256, root, owner, str(wait),
            secrets.token_hex(8)]
    result = transport.run(argv, stdin=data)
    if result.rc == 75:
        raise WriteConflict(result.err.strip())
    if result.rc != 0:
        raise StepError(f"cannot write {path}: {result.err.strip() or f'exit {result.rc}'}")
    return _swept(result.stdout)


def remove_file(transport: Transport, path: str, expected_sha256: str, backup: str,
                *, root: str, wait: int = LOCK_WAIT) -> tuple[str, ...]:
    """Back path up to backup and remove it, if it still has the expected hash; returns what it swept."""
    result = transport.run(["sh", "-c", _REMOVE, "sh", path, expected_sha256, backup, root, str(wait),
                            secrets.token_hex(8)])
    if result.rc == 75:
        raise WriteConflict(result.err.strip())
    if result.rc != 0:
        raise StepError(f"cannot remove {path}: {result.err.strip() or f'exit {result.rc}'}")
    return _swept(result.stdout)


def file_subject(path: str) -> Hashable:
    """What a FileProbe of path describes, and what a planned write or removal of it predicts (check mode)."""
    return ("file", path)


@dataclass(frozen=True)
class FileProbe(Probe):
    """The content, mode and owner of one file, and the host's backup root for `backup_dir` ("" = default)."""

    path: str
    backup_dir: str = ""
    follow: bool = False  # follow_symlinks: read a link's target instead of refusing the link

    def gather(self, transport: Transport) -> FileFact:
        return read_file(transport, self.path, self.backup_dir, self.follow)

    def subject(self) -> Hashable:
        return file_subject(self.path)


@dataclass(frozen=True)
class PathExists(Probe):
    """Whether a path exists on the host."""

    path: str

    def gather(self, transport: Transport) -> bool:
        return bool(transport.run(["test", "-e", self.path]).ok)
