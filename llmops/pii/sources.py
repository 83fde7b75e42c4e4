"""What to scan: local files and directories, or every object under an S3 prefix -- each opened as a
byte stream (gunzipped by magic bytes) and scanned; S3 objects in parallel, with a progress bar.
An input that cannot be read (a corrupt gzip, a FIFO, a broken link, an object gone) can be reported
and skipped, so that it never hides the others -- or stop the scan, for callers that must not go on.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from llmops.pii.detectors import Engine, default_engine
from llmops.pii.scanner import Finding, Summary, open_binary, read_error, scan_stream


class SourceError(ValueError):
    """A path or URI that cannot be scanned at all (named in the message): bad input, nothing scanned."""


class Unreadable(Exception):
    """An input found while listing that cannot be opened (a FIFO, a broken link): the reason."""


@dataclass(frozen=True)
class Source:
    name: str  # a path, or s3://bucket/key (?versionId=... for a version)
    size: int
    open: Callable[[], IO[bytes]]
    key: str | None = None  # the S3 object key (shards are chosen by it); None for a local path
    version_id: str | None = None


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


def s3_versions(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every version under a prefix (Key, VersionId, Size, ...), delete markers left out."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Versions", [])


def s3_source(s3: Any, bucket: str, key: str, size: int, version_id: str | None = None) -> Source:
    def opener() -> IO[bytes]:
        extra = {"VersionId": version_id} if version_id else {}
        return cast(IO[bytes], _Raw(s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]))
    name = f"s3://{bucket}/{key}" + (f"?versionId={version_id}" if version_id else "")
    return Source(name, size, opener, key, version_id)


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


def unreadable_reason(error: BaseException) -> str | None:
    """Why an input could not be read, in words (no value from it); None for an error that is a bug."""
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError

    if isinstance(error, Unreadable):
        return str(error)
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    if isinstance(error, (BotoCoreError, HTTPError)):
        return str(error)
    return read_error(error)


def resolve(specs: Sequence[str], s3_client: Callable[[], Any], *, versions: bool = False) -> list[Source]:
    """Sources for paths (files; directories recursively) and s3:// prefixes. A path that does not exist,
    a bucket that does not exist or a prefix with no objects is a SourceError; what cannot be read among
    what was found (a FIFO, a broken link, a directory or prefix that cannot be listed) is a source that
    fails when opened, so it is reported with the others. versions: every version of each S3 object
    (not delete markers), in name order (key, then version id), instead of the current ones."""
    sources: list[Source] = []
    for spec in specs:
        if spec.startswith("s3://"):
            sources += _s3_prefix(spec, s3_client, versions)
            continue
        path = Path(spec)
        try:
            status = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            if path.is_symlink():
                raise SourceError(f"{spec}: broken symbolic link (its target does not exist)") from None
            raise SourceError(f"{spec}: no such file or directory") from None
        except OSError as error:  # it may exist, but cannot be looked at (a directory on its path is locked)
            sources.append(_failing(spec, read_error(error) or str(error)))
            continue
        if stat.S_ISDIR(status.st_mode):
            sources += _walk(path)
        else:
            sources.append(_entry(path, named=True))  # named on the command line: a pipe is read as given
    return sources


def _s3_prefix(spec: str, s3_client: Callable[[], Any], versions: bool = False) -> list[Source]:
    from botocore.exceptions import ClientError

    bucket, prefix = parse_s3_uri(spec)
    s3 = s3_client()
    try:
        if versions:
            found = sorted((s3_source(s3, bucket, v["Key"], v["Size"], v["VersionId"])
                            for v in s3_versions(s3, bucket, prefix)), key=lambda source: source.name)
        else:
            found = [s3_source(s3, bucket, o["Key"], o["Size"]) for o in s3_objects(s3, bucket, prefix)]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise SourceError(f"{spec}: no such bucket") from None
        return [_failing(spec, f"cannot list the prefix: {unreadable_reason(error)}")]
    except Exception as error:  # connection, credentials: reported like any unreadable input
        reason = unreadable_reason(error)
        if reason is None:
            raise
        return [_failing(spec, f"cannot list the prefix: {reason}")]
    if not found:
        raise SourceError(f"{spec}: no objects under this prefix")
    return found


def _walk(root: Path) -> list[Source]:
    found: list[Source] = []

    def unlistable(error: OSError) -> None:
        found.append(_failing(error.filename or str(root), f"cannot list the directory: {read_error(error)}"))

    for directory, _, files in os.walk(root, onerror=unlistable):  # links to directories are not followed
        found += [_entry(Path(directory) / name) for name in files]
    return sorted(found, key=lambda source: source.name)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _entry(path: Path, named: bool = False) -> Source:
    """A file as a source. Found in a directory, anything but a regular file fails instead of being
    opened (a FIFO would block the scan until someone wrote to it)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return _failing(path, "broken symbolic link (its target does not exist)" if path.is_symlink()
                        else "removed after it was listed")
    except OSError as error:
        return _failing(path, read_error(error) or str(error))
    if not named and not stat.S_ISREG(status.st_mode):
        kind = next((kind for test, kind in _KINDS if test(status.st_mode)), "not a file")
        return _failing(path, f"not a regular file ({kind}); not opened")
    return Source(str(path), status.st_size, lambda: open(path, "rb"))


def _failing(name: str | Path, reason: str) -> Source:
    def opener() -> IO[bytes]:
        raise Unreadable(reason)
    return Source(str(name), 0, opener)


@dataclass
class Scanned:
    source: Source
    findings: list[Finding]
    summary: Summary
    error: str | None = None  # why the source could not be read to its end (findings before that are kept)


def scan_one(source: Source, *, key: bytes | None = None, engine: Engine | None = None, names: Any = None,
             keep_going: bool = False) -> Scanned:
    """One source scanned. With keep_going, an input that cannot be read (see unreadable_reason) is a
    result with its error and the findings made before it failed; without, the error is raised."""
    summary = Summary()
    findings: list[Finding] = []
    try:
        raw = source.open()
        try:
            with open_binary(raw) as stream:
                for finding in scan_stream(source.name, stream, key=key, engine=engine, summary=summary,
                                           names=names):
                    findings.append(finding)
        finally:
            raw.close()
    except Exception as error:
        reason = unreadable_reason(error) if keep_going else None
        if reason is None:
            raise
        summary.files, summary.unreadable = 1, 1
        return Scanned(source, findings, summary, reason)
    return Scanned(source, findings, summary)


def scan_sources(sources: Sequence[Source], *, workers: int = 8, key: bytes | None = None,
                 engine: Engine | None = None, progress: bool = False, names: Any = None, keep_going: bool = False,
                 show: Callable[[str], str] | None = None) -> Iterator[Scanned]:
    """Scan sources (in parallel when there are several), yielding results in the sources' order.
    keep_going: see scan_one. The progress bar names the latest source done as `show` shows it (by
    default with placeholders for any personal data in the name)."""
    from llmops.pii.redact import redact_text

    engine = engine or default_engine()
    shown: Callable[[str], str] = show or redact_text
    workers = 1 if names is not None else workers  # a spaCy pipeline is not shared across threads
    bar = _progress(sum(s.size for s in sources), progress)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sources) or 1))) as pool:
            scan = lambda s: scan_one(s, key=key, engine=engine, names=names, keep_going=keep_going)  # noqa: E731
            for result in pool.map(scan, sources):
                bar.set_postfix_str(shown(result.source.name), refresh=False)
                bar.update(result.source.size)
                yield result
    finally:
        bar.close()


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: shown only on a terminal, so logs and pipes stay clean.
    return tqdm(total=total, unit="B", unit_scale=True, desc="scanning", disable=None if enabled else True,
                leave=False)
