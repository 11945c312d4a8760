"""The options of one run, built once from the command line (cli.common.run_options) and shared by every host."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunOptions:
    """How a run goes: check mode, diffs, parallel hosts, selection, variables, and the bounds of its waits."""

    check: bool = False
    diff: bool = False
    forks: int = 10
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    verify_timeout: float = 900.0
    connect_timeout: float = 10.0
    command_timeout: float = 900.0
    accept_new_host_keys: bool = False
