"""Where an environment's backends are, for runbooks: one typed file per environment,
`stacks/targets/<env>.yaml`, filled from the stack's outputs in production (`llmops runbook targets`).

Like the stack config, it is read once and validated strictly: a bad value stops the runbook with
the file, the key and what is expected, before anything is touched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.config.files import ConfigFileError, load_yaml
from components.paths import PROJECT_ROOT, TARGETS_DIR
from runbooks.engine import InputError


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class Registry(_Model):
    tracking_uri: str = Field(min_length=1)


class Kubernetes(_Model):
    context: str | None = None  # a kubeconfig context (aws eks update-kubeconfig --alias ...)
    kubeconfig: str | None = None
    host: str | None = None  # an API URL used without credentials (local test servers only)
    in_cluster: bool = False  # the pod's own service account (the release controller runs in the cluster)
    namespace: str = "serving"

    @model_validator(mode="after")
    def _one_way_in(self) -> Kubernetes:
        if self.host and (self.context or self.kubeconfig):
            raise ValueError("give either host or context/kubeconfig, not both")
        if self.in_cluster and (self.host or self.context or self.kubeconfig):
            raise ValueError("in_cluster uses the pod's service account: give no host, context or kubeconfig with it")
        return self


class Prometheus(_Model):
    url: str = Field(pattern=r"^https?://")


class Aws(_Model):
    region: str
    endpoint_url: str | None = None  # only for local test servers
    # Placeholder keys for a local test server (the sandbox's moto accepts any): `--env sandbox` then works without
    # exporting fake keys. Refused for any endpoint not on this machine; real credentials, when set, still win.
    local_credentials: bool = False

    @model_validator(mode="after")
    def _local_only(self) -> Aws:
        from urllib.parse import urlparse

        host = urlparse(self.endpoint_url).hostname if self.endpoint_url else None
        if self.local_credentials and host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("local_credentials is only for an endpoint_url on this machine (127.0.0.1, localhost)")
        return self


class Lock(_Model):
    table: str | None = None  # DynamoDB table; without one, a file lock under state_dir (one machine only)
    ttl_seconds: int = Field(default=900, ge=60, le=86400)


class Records(_Model):
    uri: str  # a directory, or s3://bucket/prefix
    kms_key_id: str | None = None


class Notifications(_Model):
    topic_arn: str | None = None


class Verification(_Model):
    window_seconds: int = Field(default=300, ge=2, le=86400)  # how long the signals must look right
    timeout_seconds: int = Field(default=900, ge=10, le=86400)
    poll_seconds: float = Field(default=15, gt=0, le=600)


class Rollout(_Model):
    timeout_seconds: int = Field(default=1800, ge=10, le=86400)
    poll_seconds: float = Field(default=5, gt=0, le=600)


class ClusterScan(_Model):
    """`llmops pii scan --on-cluster`: the Indexed Job's namespace, service account (its IAM role reads only
    `readable` and writes only `results`: components/pii_scan.py provisions both), and the plan's figures."""
    results: str = Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/")  # each scan under <results>/<scan-id>/
    readable: list[str] = []  # s3:// prefixes the role may read: a source outside them is refused before submitting
    image: str | None = None  # default: the stack's llmops image (retrieval.freshness, driftMonitor, releaseController)
    namespace: str = "pii-scan"
    service_account: str = "pii-scanner"
    max_pods: int = Field(default=128, ge=1, le=1000)
    backoff_limit_per_index: int = Field(default=2, ge=0, le=10)
    mb_per_second_per_pod: float = Field(default=10.0, gt=0)  # measured: scripts/bench_pii_shards.py (dense logs)
    pod_price_per_hour: float = Field(default=0.048, ge=0)  # one core's share of the nodes' on-demand price
    approval_over_usd: float = Field(default=50.0, ge=0)  # above this estimate, the scan asks before it starts
    poll_seconds: float = Field(default=5, gt=0, le=600)
    timeout_seconds: int = Field(default=86400, ge=60, le=7 * 86400)


class Pii(_Model):
    """Where the PII-incident runbook puts evidence, and how it stops the bleeding."""
    # A bucket created with object lock (versioning on): quarantined copies are held there under legal hold.
    quarantine_bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    quarantine_prefix: str = Field(default="incidents", pattern=r"^[A-Za-z0-9!_.*'()/-]{1,200}$")
    kms_key_id: str | None = None  # for quarantined copies, redacted replacements and the incident record
    # deny-writes: a bucket policy statement denying writes to the prefix (except this runbook's role) while the
    # incident is open, removed at the end. none: the writers are stopped another way.
    containment: str = Field(default="deny-writes", pattern=r"^(deny-writes|none)$")
    # Who must hear about it: the data-protection contact's topic (SNS).
    data_protection_topic_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:sns:")
    scan_workers: int = Field(default=8, ge=1, le=64)
    cluster_scan: ClusterScan | None = None
    # The incident's scan runs on the cluster when the scope (bytes of every version in the window) is larger.
    cluster_scan_over_bytes: int | None = Field(default=None, ge=0)


class RegionTargets(_Model):
    """One region's backends, for runbooks that look at several regions (failover)."""
    kubernetes: Kubernetes
    artifact_bucket: str  # the model registry's artifact bucket there (a replica outside the primary)
    snapshot_bucket: str | None = None  # index snapshots there
    registry: Registry | None = None  # that region's model registry (MLflow), to find a version's artifacts


class FailoverTargets(_Model):
    hosted_zone_id: str = Field(pattern=r"^[A-Z0-9]{1,32}$")
    regions: dict[str, RegionTargets] = Field(min_length=2)
    change_timeout_seconds: int = Field(default=300, ge=10, le=3600)  # until Route53 reports the change INSYNC
    poll_seconds: float = Field(default=5, gt=0, le=60)


class Embedding(_Model):
    """Where embeddings come from for a model that is not `local:`: an OpenAI-compatible endpoint (vLLM)."""
    url: str | None = Field(default=None, pattern=r"^https?://")
    dimension: int | None = Field(default=None, ge=8, le=16384)
    api_key_env: str | None = None  # the environment variable holding its API key, if it needs one


class RetrievalTargets(_Model):
    qdrant_url: str | None = Field(default=None, pattern=r"^https?://")
    qdrant_path: str | None = None  # an embedded Qdrant directory (drills and tests)
    qdrant_api_key_env: str | None = None
    golden_dir: str  # <golden_dir>/<index>.jsonl: the golden queries, versioned with the repository
    config_dir: str | None = None  # <config_dir>/<index>/<version>.yaml: retrieval config versions for --config
    embedding: Embedding = Embedding()
    keep_versions: int = Field(default=2, ge=1, le=20)  # previous versions kept for an instant rollback
    recall_tolerance: float = Field(default=0.02, ge=0, le=1)  # how much lower recall@k a candidate may have

    @model_validator(mode="after")
    def _one_qdrant(self) -> RetrievalTargets:
        if bool(self.qdrant_url) == bool(self.qdrant_path):
            raise ValueError("give exactly one of qdrant_url and qdrant_path")
        return self


class DriftTargets(_Model):
    """Where drift references live, where the monitor answers, where the request logs are (for evidence)."""
    references: str = Field(min_length=1)  # s3://bucket/prefix (the stack's), or a directory (drills, tests)
    monitor_url: str | None = Field(default=None, pattern=r"^https?://")  # the region's `llmops drift watch`
    logs: str | None = None  # the request logs: s3://bucket/prefix or a directory (JSON lines)
    embedding: Embedding = Embedding()  # for a model whose embedding model is not local:
    # Where retraining requests are recorded (besides the notification); default: the evidence store.
    retraining_requests: str | None = None


class Targets(_Model):
    environment: str
    stack_file: str
    aws: Aws
    # Each runbook needs some of these; a missing one is reported by the runbook that needs it.
    registry: Registry | None = None
    kubernetes: Kubernetes | None = None
    prometheus: Prometheus | None = None
    pii: Pii | None = None
    failover: FailoverTargets | None = None
    retrieval: RetrievalTargets | None = None
    drift: DriftTargets | None = None
    # The serving request logs (every track's records, as Fluent Bit ships them): s3://bucket/requests/ or a directory.
    request_logs: str | None = None
    lock: Lock = Lock()
    audit: Records
    evidence: Records
    state_dir: str = "~/.llmops/runs"
    notifications: Notifications = Notifications()
    pushgateway: str | None = None
    verification: Verification = Verification()
    rollout: Rollout = Rollout()

    def stack_path(self) -> Path:
        """The environment's stack file; a relative `stack_file` is relative to the project root."""
        path = Path(self.stack_file).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path


def require(targets: Targets, runbook: str, *sections: str) -> None:
    """InputError naming every section of the targets file this runbook needs and does not find."""
    missing = [s for s in sections if getattr(targets, s) is None]
    if missing:
        raise InputError(f"stacks/targets/{targets.environment}.yaml: the {runbook} runbook needs "
                         f"{', '.join(missing)}: missing from the targets file")


ENVIRONMENT_PATTERN = r"[a-z0-9][a-z0-9-]{0,30}"


def environment_name(value: str) -> str:
    """An environment's name (the stem of its targets file): a name, never a path (`--env ../../x` is refused)."""
    if not re.fullmatch(ENVIRONMENT_PATTERN, value):
        raise ValueError("expected an environment name of lowercase letters, digits and '-' (at most 31), "
                         "e.g. prod: the stem of stacks/targets/<env>.yaml")
    return value


def targets_dir() -> Path:
    """LLMOPS_TARGETS_DIR points elsewhere (drills, tests); by default, the project's stacks/targets."""
    return Path(os.environ.get("LLMOPS_TARGETS_DIR") or TARGETS_DIR)


def load_targets(environment: str, directory: Path | None = None) -> Targets:
    directory = directory or targets_dir()
    try:
        environment_name(environment)
    except ValueError as error:
        raise InputError(f"--env {environment!r}: {error}") from None
    path = directory / f"{environment}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []
        raise InputError(f"--env {environment!r}: no targets file {path}; environments: {', '.join(known) or 'none'}")
    try:
        data: Any = load_yaml(path)  # the stack files' loader: duplicate keys, encodings and alias bombs refused
        targets = Targets.model_validate(data)
    except ConfigFileError as error:
        raise InputError(str(error)) from None
    except ValidationError as error:
        lines = [f"{path}: {'.'.join(map(str, e['loc']))} = {e.get('input')!r}: {e['msg']}" for e in error.errors()]
        raise InputError("\n".join(lines)) from None
    if targets.environment != environment:
        raise InputError(f"{path}: environment = {targets.environment!r}: expected {environment!r}")
    if targets.aws.local_credentials:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(key, "sandbox")  # this process only; a value already set is kept
    return targets


def targets_from_outputs(environment: str, outputs: dict[str, Any], *, stack_file: str, prometheus_url: str) -> dict[str, Any]:
    """A targets document from the stack's outputs (`pulumi stack output --json`), for the primary region."""
    primary = outputs["primaryRegion"]
    region = outputs["regions"][primary]
    operations = region["operations"]
    document = {
        "environment": environment,
        "stack_file": stack_file,
        # In-cluster address; from a workstation, port-forward it and override this value.
        "registry": {"tracking_uri": region["registry"]["trackingUri"]},
        # The kubeconfig context `aws eks update-kubeconfig --name <cluster> --alias <cluster>` creates.
        "kubernetes": {"context": region["clusterName"], "namespace": region.get("servingNamespace", "serving")},
        "prometheus": {"url": prometheus_url},
        "aws": {"region": primary},
        "lock": {"table": operations["lockTable"]},
        "audit": {"uri": f"s3://{operations['evidenceBucket']}/audit", "kms_key_id": operations["keyArn"]},
        "evidence": {"uri": f"s3://{operations['evidenceBucket']}", "kms_key_id": operations["keyArn"]},
        "notifications": {"topic_arn": operations["topicArn"]},
    }
    failover = outputs.get("failover")
    if failover:
        document["failover"] = {"hosted_zone_id": failover["hostedZoneId"], "regions": {
            name: {"kubernetes": {"context": r["clusterName"], "namespace": r.get("servingNamespace", "serving")},
                   "artifact_bucket": r["registry"]["artifactBucket"], "snapshot_bucket": r.get("snapshotBucket"),
                   "registry": {"tracking_uri": r["registry"]["trackingUri"]}}
            for name, r in outputs["regions"].items()}}
    # In-cluster address; from a workstation, port-forward it and override. Golden queries and config versions are
    # versioned with the repository, one file per index.
    document["retrieval"] = {"qdrant_url": "http://qdrant.retrieval.svc:6333", "qdrant_api_key_env": "QDRANT_API_KEY",
                             "golden_dir": "stacks/retrieval/golden", "config_dir": "stacks/retrieval/configs"}
    logs = region.get("requestLogs") or {}
    if logs.get("uri"):
        document["request_logs"] = logs["uri"]  # the primary region's; a comparison in another region overrides it
    if operations.get("piiQuarantineBucket"):
        # Add data_protection_topic_arn: the data-protection contact's topic is the organisation's, not the stack's.
        pii: dict[str, Any] = {"quarantine_bucket": operations["piiQuarantineBucket"], "kms_key_id": operations["keyArn"]}
        scan = region.get("piiScan") or {}
        if scan.get("results"):  # the primary region's Indexed Job scans (llmops pii scan --on-cluster)
            pii["cluster_scan"] = {"results": scan["results"], "readable": list(scan.get("readable") or []),
                                   "namespace": scan["namespace"], "service_account": scan["serviceAccount"]}
        document["pii"] = pii
    Targets.model_validate(document)  # what we write must load
    return document
