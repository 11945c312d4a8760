"""become: a host's commands as another user through sudo (the command and what its failures mean; pure).

Every shell or channel remediate starts on a host begins with a start marker printed on stdout and stderr
(`sh -c 'printf MARK; printf MARK >&2; exec …'`): whatever the login shell's startup files print comes
before it and is dropped, and under sudo the marker says sudo let us through, so a failure before it is
sudo's (a password required, not allowed, not installed), never the command's. With a password, sudo is
asked to prompt with a random token on stderr (`-S -p TOKEN`); the password is written to its stdin once,
when that token appears — never in argv, the environment or a file.
"""
from __future__ import annotations

import re
import secrets

from ..core.options import BECOME_PASSWORD_ENV
from .base import Become, shell_command

_SHELL = 'printf "%s\\n" "$0"; printf "%s\\n" "$0" >&2; exec sh'
_COMMAND = 'printf "%s\\n" "$0"; printf "%s\\n" "$0" >&2; exec sh -c "$1"'


def new_marker() -> str:
    """A start marker nobody's startup files print."""
    return f"remediate-start-{secrets.token_hex(12)}"


def new_prompt() -> str:
    """A sudo prompt nobody's startup files print (sudo writes it on stderr, without a newline)."""
    return f"[remediate sudo {secrets.token_hex(12)}] password:"


def start_command(marker: str, command: str | None = None, become: Become | None = None,
                  prompt: str | None = None) -> str:
    """The exec string of a channel: a shell reading commands (command None) or one command, after the
    marker on both streams; through sudo when become is given (prompting with `prompt` if given, else -n)."""
    inner = ["sh", "-c", _SHELL, marker] if command is None else ["sh", "-c", _COMMAND, marker, command]
    if become is None:
        return shell_command(inner)
    ask = ["-S", "-p", prompt] if prompt else ["-n"]
    return shell_command(["sudo", "-H", *ask, "-u", become.user, "--", *inner])


def failure(become: Become, login: str, where: str, stderr: str, rc: int | None) -> str:
    """What it means that sudo ended before the marker (stderr: what came before it), in one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("sudo:") or "sudoers" in line or line.startswith("Sorry")]
    text = " ".join(said or lines[-1:])
    goal = f"to become {become.user} as {login}"
    if "a password is required" in text:
        return (f"sudo on {where} asks for a password {goal}: pass --ask-become-pass (-K) or set {BECOME_PASSWORD_ENV}")
    if rc == 127 or re.search(r"sudo: (command )?not found|sudo: No such file", stderr):
        return f"sudo is not installed on {where} (needed {goal})"
    if "incorrect password" in text or "Sorry, try again" in text:
        return f"sudo on {where} refused the become password {goal}"
    if text:
        return f"sudo on {where} refused {goal}: {text}"
    return f"sudo on {where} ended (exit {rc if rc is not None else 'unknown'}) before running anything {goal}"
