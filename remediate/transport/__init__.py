"""Transports: how commands reach a host. Quoting happens in base.shell_command and nowhere else."""
from .base import CommandResult, Transport, shell_command

__all__ = ["CommandResult", "Transport", "shell_command"]
