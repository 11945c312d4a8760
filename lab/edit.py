"""Text edits lab scripts make to an instance's own files, the way an operator makes them by hand: one line
changed or added where a person would put it, comments and order kept. Idempotent: an edit already made is
left alone. Lab code (stdlib only), not remediate's: remediate's own edits are structure-aware and tested apart.

  python3 lab/edit.py seed-fixes SETTINGS_FILE APPS_FILE       both write-ups' fixes (the --seeds fixed variant)
  python3 lab/edit.py command-add COMPOSE SERVICE AFTER ARG..  ARGs into SERVICE's `command: [...]` after the
                                                               token AFTER ("" = at the end)
  python3 lab/edit.py option-set COMPOSE SERVICE AFTER OPT VAL SERVICE's option OPT (e.g. -Q) set to VAL; added
                                                               after the token AFTER when the command lacks it
  python3 lab/edit.py service-lines COMPOSE SERVICE LINE..     lines (YAML, relative to the service's keys) added
                                                               after SERVICE's `command:` line
  python3 lab/edit.py top-volume COMPOSE NAME                  NAME under the top-level `volumes:`
  python3 lab/edit.py assign FILE NAME RHS                     the module-level line `NAME = ...` becomes `NAME = RHS`
Exit 0 when the file is as asked (changed or already so), 1 with a message when it cannot be.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SCHEDULER = "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'"
IMPORT = "import apps.audit.integrity_tasks  # noqa"


def fail(message: str) -> None:
    print(f"edit.py: {message}", file=sys.stderr)
    raise SystemExit(1)


def write(path: Path, lines: list[str], before: str) -> None:
    text = "".join(lines)
    if text != before:
        path.write_text(text)


def seed_fixes(settings: Path, apps: Path) -> None:
    """CELERY_BEAT_SCHEDULER in the settings beat loads (after CELERY_BEAT_SCHEDULE_FILENAME, as the first
    write-up did, else at the end) and `import apps.audit.integrity_tasks` in AuditConfig.ready() (the second)."""
    text = settings.read_text()
    lines = text.splitlines(keepends=True)
    if not any(line.startswith("CELERY_BEAT_SCHEDULER =") for line in lines):
        anchor = next((i for i, line in enumerate(lines) if line.startswith("CELERY_BEAT_SCHEDULE_FILENAME =")), None)
        if anchor is None:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append(SCHEDULER + "\n")
        else:
            lines.insert(anchor + 1, SCHEDULER + "\n")
        write(settings, lines, text)
    text = apps.read_text()
    if IMPORT not in text:
        lines = text.splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines) if line.strip() == "import apps.audit.signals  # noqa"), None)
        if at is None:
            fail(f"{apps}: no `import apps.audit.signals  # noqa` line in ready() to add the import after")
        indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
        lines.insert(at + 1, indent + IMPORT + "\n")
        write(apps, lines, text)


def service_block(lines: list[str], service: str, path: Path) -> tuple[int, int]:
    """The [start, end) line range of `  SERVICE:` under `services:`."""
    try:
        top = next(i for i, line in enumerate(lines) if line.rstrip() == "services:")
        start = next(i for i in range(top + 1, len(lines)) if lines[i].rstrip() == f"  {service}:")
    except StopIteration:
        fail(f"{path}: no service {service!r} under services:")
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.lstrip().startswith("#") and len(line) - len(line.lstrip()) <= 2:
            break
        end += 1
    return start, end


def command_line(lines: list[str], start: int, end: int, service: str, path: Path) -> int:
    at = next((i for i in range(start, end) if re.match(r"^    command: \[.*\]\s*$", lines[i])), None)
    if at is None:
        fail(f"{path}: service {service!r} has no one-line `command: [...]`")
    return at


def command_add(path: Path, service: str, after: str, args: list[str]) -> None:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    start, end = service_block(lines, service, path)
    at = command_line(lines, start, end, service, path)
    argv = json.loads(lines[at].split("command:", 1)[1])
    if any(argv[i:i + len(args)] == args for i in range(len(argv))):
        return
    pos = len(argv) if not after else argv.index(after) + 1 if after in argv else fail(
        f"{path}: {service}'s command has no {after!r}: {argv}")
    assert isinstance(pos, int)
    argv[pos:pos] = args
    lines[at] = "    command: " + json.dumps(argv) + "\n"
    write(path, lines, text)


def option_set(path: Path, service: str, after: str, option: str, value: str) -> None:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    start, end = service_block(lines, service, path)
    at = command_line(lines, start, end, service, path)
    argv = json.loads(lines[at].split("command:", 1)[1])
    if option in argv[:-1]:
        argv[argv.index(option) + 1] = value
    elif after in argv:
        argv[argv.index(after) + 1:argv.index(after) + 1] = [option, value]
    else:
        fail(f"{path}: {service}'s command has no {after!r}: {argv}")
    lines[at] = "    command: " + json.dumps(argv) + "\n"
    write(path, lines, text)


def service_lines(path: Path, service: str, new: list[str]) -> None:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    start, end = service_block(lines, service, path)
    block = "".join(lines[start:end])
    missing = [line for line in new if f"    {line}\n" not in block]
    if not missing:
        return
    at = command_line(lines, start, end, service, path)
    lines[at + 1:at + 1] = [f"    {line}\n" for line in new]
    write(path, lines, text)


def top_volume(path: Path, name: str) -> None:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    try:
        top = next(i for i, line in enumerate(lines) if line.rstrip() == "volumes:")
    except StopIteration:
        fail(f"{path}: no top-level volumes:")
    end = top + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("  ")):
        if lines[end].rstrip() == f"  {name}:":
            return
        end += 1
    while end > top + 1 and not lines[end - 1].strip():
        end -= 1
    lines.insert(end, f"  {name}:\n")
    write(path, lines, text)


def assign(path: Path, name: str, rhs: str) -> None:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if re.match(rf"^{re.escape(name)} = ", line)]
    if len(at) != 1:
        fail(f"{path}: {len(at)} module-level lines `{name} = ...` (one expected)")
    lines[at[0]] = f"{name} = {rhs}\n"
    write(path, lines, text)


def main(argv: list[str]) -> None:
    if not argv:
        fail("usage: see the module docstring")
    what, args = argv[0], argv[1:]
    if what == "seed-fixes" and len(args) == 2:
        seed_fixes(Path(args[0]), Path(args[1]))
    elif what == "command-add" and len(args) >= 4:
        command_add(Path(args[0]), args[1], args[2], args[3:])
    elif what == "option-set" and len(args) == 5:
        option_set(Path(args[0]), args[1], args[2], args[3], args[4])
    elif what == "service-lines" and len(args) >= 3:
        service_lines(Path(args[0]), args[1], args[2:])
    elif what == "top-volume" and len(args) == 2:
        top_volume(Path(args[0]), args[1])
    elif what == "assign" and len(args) == 3:
        assign(Path(args[0]), args[1], args[2])
    else:
        fail(f"unknown edit or wrong arguments: {' '.join(argv)}")


if __name__ == "__main__":
    main(sys.argv[1:])
