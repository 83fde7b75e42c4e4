"""The drills' command-line values, checked when the arguments are parsed: a bad one is refused with exit 2 naming
the option and what was expected, before any server starts (not a traceback half a minute later, when Prometheus
refuses a rule or a world never sees its first request)."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

# A Prometheus duration as a rule's `for:` takes it: units from ms to y, e.g. 5s, 1m30s.
_DURATION = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def positive_seconds(text: str) -> float:
    value = _number(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, a number above 0")
    return value


def seconds_or_zero(text: str) -> float:
    value = _number(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, a number >= 0")
    return value


def rate(text: str) -> float:
    value = _number(text)
    if value is None or not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected requests per second, above 0 and at most 10000")
    return value


def share(text: str) -> float:
    value = _number(text)
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share, above 0 and at most 1 (e.g. 0.2)")
    return value


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, at least 1")
    return value


def duration(text: str) -> str:
    """A Prometheus duration (the drill's `for:` of a rule): 0s is allowed, as in a rule."""
    if not _DURATION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a Prometheus duration such as 5s, 2m or 1m30s")
    return text


def report_dir(text: str) -> Path:
    """A directory for the reports: it may not exist yet, but nothing on its way may be a file."""
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "is a file" if part == path else f"has a file on its way: {part}"
                raise argparse.ArgumentTypeError(f"{text!r} {where}; expected a directory for the reports")
            break
    return path
