"""What to scan: local files and directories, or every object under an S3 prefix -- each opened as a
byte stream (gunzipped by magic bytes) and scanned; S3 objects in parallel, with a progress bar."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from llmops.pii.detectors import Engine, default_engine
from llmops.pii.scanner import Finding, Summary, open_binary, scan_stream


class SourceError(ValueError):
    """A path or URI that cannot be scanned (named in the message)."""


@dataclass(frozen=True)
class Source:
    name: str  # a path, or s3://bucket/key
    size: int
    open: Callable[[], IO[bytes]]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise SourceError(f"{uri!r}: expected s3://bucket/prefix")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise SourceError(f"{uri!r}: no bucket name; expected s3://bucket/prefix")
    return bucket, prefix


def s3_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every current object under a prefix (Key, Size, ETag, LastModified), in key order."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def s3_source(s3: Any, bucket: str, key: str, size: int, version_id: str | None = None) -> Source:
    def opener() -> IO[bytes]:
        extra = {"VersionId": version_id} if version_id else {}
        return _Raw(s3.get_object(Bucket=bucket, Key=key, **extra)["Body"])
    name = f"s3://{bucket}/{key}" + (f"?versionId={version_id}" if version_id else "")
    return Source(name, size, opener)


class _Raw(io.RawIOBase):
    """botocore's StreamingBody as a raw stream (its length and checksum checks kept), for buffering."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.body.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.body.close()
        super().close()


def resolve(specs: Sequence[str], s3_client: Callable[[], Any]) -> list[Source]:
    """Sources for paths (files; directories recursively) and s3:// prefixes; a missing one is an error."""
    sources: list[Source] = []
    for spec in specs:
        if spec.startswith("s3://"):
            bucket, prefix = parse_s3_uri(spec)
            s3 = s3_client()
            found = [s3_source(s3, bucket, o["Key"], o["Size"]) for o in s3_objects(s3, bucket, prefix)]
            if not found:
                raise SourceError(f"{spec}: no objects under this prefix")
            sources += found
            continue
        path = Path(spec)
        if path.is_dir():
            sources += [_file(p) for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            sources.append(_file(path))
        else:
            raise SourceError(f"{spec}: no such file or directory")
    return sources


def _file(path: Path) -> Source:
    return Source(str(path), path.stat().st_size, lambda: open(path, "rb"))


@dataclass
class Scanned:
    source: Source
    findings: list[Finding]
    summary: Summary


def scan_one(source: Source, *, key: bytes | None = None, engine: Engine | None = None, names: Any = None) -> Scanned:
    summary = Summary()
    with open_binary(source.open()) as stream:
        findings = list(scan_stream(source.name, stream, key=key, engine=engine, summary=summary, names=names))
    return Scanned(source, findings, summary)


def scan_sources(sources: Sequence[Source], *, workers: int = 8, key: bytes | None = None,
                 engine: Engine | None = None, progress: bool = False, names: Any = None) -> Iterator[Scanned]:
    """Scan sources (in parallel when there are several), yielding results in the sources' order."""
    engine = engine or default_engine()
    workers = 1 if names is not None else workers  # a spaCy pipeline is not shared across threads
    bar = _progress(sum(s.size for s in sources), progress)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sources) or 1))) as pool:
            for result in pool.map(lambda s: scan_one(s, key=key, engine=engine, names=names), sources):
                bar.update(result.source.size)
                yield result
    finally:
        bar.close()


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: shown only on a terminal, so logs and pipes stay clean.
    return tqdm(total=total, unit="B", unit_scale=True, desc="scanning", disable=None if enabled else True,
                leave=False)
