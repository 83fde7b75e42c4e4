"""A scan split into N shards that together read every object exactly once, whatever the listing order.

An object belongs to shard `int(sha256(key), 16) % N` (key + NUL + version id when versions are scanned):
a pure function of the object, so N processes listing the same prefix -- in any order, at any time --
agree on who scans what without talking to each other, and a restarted shard takes exactly the same
objects again. Python's hash() is salted per process and would not do.

Each shard writes `shard-<I>.jsonl` under a results prefix: its findings, one per line in the format of
`llmops pii scan --output jsonl` (where and what, never a value), then one manifest line
(`{"manifest": {...}}`: objects, versions, bytes, counts by entity type, errors). The file is spooled to
local disk while scanning and uploaded once, complete, at the end (see write_result), so it is either
whole or absent: a shard killed mid-scan leaves nothing, and its rerun overwrites its own key -- never a
second copy. `merge` reads shards 0..N-1 back into one report, and refuses while any is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from llmops.pii.scanner import Finding, Summary

JOB_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"  # what Kubernetes sets in each pod of an Indexed Job
CRASH_AT = "LLMOPS_PII_CRASH_AT"  # tests: `scanned-<n>` or `upload` kills the shard there with SIGKILL

T = TypeVar("T")


class ShardError(ValueError):
    """A shard spec that cannot be used (named in the message)."""


def shard_of(key: str, shards: int, version_id: str | None = None) -> int:
    """The shard of an object: SHA-256 of its key (and version id) modulo the number of shards."""
    data = key.encode("utf-8", "surrogateescape")
    if version_id is not None:
        data += b"\0" + version_id.encode()
    return int.from_bytes(hashlib.sha256(data).digest(), "big") % shards


def parse_shard(spec: str | None, shards: int | None, environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(index, count) from `--shard I/N`, or from `--shards N` (or `--shard /N`) with the index in
    JOB_COMPLETION_INDEX, as Kubernetes sets it in an Indexed Job's pods."""
    env = os.environ if environ is None else environ
    index_text: str | None = None
    if spec is not None:
        index_text, slash, count_text = spec.partition("/")
        if not slash or not count_text.strip().isdigit():
            raise ShardError(f"--shard {spec}: expected I/N, e.g. 0/4 (or /N with the index in {JOB_COMPLETION_INDEX})")
        if shards is not None and shards != int(count_text):
            raise ShardError(f"--shard {spec} and --shards {shards} disagree on the number of shards")
        shards = int(count_text)
        index_text = index_text.strip() or None
    if shards is None:
        raise ShardError("no number of shards: use --shard I/N or --shards N")
    given = f"--shard {spec}" if spec is not None else f"--shards {shards}"
    if shards < 1:
        raise ShardError(f"{given}: {shards} shards; expected at least 1")
    source = f"{given}: index"
    if index_text is None:
        index_text = env.get(JOB_COMPLETION_INDEX) or None
        source = JOB_COMPLETION_INDEX
        if index_text is None:
            raise ShardError(f"--shards {shards} without an index: use --shard I/{shards}, or set "
                             f"{JOB_COMPLETION_INDEX} (Kubernetes does in an Indexed Job)")
    if not index_text.isdigit() or not 0 <= int(index_text) < shards:
        raise ShardError(f"{source} {index_text!r}: expected a shard index from 0 to {shards - 1}")
    return int(index_text), shards


def select(sources: Sequence[T], index: int, shards: int) -> list[T]:
    """The sources of one shard. S3 objects go by key (and version id); local paths by their path."""
    def shard(source: Any) -> int:
        return shard_of(source.key if source.key is not None else source.name, shards, source.version_id)
    return [s for s in sources if shard(s) == index]


def results_key(prefix: str, index: int) -> str:
    return f"{prefix.rstrip('/')}/shard-{index}.jsonl" if prefix.strip("/") else f"shard-{index}.jsonl"


def crash_point(phase: str) -> None:
    if os.environ.get(CRASH_AT) == phase:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Manifest:
    """What one shard did: counts only, never a value."""
    shard: int
    shards: int
    objects: int = 0  # distinct keys
    versions: int = 0  # objects or versions scanned (equal to objects without --versions)
    bytes: int = 0  # as stored (compressed objects count their compressed size)
    summary: Summary = field(default_factory=Summary)
    errors: list[dict[str, str]] = field(default_factory=list)  # {path, reason}: inputs not scanned to their end

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary.to_dict()
        return {"shard": self.shard, "shards": self.shards, "objects": self.objects, "versions": self.versions,
                "bytes": self.bytes, "scanned_bytes": summary["bytes"], "lines": summary["lines"],
                "affected_files": summary["affected_files"], "findings": summary["findings"],
                "counts": summary["counts"], "seconds": summary["seconds"], "errors": self.errors,
                "complete": not self.errors, "finished_at": time.time()}


class ResultWriter:
    """A shard's result file, spooled on local disk while the shard scans (findings can be many: a
    dense log has one every few hundred bytes), then uploaded whole by `commit`."""

    def __init__(self, index: int, shards: int, directory: str | None = None) -> None:
        self.manifest = Manifest(index, shards)
        self._keys: set[str] = set()
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 -- closed by commit/close

    def add(self, findings: Sequence[Finding], source_key: str, size: int, summary: Summary,
            error: str | None, shown_path: str) -> None:
        m = self.manifest
        self._keys.add(source_key)
        m.objects, m.versions, m.bytes = len(self._keys), m.versions + 1, m.bytes + size
        m.summary.add(summary)
        for finding in findings:
            self._file.write(json.dumps(finding._replace(path=shown_path).to_dict()).encode() + b"\n")
        if error:
            m.errors.append({"path": shown_path, "reason": error})
        crash_point(f"scanned-{m.versions}")

    def commit(self, s3: Any, bucket: str, key: str) -> dict[str, Any]:
        """Upload the findings and the manifest line as one object. boto3's upload_fileobj sends one
        PutObject below 8 MB and a multipart upload above: S3 makes either visible only when it is
        complete (a multipart object at CompleteMultipartUpload), and a later PUT to the same key
        replaces it whole, so readers see the previous result or the new one, never a part."""
        document = self.manifest.to_dict()
        self._file.write(json.dumps({"manifest": document}).encode() + b"\n")
        self._file.seek(0)
        crash_point("upload")
        try:
            s3.upload_fileobj(self._file, bucket, key, ExtraArgs={"ContentType": "application/x-ndjson"})
        finally:
            self._file.close()
        return document

    def close(self) -> None:
        self._file.close()


@dataclass
class Merged:
    findings: list[dict[str, Any]]
    manifests: list[dict[str, Any]]
    summary: dict[str, Any]
    errors: list[dict[str, str]]


class MissingShards(Exception):
    def __init__(self, missing: list[int], shards: int) -> None:
        super().__init__(f"{len(missing)} of {shards} shard(s) have no result: {', '.join(map(str, missing))}")
        self.missing = missing


def read_result(body: Iterator[bytes]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    findings: list[dict[str, Any]] = []
    manifest = None
    for line in body:
        if not line.strip():
            continue
        record = json.loads(line)
        if "manifest" in record:
            manifest = record["manifest"]
        else:
            findings.append(record)
    return findings, manifest


def merge(s3: Any, bucket: str, prefix: str, shards: int) -> Merged:
    """Shards 0..N-1 into one report: findings in path order (each path's findings in the order it was
    scanned: a path is in exactly one shard), manifests summed. MissingShards names every shard with no
    complete result (no object, or one without its manifest line)."""
    from botocore.exceptions import ClientError

    results: dict[int, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
    missing = []
    for index in range(shards):
        try:
            body = s3.get_object(Bucket=bucket, Key=results_key(prefix, index))["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                missing.append(index)
                continue
            raise
        findings, manifest = read_result(body.iter_lines())
        if manifest is None or manifest.get("shards") != shards or manifest.get("shard") != index:
            missing.append(index)
            continue
        results[index] = (findings, manifest)
    if missing:
        raise MissingShards(missing, shards)
    findings = [f for index in range(shards) for f in results[index][0]]
    findings.sort(key=lambda f: f["path"])  # stable: within a path, the scan's order
    manifests = [results[index][1] for index in range(shards)]
    counts: Counter[str] = Counter()
    for m in manifests:
        counts.update(m["counts"])
    summary = {key: sum(m[key] for m in manifests)
               for key in ("objects", "versions", "bytes", "scanned_bytes", "lines", "affected_files", "findings")}
    summary["seconds"] = round(sum(m["seconds"] for m in manifests), 3)
    summary["counts"] = dict(sorted(counts.items()))
    errors = [e for m in manifests for e in m["errors"]]
    return Merged(findings, manifests, summary, errors)
