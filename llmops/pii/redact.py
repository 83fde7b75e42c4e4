"""A redacted copy of a stream: every finding replaced by a typed placeholder (`<EMAIL_ADDRESS>`).

Streaming, block by block; lines without findings are copied byte for byte. A JSON line stays valid
JSON: a placeholder replaces a value inside a JSON string in place (placeholders hold no quote or
backslash); where a value was not inside a string (a card number written as a JSON number), the line
is parsed and its strings and numbers are redacted as values, then written back as JSON.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from llmops.pii.detectors import Engine, Match, default_engine
from llmops.pii.scanner import blocks, open_binary, read_error


def placeholder(entity_type: str) -> bytes:
    return f"<{entity_type}>".encode()


def redact_text(text: str, engine: Engine | None = None) -> str:
    """A short text -- a path, an object key, an error message -- with each finding replaced by its
    placeholder (`users/<EMAIL_ADDRESS>/a.jsonl`): how names that may hold personal data are shown."""
    data = text.encode("utf-8", "surrogateescape")
    matches = (engine or default_engine()).find(data)
    return _replace(data, matches).decode("utf-8", "replace") if matches else text


@dataclass
class Redaction:
    lines_changed: int = 0
    bytes_in: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    json_rewritten: int = 0  # lines redacted through the JSON fallback

    def to_dict(self) -> dict[str, Any]:
        return {"lines_changed": self.lines_changed, "bytes": self.bytes_in, "json_rewritten": self.json_rewritten,
                "findings": sum(self.counts.values()), "counts": dict(sorted(self.counts.items()))}


def _replace(data: bytes, matches: list[Match], offset: int = 0) -> bytes:
    out, cursor = [], 0
    for match in matches:
        out += [data[cursor:match.start - offset], placeholder(match.entity_type)]
        cursor = match.end - offset
    out.append(data[cursor:])
    return b"".join(out)


def _is_json(line: bytes) -> bool:
    stripped = line.strip()
    if stripped[:1] not in (b"{", b"["):
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def redact_value(value: Any, engine: Engine, counts: Counter[str]) -> Any:
    """A JSON value with every finding in its strings (and numbers that are one whole value) replaced."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        matches = engine.find(data)
        counts.update(m.entity_type for m in matches)
        return _replace(data, matches).decode("utf-8", "surrogatepass") if matches else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        text = repr(value).encode()
        matches = engine.find(text)
        if matches and matches[0].start == 0 and matches[0].end == len(text):
            counts[matches[0].entity_type] += 1
            return placeholder(matches[0].entity_type).decode()
        return value
    if isinstance(value, list):
        return [redact_value(item, engine, counts) for item in value]
    if isinstance(value, dict):
        return {redact_value(k, engine, counts): redact_value(v, engine, counts) for k, v in value.items()}
    return value


def _redact_line(line: bytes, matches: list[Match], offset: int, engine: Engine, result: Redaction) -> bytes:
    replaced = _replace(line, matches, offset)
    if _is_json(line) and not _is_json(replaced):
        ending = line[len(line.rstrip(b"\r\n")):]
        counts: Counter[str] = Counter()
        document = redact_value(json.loads(line), engine, counts)
        result.counts.update(counts)
        result.json_rewritten += 1
        return json.dumps(document, ensure_ascii=False).encode() + ending
    result.counts.update(m.entity_type for m in matches)
    return replaced


def redact_stream(source: IO[bytes], target: IO[bytes], *, engine: Engine | None = None, names: Any = None) -> Redaction:
    engine = engine or default_engine()
    result = Redaction()
    for data in blocks(source):
        result.bytes_in += len(data)
        matches = engine.find(data)
        if names is not None:
            matches = names.add_to(data, matches)
        if not matches:
            target.write(data)
            continue
        out, cursor, index = [], 0, 0
        while index < len(matches):
            start = data.rfind(b"\n", 0, matches[index].start) + 1
            end = data.find(b"\n", matches[index].start)
            end = len(data) if end < 0 else end + 1
            in_line = []
            while index < len(matches) and matches[index].start < end:
                in_line.append(matches[index])
                index += 1
            out += [data[cursor:start], _redact_line(data[start:end], in_line, start, engine, result)]
            result.lines_changed += 1
            cursor = end
        out.append(data[cursor:])
        target.write(b"".join(out))
    return result


class DestinationError(ValueError):
    """The redacted copy cannot be written where asked (the path and why): nothing was written."""


class SourceUnreadable(Exception):
    """The source could not be read to its end (its path and why): nothing was written."""


class _Reading:
    """A source stream whose read errors say so: a SourceUnreadable naming the source, not an OSError
    that would pass for a failure to write."""

    def __init__(self, stream: IO[bytes], name: Path) -> None:
        self.stream, self.name = stream, name

    def read(self, size: int) -> bytes:
        try:
            return self.stream.read(size)
        except Exception as error:
            reason = read_error(error)
            if reason is None:
                raise
            raise SourceUnreadable(f"{self.name}: {reason}") from None


def redact_file(source: str | Path, target: str | Path, *, engine: Engine | None = None,
                overwrite: bool = False, names: Any = None) -> Redaction:
    """Write a redacted copy of `source` to `target` atomically (a temporary file beside it, renamed into
    place); gzip-compressed when `target` ends in .gz. The source is never changed. On any failure --
    the source unreadable, the destination unwritable, an error in the detectors, an interrupt -- the
    temporary file is removed and `target` is left as it was."""
    source, target = Path(source), Path(target)
    if target.is_dir():
        raise DestinationError(f"{target}: is a directory; give the path of the redacted file")
    if target.exists() and (source.exists() and os.path.samefile(source, target)):
        raise ValueError(f"{target}: the redacted copy must not replace its source")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: exists; choose another path or pass --force")
    stream = _open_source(source)
    scratch: str | None = None
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor, scratch = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as error:
            raise DestinationError(f"{target.parent}: cannot write the redacted copy there "
                                   f"({error.strerror or error})") from None
        try:
            with os.fdopen(descriptor, "wb") as raw:
                out: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb") if target.suffix == ".gz" else raw  # type: ignore[assignment]
                result = redact_stream(_Reading(stream, source), out, engine=engine, names=names)  # type: ignore[arg-type]
                if out is not raw:
                    out.close()
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(scratch, target)
        except OSError as error:  # reading fails as SourceUnreadable: this is writing
            raise DestinationError(f"{target}: could not write the redacted copy ({error.strerror or error})") from None
    finally:
        stream.close()
        if scratch is not None:
            Path(scratch).unlink(missing_ok=True)
    return result


def _open_source(source: Path) -> IO[bytes]:
    try:
        return open_binary(source)
    except (FileNotFoundError, IsADirectoryError):
        raise  # bad input: no such file, or not a file
    except Exception as error:
        reason = read_error(error)
        if reason is None:
            raise
        raise SourceUnreadable(f"{source}: {reason}") from None
