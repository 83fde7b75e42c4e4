"""Parsers for runbook parameters: each takes the option's text and returns the typed value, or raises
ValueError saying what is expected (the engine names the option). Values are never passed to a shell."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone

from llmops.pii.sources import SourceError, parse_s3_uri


def s3_prefix(value: str) -> str:
    try:
        bucket, prefix = parse_s3_uri(value)
    except SourceError as error:
        raise ValueError(str(error)) from None
    return f"s3://{bucket}/{prefix}"


def identifier(what: str, example: str) -> Callable[[str], str]:
    """Names such as incident ids and config versions: letters, digits, '.', '_' or '-', at most 64."""
    def parse(value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
            raise ValueError(f"expected {what} of letters, digits, '.', '_' or '-' (at most 64), e.g. {example}")
        return value
    return parse


def aws_region(value: str) -> str:
    if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", value):
        raise ValueError("expected an AWS region name such as us-west-2")
    return value


def instant(value: str) -> float:
    """An ISO 8601 time (UTC unless it says otherwise) as epoch seconds."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("expected an ISO 8601 time such as 2026-11-22T03:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def switch(value: str) -> bool:
    """An on/off option given without a value (`--failback`)."""
    return True
