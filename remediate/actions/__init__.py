"""Typed side effects: each describes itself, shows its diff, and knows how to execute."""
from .base import Action, ExecContext, Outcome, RemoveFile, RunCommand, WriteFile, unified_diff

__all__ = ["Action", "ExecContext", "Outcome", "RemoveFile", "RunCommand", "WriteFile", "unified_diff"]
