"""Stream files (plain text, JSON lines, gzip) through the detectors, a block of whole lines at a time.

Findings name the file, the 1-based line, and 0-based character offsets within it (end exclusive) --
never the matched text (at most a keyed hash of it, for de-duplication). Nothing is loaded whole:
blocks of about a megabyte are read, cut at the last newline, and scanned as bytes -- except a line
longer than a block, which is held whole until its newline. Time is linear in the input, however long
its lines.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

from llmops.pii.detectors import Engine, Match, default_engine

BLOCK_BYTES = 1 << 20


class Finding(NamedTuple):  # a tuple: cheap to make, and a dense log has one every few hundred bytes
    path: str
    line: int
    start: int
    end: int
    entity_type: str
    detector: str
    fingerprint: str | None = None  # keyed hash of the value, when a key was given

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"path": self.path, "line": self.line, "start": self.start, "end": self.end,
                 "entity_type": self.entity_type, "detector": self.detector}
        if self.fingerprint:
            found["fingerprint"] = self.fingerprint
        return found


@dataclass
class Summary:
    files: int = 0
    unreadable: int = 0  # of the files, those that could not be read to their end
    lines: int = 0
    bytes: int = 0
    seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    affected: set[str] = field(default_factory=set)  # paths with at least one finding

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    def add(self, other: Summary) -> None:
        self.files += other.files
        self.unreadable += other.unreadable
        self.lines += other.lines
        self.bytes += other.bytes
        self.seconds += other.seconds
        self.counts.update(other.counts)
        self.affected |= other.affected

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "unreadable_files": self.unreadable, "affected_files": len(self.affected),
                "lines": self.lines, "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "mb_per_second": round(self.megabytes_per_second, 2),
                "findings": sum(self.counts.values()), "counts": dict(sorted(self.counts.items()))}


def open_binary(source: str | Path | IO[bytes]) -> IO[bytes]:
    """A byte stream over a file or stream, gunzipped when it is gzip (by its magic bytes, not its name)."""
    stream: IO[bytes] = open(source, "rb") if isinstance(source, (str, Path)) else source  # the caller closes it
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, stream))
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered))
    return buffered


def read_error(error: BaseException) -> str | None:
    """Why reading a file failed, in words (never a value from it), when the error is one a damaged,
    vanished or forbidden input raises -- None for any other error, which is a bug to let through."""
    if isinstance(error, EOFError):
        return "truncated gzip: the compressed data ends before its end marker"
    if isinstance(error, gzip.BadGzipFile):
        return f"not valid gzip data ({error})"
    if isinstance(error, zlib.error):
        return f"corrupt gzip data ({error})"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__  # not str(error) first: it repeats the name
    return None


def blocks(stream: IO[bytes], size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines (each but perhaps the last ends in a newline). A line longer than `size` is
    carried until its newline arrives, so a value is never cut in two. Each chunk read is searched for a
    newline once and copied at most twice, so a line of any length costs time linear in its length."""
    pending: list[bytes] = []  # the start of a line whose newline has not arrived yet
    while True:
        chunk = stream.read(size)
        if not chunk:
            break
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            pending.append(chunk)
            continue
        whole = chunk if cut == len(chunk) else chunk[:cut]
        if pending:
            pending.append(whole)
            whole = b"".join(pending)
        pending = [chunk[cut:]] if cut < len(chunk) else []
        yield whole
    if pending:
        yield b"".join(pending)


def fingerprint(key: bytes, value: bytes) -> str:
    return "hmac-sha256:" + hmac.new(key, value, hashlib.sha256).hexdigest()[:16]


class Located(NamedTuple):
    """A match placed in its line: 1-based line number, character offsets within the line."""
    match: Match
    line: int
    line_start: int  # byte offset of the line's first byte in the block
    start: int
    end: int


def _characters(data: bytes) -> int:
    return len(data) if data.isascii() else len(data.decode("utf-8", "replace"))


def locate(data: bytes, matches: Iterable[Match], first_line: int) -> Iterator[Located]:
    """Line numbers and character offsets for byte-offset matches (sorted, not overlapping) in a block
    that starts a line. Incremental: the bytes between one match and the next are looked at once, so a
    line of many megabytes with many findings is not re-read from its start for each of them."""
    line, line_start = first_line, 0
    cursor, characters = 0, 0  # a byte offset in the current line, and how many characters precede it there
    for match in matches:
        if match.start < cursor:  # overlapping matches: count again from the line's start
            cursor, characters = line_start, 0
        newlines = data.count(b"\n", cursor, match.start)
        if newlines:
            line += newlines
            line_start = data.rfind(b"\n", cursor, match.start) + 1
            cursor, characters = line_start, 0
        start = characters + _characters(data[cursor:match.start])
        end = start + _characters(data[match.start:match.end])
        cursor, characters = match.end, end
        yield Located(match, line, line_start, start, end)


def scan_stream(path: str, stream: IO[bytes], *, key: bytes | None = None, engine: Engine | None = None,
                summary: Summary | None = None, names: Any = None, block_size: int = BLOCK_BYTES) -> Iterator[Finding]:
    """Findings in a byte stream (already decompressed), block by block; names too, given a NameDetector."""
    engine = engine or default_engine()
    summary = summary if summary is not None else Summary()
    began, first_line, found = time.perf_counter(), 1, False
    try:
        for data in blocks(stream, block_size):
            summary.bytes += len(data)
            lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            matches = engine.find(data)
            if names is not None:
                matches = names.add_to(data, matches)
            for located in locate(data, matches, first_line):
                match = located.match
                summary.counts[match.entity_type] += 1
                found = True
                print_ = fingerprint(key, data[match.start:match.end]) if key is not None else None
                yield Finding(path, located.line, located.start, located.end, match.entity_type, match.detector, print_)
            summary.lines += lines
            first_line += lines
    finally:
        summary.files += 1
        summary.seconds += time.perf_counter() - began
        if found:
            summary.affected.add(path)


def scan_file(path: str | Path, *, key: bytes | None = None, engine: Engine | None = None,
              summary: Summary | None = None, names: Any = None) -> Iterator[Finding]:
    with open_binary(path) as stream:
        yield from scan_stream(str(path), stream, key=key, engine=engine, summary=summary, names=names)


def scan_lines(path: str, lines: Iterable[str], *, key: bytes | None = None, engine: Engine | None = None,
               summary: Summary | None = None, names: Any = None) -> Iterator[Finding]:
    """Findings in lines of text (each may end in a newline); for tests and small inputs."""
    data = "".join(line if line.endswith("\n") else line + "\n" for line in lines).encode("utf-8", "surrogateescape")
    yield from scan_stream(path, io.BytesIO(data), key=key, engine=engine, summary=summary, names=names)
