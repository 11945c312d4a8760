"""The options of one run, built once from the command line (cli.common.run_options) and shared by every host."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


# where a CI job gives the passphrase of its SSH keys, and sudo's password (both secrets: masked, never recorded)
KEY_PASSPHRASE_ENV = "REMEDIATE_SSH_KEY_PASSPHRASE"
BECOME_PASSWORD_ENV = "REMEDIATE_BECOME_PASSWORD"
# what a become_user / --become-user may be: a POSIX-portable user name (it goes into sudo's argv)
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")


def is_user_name(value: str) -> bool:
    """A user name sudo -u can be given (the one rule for become_user, --become-user and Become)."""
    return _USER_NAME.fullmatch(value) is not None


@dataclass(frozen=True)
class RunOptions:
    """How a run goes: check mode, diffs, parallel hosts, selection, variables, and the bounds of its waits."""

    check: bool = False
    diff: bool = False
    forks: int = 50  # hosts in parallel: each is a thread waiting on its host, so a fleet of 50 runs at once
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    verify_timeout: float = 900.0
    connect_timeout: float = 10.0
    command_timeout: float = 900.0
    accept_new_host_keys: bool = False
    # how long a run waits for another run's lock on a host; 0: refuse at once, naming the holder
    wait_lock: float = 0.0
    # append to an audit trail whose end does not match audit.head, recording the break first
    force_audit_continue: bool = False
    # SSH as hosts are (transport/sshconfig.py): -u and --private-key where the inventory says nothing; the
    # ssh_config files (None: ~/.ssh/config and /etc/ssh/ssh_config, or REMEDIATE_SSH_CONFIG), or none at all
    user: str | None = None
    private_key: str | None = None
    ssh_config: str | None = None
    use_ssh_config: bool = True
    # -b/--become and --become-user: sudo where the inventory, the play and the step say nothing; the password
    # sudo asks for (--ask-become-pass or REMEDIATE_BECOME_PASSWORD), never printed or recorded
    become: bool = False
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)
