"""What every command's failure means to the shell: the exit codes, and the errors that carry them up to `main`."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad usage or input: exit 2, nothing changed."""


class ProgramFailed(Exception):
    """The program under evaluation crashed or declared duplicate URNs: exit 1."""
