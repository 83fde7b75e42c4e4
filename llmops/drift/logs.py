"""Request logs as records: files, directories or s3:// prefixes (the PII scanner's sources: gzip by magic bytes,
unreadable inputs named), one model's records at a time. A reference must come from every input it names: an input
that cannot be read stops the build (ReferenceError naming it, by placeholder when its name holds personal data)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from llmops.drift.records import read_records
from llmops.drift.reference import ReferenceError
from llmops.pii.redact import redact_text
from llmops.pii.scanner import open_binary, read_error
from llmops.pii.sources import SourceError, resolve, unreadable_reason


def log_records(specs: Sequence[str], model: str, s3_client: Callable[[], Any]) -> tuple[int, Iterator[dict[str, Any]]]:
    """(number of inputs, an iterator over the model's records in them)."""
    try:
        sources = resolve(specs, s3_client)
    except SourceError as error:
        raise ReferenceError(f"--from {redact_text(str(error))}") from None

    def records() -> Iterator[dict[str, Any]]:
        for source in sources:
            try:
                with source.open() as raw, open_binary(raw) as stream:
                    yield from read_records(stream, model)
            except Exception as error:
                reason = unreadable_reason(error) or read_error(error)
                if reason is None:
                    raise
                raise ReferenceError(f"--from {redact_text(source.name)}: cannot be read: {reason}") from None
    return len(sources), records()
