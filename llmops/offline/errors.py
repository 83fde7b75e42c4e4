"""What evaluating a program can end in, besides a plan (a module without Pulumi, so the CLI can catch them cheaply)."""

from __future__ import annotations


class ProgramError(Exception):
    """The program stopped with an error of its own (bad config, a RunError, an exception)."""

    def __init__(self, message: str, *, declared: int, user_error: bool) -> None:
        super().__init__(message)
        self.declared = declared  # resources registered before it stopped
        self.user_error = user_error  # a deliberate, user-facing error rather than a crash


class DuplicateUrnError(Exception):
    """Two resources share a URN: the real engine would refuse the program."""


class EvaluationTimeout(Exception):
    """The program did not finish within the time allowed; it was stopped."""

    def __init__(self, stack: str, seconds: float) -> None:
        super().__init__(f"stack {stack}: the program did not finish within {seconds:g} s")
        self.stack, self.seconds = stack, seconds
