"""Typed side effects, one module per family; what every action is: base.py."""
from .base import Action, ExecContext, Outcome
from .commands import RunCommand
from .files import RemoveFile, WriteFile, unified_diff

__all__ = ["Action", "ExecContext", "Outcome", "RemoveFile", "RunCommand", "WriteFile", "unified_diff"]
