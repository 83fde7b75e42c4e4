"""Stream files (plain text, JSON lines, gzip) through the detectors, a block of lines at a time.

Findings name the file, the 1-based line, and 0-based character offsets within it -- never the
matched text (at most a keyed hash of it, for de-duplication). Nothing is loaded whole.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import hmac
import io
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from llmops.pii.detectors import DETECTORS, Detector, detect

BLOCK_LINES = 2048


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    start: int
    end: int
    entity_type: str
    detector: str
    fingerprint: str | None = None  # keyed hash of the value, when a key was given

    def to_dict(self) -> dict:
        found = {"path": self.path, "line": self.line, "start": self.start, "end": self.end,
                 "entity_type": self.entity_type, "detector": self.detector}
        if self.fingerprint:
            found["fingerprint"] = self.fingerprint
        return found


@dataclass
class Summary:
    files: int = 0
    lines: int = 0
    bytes: int = 0
    seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    def add(self, other: Summary) -> None:
        self.files += other.files
        self.lines += other.lines
        self.bytes += other.bytes
        self.seconds += other.seconds
        self.counts.update(other.counts)


def open_text(path: str | Path, raw: IO[bytes] | None = None) -> IO[str]:
    """A text stream over a file or byte stream, gunzipped when it is gzip (by magic bytes)."""
    stream = raw if raw is not None else open(path, "rb")
    buffered = io.BufferedReader(stream) if not isinstance(stream, io.BufferedReader) else stream
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        buffered = io.BufferedReader(gzip.GzipFile(fileobj=buffered))  # type: ignore[arg-type]
    return io.TextIOWrapper(buffered, encoding="utf-8", errors="replace", newline="")


def _blocks(lines: Iterable[str]) -> Iterator[list[str]]:
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) == BLOCK_LINES:
            yield block
            block = []
    if block:
        yield block


def scan_lines(path: str, lines: Iterable[str], *, key: bytes | None = None,
               detectors: tuple[Detector, ...] = DETECTORS, summary: Summary | None = None) -> Iterator[Finding]:
    """Findings in a stream of lines (each may end in a newline)."""
    summary = summary if summary is not None else Summary()
    first_line = 1
    for block in _blocks(lines):
        text = "".join(block)
        starts, offset = [], 0
        for line in block:
            starts.append(offset)
            offset += len(line)
        summary.bytes += len(text.encode("utf-8", "replace")) if not text.isascii() else len(text)
        summary.lines += len(block)
        for match in detect(text, detectors):
            index = bisect.bisect_right(starts, match.start) - 1
            line_start = starts[index]
            summary.counts[match.entity_type] += 1
            fingerprint = None
            if key is not None:
                digest = hmac.new(key, text[match.start:match.end].encode(), hashlib.sha256).hexdigest()[:16]
                fingerprint = f"hmac-sha256:{digest}"
            yield Finding(path, first_line + index, match.start - line_start, match.end - line_start,
                          match.entity_type, match.detector, fingerprint)
        first_line += len(block)


def scan_file(path: str | Path, *, key: bytes | None = None, summary: Summary | None = None) -> Iterator[Finding]:
    summary = summary if summary is not None else Summary()
    began = time.perf_counter()
    with open_text(path) as stream:
        yield from scan_lines(str(path), stream, key=key, summary=summary)
    summary.files += 1
    summary.seconds += time.perf_counter() - began
