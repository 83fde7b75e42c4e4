"""Request-log records as the drift monitor reads them: one JSON object per line (the same lines the PII scanner
reads), fields by dotted path, JSON types by name. A Fluent Bit record whose `log` field holds the JSON line (no
parser on the input) is unwrapped. Nothing here keeps a value: callers take numbers and embed text, then drop it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

MAX_LINE_BYTES = 1024 * 1024


class BadLine(ValueError):
    """A line that is not a request-log record; the message is a reason code, never the line's content."""


def parse_line(line: bytes | str) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise BadLine("too_long")
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise BadLine("not_json") from None
    if not isinstance(record, dict):
        raise BadLine("not_an_object")
    inner = record.get("log")
    if isinstance(inner, str) and inner.lstrip().startswith("{") and "model" not in record:
        try:
            unwrapped = json.loads(inner)
        except ValueError:
            raise BadLine("not_json") from None
        if isinstance(unwrapped, dict):
            record = unwrapped
    if not isinstance(record.get("model"), str):
        raise BadLine("no_model")
    return record


def field(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (`retrieval.top_score`); None when any part is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def number(value: Any) -> float | None:
    """A finite JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def schema_fields(record: dict[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """(dotted field, JSON type) of every field of a record, nested objects to three levels."""
    for key, value in record.items():
        if not isinstance(key, str) or not key.isidentifier() or len(key) > 64:
            continue  # keys that are not names are data, not schema: never recorded
        name = f"{prefix}{key}"
        yield name, type_name(value)
        if isinstance(value, dict) and depth < 2:
            yield from schema_fields(value, f"{name}.", depth + 1)


def read_records(lines: Iterable[bytes], model: str) -> Iterator[dict[str, Any]]:
    """The records of one model among log lines; lines that are not records are skipped."""
    for line in lines:
        if not line.strip():
            continue
        try:
            record = parse_line(line)
        except BadLine:
            continue
        if record["model"] == model:
            yield record
