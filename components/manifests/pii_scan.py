"""A PII scan of an S3 prefix as a Kubernetes Indexed Job: N pods, each `llmops pii scan --shards N` with its index
in JOB_COMPLETION_INDEX (Kubernetes sets it), each writing `<results>/shard-<I>.jsonl` -- the scheduler is the Job
controller's, not ours. Plain Python objects, validated against the cluster's schemas; the stack provisions the
namespace, the service account and its IAM role (components/pii_scan.py), the CLI submits the Job per scan.

Why these settings:
- `backoffLimitPerIndex`: a pod that fails is retried for its own index only, and the Job records an index that
  failed every retry in `status.failedIndexes`, so only that shard need be rerun.
- `maxFailedIndexes`: past this many failed indexes the Job stops: a broken scope (permissions, a wrong prefix)
  fails fast instead of running every shard to its retries.
- `podFailurePolicy`: exit 2 (bad usage or input) fails the index at once, since a retry cannot fix it; a pod evicted
  or preempted (condition DisruptionTarget) is retried without counting against the index's retries.
- One core and requests equal to limits: the scanner is CPU-bound on one core (its threads only overlap reads),
  and a Guaranteed pod is the last evicted. The result is spooled in an emptyDir (/tmp) before its one upload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.manifests.labels import standard_labels
from components.manifests.workload import (
    container_security_context,
    pod_security_context,
    resources,
    scratch_volume,
    service_account,
)

NAMESPACE = "pii-scan"
SERVICE_ACCOUNT = "pii-scanner"
CONTAINER = "scan"
COMPONENT = "pii-scan"
SCAN_ID_LABEL = "llmops.io/pii-scan-id"
EXIT_BAD_INPUT = 2  # `llmops pii scan`'s exit code for bad usage or input: retrying cannot help


@dataclass(frozen=True)
class ScanJobSpec:
    scan_id: str  # [a-z0-9-], names the Job and the results prefix
    source: str  # s3://bucket/prefix/
    results: str  # s3://bucket/prefix/<scan-id>/
    shards: int
    image: str
    region: str
    tags: Mapping[str, str]
    versions: bool = False
    backoff_limit_per_index: int = 2
    max_failed_indexes: int | None = None  # default: a tenth of the shards, at least 1
    cpu: str = "1"
    memory: str = "1Gi"
    scratch: str = "2Gi"  # the spooled result: findings are about 1% of the bytes scanned in a dense log
    workers: int = 4  # threads per pod: they overlap S3 reads with the one core's scanning
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int = 7 * 86400
    namespace: str = NAMESPACE
    service_account: str = SERVICE_ACCOUNT
    extra_args: Sequence[str] = field(default_factory=tuple)


def job_name(scan_id: str) -> str:
    return f"pii-scan-{scan_id}"[:63].rstrip("-")


def scan_job(spec: ScanJobSpec) -> dict[str, Any]:
    """The Indexed Job of one scan."""
    if spec.shards < 1:
        raise ValueError(f"{spec.shards} shards: expected at least 1")
    labels = {**standard_labels(job_name(spec.scan_id), COMPONENT, spec.tags), SCAN_ID_LABEL: spec.scan_id}
    labels["app.kubernetes.io/managed-by"] = "llmops"  # submitted per scan by the CLI, not by Pulumi
    max_failed = spec.max_failed_indexes if spec.max_failed_indexes is not None else max(1, spec.shards // 10)
    args = ["pii", "scan", spec.source, "--shards", str(spec.shards), "--results", spec.results, "--output", "none",
            "--workers", str(spec.workers), *(["--versions"] if spec.versions else []), *spec.extra_args]
    container = {
        "name": CONTAINER,
        "image": spec.image,
        "command": ["llmops"],
        "args": args,
        "env": [{"name": "AWS_REGION", "value": spec.region}, {"name": "TMPDIR", "value": "/tmp"}],
        "resources": resources(spec.cpu, spec.memory),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": spec.shards,
        "parallelism": spec.shards,
        "backoffLimitPerIndex": spec.backoff_limit_per_index,
        "maxFailedIndexes": min(max_failed, spec.shards),
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "podFailurePolicy": {"rules": [
            {"action": "FailIndex",
             "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_BAD_INPUT]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",  # required by backoffLimitPerIndex and podFailurePolicy
                "serviceAccountName": spec.service_account,
                # No Kubernetes API token: the scan needs none. EKS still projects the IRSA web identity token.
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(fs_group=False),
                "containers": [container],
                "volumes": [scratch_volume("tmp", spec.scratch)],
            },
        },
    }
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(spec.scan_id), "namespace": spec.namespace, "labels": labels},
            "spec": job_spec}


def scanner_service_account(tags: Mapping[str, str], role_arn: str) -> dict[str, Any]:
    return service_account(SERVICE_ACCOUNT, NAMESPACE, standard_labels(SERVICE_ACCOUNT, COMPONENT, tags), role_arn)


def _arn_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return f"arn:aws:s3:::{bucket}", prefix


def iam_statements(*, sources: Sequence[str], results: str, region: str,
                   key_arns: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Read (objects and their versions) under the source prefixes and nothing else; write under the results
    prefix and nothing else; the buckets' keys only through S3 in this region."""
    statements: list[dict[str, Any]] = []
    for index, uri in enumerate(sources):
        bucket_arn, prefix = _arn_prefix(uri)
        statements += [
            {"Sid": f"ReadSource{index}", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "Resource": f"{bucket_arn}/{prefix}*"},
            {"Sid": f"ListSource{index}", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
             "Resource": bucket_arn, "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
        ]
    bucket_arn, prefix = _arn_prefix(results)
    statements.append({"Sid": "WriteResults", "Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                       "Resource": f"{bucket_arn}/{prefix}*"})
    if key_arns:
        statements.append({"Sid": "BucketKeys", "Effect": "Allow",
                           "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": list(key_arns),
                           "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}})
    return statements
