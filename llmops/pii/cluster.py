"""A sharded PII scan on the cluster: estimate it, submit it as an Indexed Job, follow it, merge its shards.

The Job is components/manifests/pii_scan.py's; the shards and their merge are llmops/pii/shards.py's. What this
module adds is the plan (time and cost before anything starts: bytes / per-pod throughput / pods, the instance
price from the targets), and the wait: the Job's status as the Job controller writes it -- `completedIndexes` and
`failedIndexes` (e.g. "0-3,7"), and its Complete / Failed conditions -- read until the Job has finished --
and the bytes scanned so far, from the manifest line of each shard result as its index completes.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from components.manifests.pii_scan import NAMESPACE, SERVICE_ACCOUNT, ScanJobSpec, job_name, scan_job

# Measured with scripts/bench_pii_shards.py on one core (see the README); used when the targets give no rate.
DEFAULT_MB_PER_SECOND_PER_POD = 10.0


@dataclass(frozen=True)
class ClusterSettings:
    """From the targets file's pii.cluster_scan section (the CLI reads it; this layer reads no files)."""
    image: str
    results: str  # s3://bucket/prefix/ : each scan writes under <results>/<scan-id>/
    region: str
    tags: dict[str, str]
    readable: tuple[str, ...] = ()  # s3:// prefixes the scanner's role may read; empty: not checked here
    namespace: str = NAMESPACE
    service_account: str = SERVICE_ACCOUNT
    max_pods: int = 128
    backoff_limit_per_index: int = 2
    mb_per_second_per_pod: float = DEFAULT_MB_PER_SECOND_PER_POD
    pod_price_per_hour: float = 0.048  # a quarter of an m6i.xlarge on demand (4 vCPU, $0.192/h): one core's share
    approval_over_usd: float = 50.0
    startup_seconds: float = 60.0  # scheduling, image pull, listing: added once


@dataclass(frozen=True)
class Estimate:
    bytes: int
    objects: int
    pods: int
    seconds: float
    cost_usd: float

    def describe(self) -> str:
        return (f"{self.objects} object(s), {self.bytes / 1e9:.2f} GB on {self.pods} pod(s): about "
                f"{_duration(self.seconds)}, about ${self.cost_usd:.2f}")


def estimate(scope_bytes: int, objects: int, pods: int, settings: ClusterSettings) -> Estimate:
    """Wall time = startup + bytes / (per-pod rate x pods); cost = pods x that time x the pod's hourly price.
    A shard takes whole objects, so one object larger than a pod's share bounds the time from below."""
    rate = settings.mb_per_second_per_pod * 1e6
    seconds = settings.startup_seconds + scope_bytes / (rate * pods)
    return Estimate(scope_bytes, objects, pods, seconds, pods * seconds / 3600 * settings.pod_price_per_hour)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def new_scan_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dt%H%M%Sz}-{secrets.token_hex(3)}"


SCAN_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")


def results_uri(settings: ClusterSettings, scan_id: str) -> str:
    return f"{settings.results.rstrip('/')}/{scan_id}/"


def readable(settings: ClusterSettings, source: str) -> bool:
    """Whether the scanner's role may read the source (it lies under one of the provisioned prefixes)."""
    return not settings.readable or any(source.startswith(prefix) for prefix in settings.readable)


def job_for(settings: ClusterSettings, *, scan_id: str, source: str, shards: int, versions: bool = False,
            extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    if shards > settings.max_pods:
        raise ValueError(f"{shards} shards: at most {settings.max_pods} (pii.cluster_scan.max_pods)")
    return scan_job(ScanJobSpec(
        scan_id=scan_id, source=source, results=results_uri(settings, scan_id), shards=shards, image=settings.image,
        region=settings.region, tags=settings.tags, versions=versions,
        backoff_limit_per_index=settings.backoff_limit_per_index, namespace=settings.namespace,
        service_account=settings.service_account, extra_args=extra_args))


def indexes(text: str | None) -> set[int]:
    """The Job status's index sets: "0-3,7" -> {0, 1, 2, 3, 7}."""
    found: set[int] = set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


@dataclass(frozen=True)
class JobState:
    shards: int
    done: frozenset[int]
    failed: frozenset[int]
    finished: bool  # the Job has a Complete or Failed condition
    failed_reason: str | None = None  # the Failed condition's reason (MaxFailedIndexesExceeded, DeadlineExceeded...)

    @property
    def complete(self) -> bool:
        return self.finished and len(self.done) == self.shards


def job_state(job: Any, shards: int) -> JobState:
    """From a Job read through the official client (a V1Job) or as a dict."""
    status = job.get("status") if isinstance(job, dict) else job.status
    if status is None:
        return JobState(shards, frozenset(), frozenset(), False)
    get = status.get if isinstance(status, dict) else lambda name: getattr(status, _snake(name))
    conditions = get("conditions") or []
    finished, reason = False, None
    for condition in conditions:
        kind = condition["type"] if isinstance(condition, dict) else condition.type
        state = condition["status"] if isinstance(condition, dict) else condition.status
        if state == "True" and kind in ("Complete", "Failed"):
            finished = True
            if kind == "Failed":
                reason = (condition.get("reason") if isinstance(condition, dict) else condition.reason) or "Failed"
    return JobState(shards, frozenset(indexes(get("completedIndexes"))), frozenset(indexes(get("failedIndexes"))),
                    finished, reason)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def submit(batch: Any, job: dict[str, Any]) -> None:
    batch.create_namespaced_job(job["metadata"]["namespace"], job, _request_timeout=30)


def wait(batch: Any, name: str, namespace: str, shards: int, *, poll_seconds: float = 5.0,
         timeout_seconds: float = 86400.0, on_change: Callable[[JobState], None] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> JobState:
    """Poll the Job until it has finished (or the timeout: TimeoutError); on_change on each new state."""
    deadline = time.monotonic() + timeout_seconds
    last: JobState | None = None
    while True:
        state = job_state(batch.read_namespaced_job_status(name, namespace, _request_timeout=30), shards)
        if state != last and on_change is not None:
            on_change(state)
        last = state
        if state.finished:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {namespace}/{name} has not finished within {timeout_seconds:g} s: "
                               f"{len(state.done)} of {shards} shard(s) done, {len(state.failed)} failed")
        sleep(poll_seconds)


# A manifest line is about 400 bytes plus its errors; findings before it can be megabytes.
MANIFEST_TAIL_BYTES = 64 * 1024


def read_manifest(s3: Any, bucket: str, key: str, tail: int = MANIFEST_TAIL_BYTES) -> dict[str, Any] | None:
    """A shard result's manifest -- its last line -- from a ranged GET of the object's tail (`bytes=-N`: the
    last N bytes, or the whole object when it is smaller), not the whole object: a shard's findings can be
    megabytes, its manifest is usually under a kilobyte. When the tail holds no line break before the last line
    (a manifest with many errors), the range widens, pinned to the same object by its ETag. None: the last
    line is not a manifest. Raises what S3 and json raise."""
    pinned: dict[str, str] = {}
    while True:
        response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{tail}", **pinned)
        data = response["Body"].read()
        size = _object_size(response.get("ContentRange"), len(data))
        text = data.rstrip(b"\n")
        cut = text.rfind(b"\n")
        if cut >= 0 or len(data) >= size:
            record = json.loads(text[cut + 1:])
            manifest = record.get("manifest") if isinstance(record, dict) else None
            return manifest if isinstance(manifest, dict) else None
        pinned = {"IfMatch": response["ETag"]}  # a rerun shard replaces the object whole: not a mix of two
        tail *= 16


def _object_size(content_range: str | None, received: int) -> int:
    """From `bytes 100-199/200`; without one the response was the whole object."""
    if not content_range or "/" not in content_range:
        return received
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else received


class ScannedBytes:
    """The bytes a cluster scan has scanned so far, for its progress: as indexes complete, each newly completed
    shard's manifest is read once (read_manifest) and its bytes added. A shard whose manifest cannot be read
    counts as unknown -- reported once, never fatal: the merge at the end is the source of truth."""

    def __init__(self, s3: Any, results: str, shards: int, total: int) -> None:
        from llmops.pii.sources import parse_s3_uri

        self.s3, self.shards, self.total = s3, shards, total
        self.bucket, self.prefix = parse_s3_uri(results)
        self.by_shard: dict[int, int] = {}
        self.unknown: dict[int, str] = {}  # shard -> why its bytes are unknown

    @property
    def scanned(self) -> int:
        return sum(self.by_shard.values())

    def update(self, state: JobState) -> list[tuple[int, str]]:
        """Read the manifests of the indexes completed since the last update; the shards newly unknown, why."""
        from botocore.exceptions import BotoCoreError, ClientError

        from llmops.pii.shards import results_key

        unknown: list[tuple[int, str]] = []
        for index in sorted(state.done - self.by_shard.keys() - self.unknown.keys()):
            try:
                manifest = read_manifest(self.s3, self.bucket, results_key(self.prefix, index))
                if manifest is None or manifest.get("shard") != index or manifest.get("shards") != self.shards:
                    raise ValueError("its last line is not this shard's manifest")
                scanned = manifest["bytes"]
                if not isinstance(scanned, int) or isinstance(scanned, bool) or scanned < 0:
                    raise ValueError(f"its manifest's bytes are {scanned!r}")
            except ClientError as error:
                reason = error.response.get("Error", {}).get("Code") or str(error)
            except (BotoCoreError, ValueError, KeyError, TypeError) as error:
                reason = str(error) or type(error).__name__
            else:
                self.by_shard[index] = scanned
                continue
            self.unknown[index] = reason
            unknown.append((index, reason))
        return unknown

    def describe(self) -> str:
        """`1,234 of 5,678 bytes scanned (22%)`, and how many shards' bytes are unknown."""
        share = f" ({100 * self.scanned / self.total:.0f}%)" if self.total else ""
        unknown = f", bytes unknown for {len(self.unknown)} shard(s)" if self.unknown else ""
        return f"{self.scanned:,} of {self.total:,} bytes scanned{share}{unknown}"


def scope(s3: Any, bucket: str, prefix: str, versions: bool = False) -> tuple[int, int]:
    """(objects, bytes) under a prefix, from the listing alone (what a scan will read)."""
    from llmops.pii.sources import s3_objects, s3_versions

    listed = s3_versions(s3, bucket, prefix) if versions else s3_objects(s3, bucket, prefix)
    objects = total = 0
    for item in listed:
        objects += 1
        total += item["Size"]
    return objects, total


def pods_for(scope_bytes: int, settings: ClusterSettings, target_seconds: float = 3600.0) -> int:
    """Enough pods to scan the scope in about target_seconds, within max_pods."""
    needed = scope_bytes / (settings.mb_per_second_per_pod * 1e6 * target_seconds)
    return max(1, min(settings.max_pods, math.ceil(needed)))


__all__ = ["ClusterSettings", "Estimate", "JobState", "ScannedBytes", "estimate", "indexes", "job_for", "job_name",
           "job_state", "new_scan_id", "pods_for", "read_manifest", "readable", "results_uri", "scope", "submit",
           "wait"]
