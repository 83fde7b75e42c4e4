"""Errors every command shares (a module of its own, so `python -m llmops.cli` and imports agree on them)."""


class UsageError(Exception):
    """Bad usage or input: exit 2, nothing changed."""
