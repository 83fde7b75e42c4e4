"""The sections of a stack file, one typed model each (regions, network, cluster, GPU pools, models, serving,
registry, feature store, retrieval, alerting, policy, failover): what a key may hold, checked where it is
declared. Checks that cross sections live in `checks.py`."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.config.base import (
    KUBERNETES_VERSIONS,
    LOG_RETENTION_DAYS,
    TTFT_BUCKETS,
    CpuInstanceType,
    DnsLabel,
    GpuInstanceType,
    PinnedImage,
    RegionName,
    RoleArn,
    Section,
    invalid,
)
from components.config.drift import Drift
from components.config.rollout import Rollout
from components.instance_types import GPU_INSTANCE_TYPES
from components.manifests.route import TOTAL_WEIGHT, canary_takes_traffic


class Regions(Section):
    allowed: list[RegionName] = Field(min_length=1)
    primary: str
    secondaries: list[str] = []

    @model_validator(mode="after")
    def _within_allowed(self) -> Regions:
        allowed = ", ".join(self.allowed)
        if self.primary not in self.allowed:
            raise invalid("primary", self.primary, f"expected one of the allowed regions: {allowed}")
        for index, region in enumerate(self.secondaries):
            if region not in self.allowed:
                raise invalid(f"secondaries[{index}]", region, f"expected one of the allowed regions: {allowed}")
            if region == self.primary or self.secondaries.index(region) != index:
                raise invalid(f"secondaries[{index}]", region, "expected each region once, and not the primary")
        return self

    @property
    def all(self) -> list[str]:
        return [self.primary, *self.secondaries]


class Network(Section):
    vpc_cidrs: dict[str, str]
    availability_zones: int = Field(default=3, ge=2, le=6)
    nat_gateways: Literal["single", "per-az"] = "per-az"


class NodeScaling(Section):
    min_size: int = Field(ge=0, le=450)
    desired_size: int = Field(ge=0, le=450)
    max_size: int = Field(ge=1, le=450)

    @model_validator(mode="after")
    def _ordered(self) -> NodeScaling:
        if self.min_size > self.max_size:
            raise invalid("minSize", self.min_size, f"expected minSize <= maxSize ({self.max_size})")
        if not self.min_size <= self.desired_size <= self.max_size:
            raise invalid("desiredSize", self.desired_size,
                           f"expected minSize ({self.min_size}) <= desiredSize <= maxSize ({self.max_size})")
        return self


class SystemPool(NodeScaling):
    instance_types: list[CpuInstanceType] = Field(min_length=1)
    root_volume_gib: int = Field(default=50, ge=20, le=1024)
    min_size: int = Field(default=2, ge=1, le=450)


class Cluster(Section):
    kubernetes_version: str
    endpoint_public_access: bool = False
    public_access_cidrs: list[str] = []
    log_retention_days: int = 90
    admin_role_arns: list[RoleArn] = []
    system_pool: SystemPool

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _supported_version(cls, version: Any) -> str:
        if version not in KUBERNETES_VERSIONS:
            raise invalid(None, version, "expected one of " + ", ".join(KUBERNETES_VERSIONS) + " (quoted, as a string)")
        return version

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise invalid(None, days, "expected a CloudWatch retention period: " + ", ".join(map(str, LOG_RETENTION_DAYS)))
        return days

    @model_validator(mode="after")
    def _allow_list_only_when_public(self) -> Cluster:
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise invalid("publicAccessCidrs", [], "expected at least one CIDR when endpointPublicAccess is true; "
                           "a public endpoint without an allow-list is open to the internet")
        if self.public_access_cidrs and not self.endpoint_public_access:
            raise invalid("publicAccessCidrs", self.public_access_cidrs, "expected no CIDRs while endpointPublicAccess is false")
        for index, cidr in enumerate(self.public_access_cidrs):
            network = parse_cidr(cidr)
            if network is None or network.prefixlen == 0:
                raise invalid(f"publicAccessCidrs[{index}]", cidr,
                              "expected an IPv4 CIDR narrower than 0.0.0.0/0, e.g. 203.0.113.0/24")
        return self


class GpuPool(NodeScaling):
    name: DnsLabel
    instance_types: list[GpuInstanceType] = Field(min_length=1)
    capacity_type: Literal["spot", "on-demand"]
    root_volume_gib: int = Field(default=200, ge=100, le=16384)
    gpus_per_node: int = Field(ge=1, le=16)

    @field_validator("instance_types")
    @classmethod
    def _one_gpu_model(cls, types: list[str]) -> list[str]:
        gpus = {GPU_INSTANCE_TYPES[t].gpu for t in types}
        if len(gpus) > 1:
            raise invalid(None, types, "expected instance types with the same GPU model; got " + ", ".join(sorted(gpus)))
        return types

    @model_validator(mode="after")
    def _gpus_match_instances(self) -> GpuPool:
        for instance_type in self.instance_types:
            actual = GPU_INSTANCE_TYPES[instance_type].gpus
            if actual != self.gpus_per_node:
                raise invalid("gpusPerNode", self.gpus_per_node, f"expected {actual}, the GPU count of {instance_type}")
        return self

    @property
    def gpu(self) -> str:
        return GPU_INSTANCE_TYPES[self.instance_types[0]].gpu

    @property
    def smallest_instance(self) -> str:
        return min(self.instance_types, key=lambda t: (GPU_INSTANCE_TYPES[t].vcpus, GPU_INSTANCE_TYPES[t].memory_gib))


class RegistryRef(Section):
    model: str = Field(min_length=1)
    alias: str = Field(default="production", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,254}$")


class Availability(Section):
    objective: float = Field(gt=90, lt=100)


class TimeToFirstToken(Section):
    objective: float = Field(gt=50, lt=100)
    threshold_seconds: float

    @field_validator("threshold_seconds")
    @classmethod
    def _bucket_bound(cls, seconds: float) -> float:
        if seconds not in TTFT_BUCKETS:
            raise invalid(None, seconds, "expected a bucket bound of vllm:time_to_first_token_seconds: "
                           + ", ".join(f"{b:g}" for b in TTFT_BUCKETS))
        return seconds


class Slo(Section):
    availability: Availability
    time_to_first_token: TimeToFirstToken
    window_days: int = Field(default=30, ge=7, le=90)
    # Below this many requests per second burn-rate alerts stay silent: a handful of
    # failures out of a handful of requests is not a page.
    min_request_rate: float = Field(default=0.1, ge=0)


class Release(Section):
    """What a serving release is made of; any change to any part is a new release."""
    version: str = Field(pattern=r"^[1-9][0-9]{0,9}$")  # the registry model version
    prompt_version: str = Field(default="none", min_length=1, max_length=63)
    feature_view: str | None = Field(default=None, min_length=1, max_length=127)
    retrieval_index: str | None = None


class Sticky(Section):
    """A sticky canary: requests carrying `header` (bucket(key) = hash(key) mod 100 of a user or session id, from
    llmops.release.sticky) always reach the same track; requests without it are weighted as usual."""
    header: str = Field(default="x-llmops-bucket", pattern=r"^[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?$")


class Canary(Section):
    release: Release
    weight: int = Field(ge=0, le=TOTAL_WEIGHT)  # percent of requests routed to the canary; the stable gets the rest
    replicas: int = Field(default=1, ge=1, le=16)
    sticky: Sticky | None = None  # opt-in: the same key always reaches the same track


class Shadow(Section):
    """A release answering a mirrored share of the model's requests: its answers are logged, never returned."""
    release: Release
    replicas: int = Field(default=1, ge=1, le=16)
    sample_percent: int = Field(ge=1, le=100)  # of the model's requests mirrored to the shadow


class Startup(Section):
    """The startup-probe budget: time to load weights from local disk into GPUs, plus a fixed part
    (engine start, CUDA graph capture). Derived from the model size, never a constant."""
    base_seconds: int = Field(default=180, ge=30, le=3600)
    seconds_per_gib: float = Field(default=4.0, gt=0, le=120)


class Resources(Section):
    cpu: int = Field(ge=1, le=192)
    memory_gib: int = Field(ge=4, le=2048)


class Model(Section):
    name: DnsLabel
    registry: RegistryRef
    image: PinnedImage
    pool: str
    tensor_parallel_size: int = Field(default=1)
    max_model_len: int = Field(ge=256, le=1_048_576)
    replicas: int = Field(default=1, ge=1, le=64)  # the floor the autoscaler keeps
    max_replicas: int | None = Field(default=None, ge=1, le=64)  # the autoscaler's ceiling; default: replicas
    size_gib: int = Field(ge=1, le=4096)  # the weights on disk
    gpu_memory_utilization: float = Field(default=0.9, ge=0.5, le=0.95)
    queue_depth_target: int = Field(default=5, ge=1, le=1000)  # waiting requests per replica before scaling out
    release: Release
    canary: Canary | None = None
    shadow: Shadow | None = None  # a release that gets a mirrored share of the requests; its answers are discarded
    rollout: Rollout | None = None  # how the release controller promotes a canary; none: people do it by hand
    drift: Drift | None = None  # what the drift monitor judges; none: no drift monitoring
    startup: Startup = Startup()
    resources: Resources | None = None  # default: the replica's share of the node
    slo: Slo

    @field_validator("tensor_parallel_size")
    @classmethod
    def _power_of_two(cls, size: int) -> int:
        if size not in (1, 2, 4, 8, 16):
            raise invalid(None, size, "expected 1, 2, 4, 8 or 16 (GPUs per replica, on one node)")
        return size

    @model_validator(mode="after")
    def _coherent(self) -> Model:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise invalid("maxReplicas", self.max_replicas, f"expected maxReplicas >= replicas ({self.replicas})")
        if self.canary is not None and self.canary.release == self.release:
            raise invalid("canary.release", self.canary.release.model_dump(by_alias=True, exclude_none=True),
                           "expected a release that differs from the stable release")
        if self.shadow is not None:
            shadow = self.shadow.release
            if shadow == self.release:
                raise invalid("shadow.release", shadow.model_dump(by_alias=True, exclude_none=True),
                              "expected a release that differs from the stable release")
            if self.canary is not None and shadow == self.canary.release:
                raise invalid("shadow.release", shadow.model_dump(by_alias=True, exclude_none=True),
                              "expected a release that differs from the canary release (a canary already serves it)")
        return self

    @property
    def ceiling(self) -> int:
        return self.max_replicas or self.replicas

    @property
    def active_canary(self) -> Canary | None:
        """The canary, when there is one that takes traffic (weight 0 means none)."""
        return self.canary if self.canary is not None and canary_takes_traffic(self.canary.weight) else None

    def shadow_gpus(self) -> int:
        """GPUs the shadow holds (0 without one): what mirroring costs."""
        return (self.shadow.replicas if self.shadow else 0) * self.tensor_parallel_size

    def peak_gpus(self) -> int:
        """GPUs the model can hold at once without a rollout: stable at its ceiling plus the canary and the shadow."""
        canary = self.active_canary.replicas if self.active_canary else 0
        return (self.ceiling + canary) * self.tensor_parallel_size + self.shadow_gpus()

    def deployments(self) -> int:
        """Its Deployments that hold GPUs: stable, and the canary and the shadow where there are."""
        return 1 + (1 if self.active_canary else 0) + (1 if self.shadow else 0)


class Serving(Section):
    domain: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    gateway_class_name: str = Field(min_length=1, max_length=253)
    tls_secret_name: str = Field(default="inference-tls", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    prometheus_url: str = Field(pattern=r"^https?://[^\s]+$")  # where KEDA reads the queue depth


class Database(Section):
    instance_class: str = Field(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    allocated_storage_gib: int = Field(default=50, ge=20, le=65536)
    engine_version: str = Field(default="16.6", pattern=r"^1[4-7](\.[0-9]+)?$")
    backup_retention_days: int = Field(default=7, ge=1, le=35)
    multi_az: bool | None = None  # default: true in prod


class Registry(Section):
    image: PinnedImage  # MLflow with psycopg2 and boto3 (components/images/mlflow.Dockerfile)
    replicas: int = Field(default=2, ge=1, le=10)
    database: Database


class Redis(Section):
    node_type: str = Field(pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    engine_version: str = Field(default="7.1", pattern=r"^[67](\.[0-9]+)?$")
    nodes: int | None = Field(default=None, ge=1, le=6)  # default: 1 in dev, 2 elsewhere (a primary and a replica)


class FeatureStore(Section):
    image: PinnedImage  # Feast with the aws and redis extras (components/images/feast.Dockerfile)
    project: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    replicas: int = Field(default=2, ge=1, le=10)
    materialize_schedule: str = Field(default="*/15 * * * *", pattern=r"^(\S+\s+){4}\S+$")
    redis: Redis


class IndexConfig(Section):
    """How an index is built; its fingerprint is part of every release that reads from it."""
    name: DnsLabel
    embedding_model: str = Field(min_length=1, max_length=200)
    chunker: Literal["recursive", "sentence", "fixed"]
    chunk_size: int = Field(ge=32, le=8192)
    chunk_overlap: int = Field(ge=0, le=4096)
    normalisation: Literal["none", "nfkc", "nfkc-lower"]
    top_k: int = Field(default=8, ge=1, le=100)
    # Where its documents are (s3://bucket/prefix): the freshness CronJob compares the index with it. Not part of
    # the fingerprint: moving the corpus does not change how the index is built.
    corpus: str | None = Field(default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]*$")

    @model_validator(mode="after")
    def _overlap_smaller_than_chunk(self) -> IndexConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise invalid("chunkOverlap", self.chunk_overlap, f"expected less than chunkSize ({self.chunk_size})")
        return self


class Freshness(Section):
    """The freshness CronJob: `llmops retrieval freshness` for every index with a corpus, on a schedule."""
    image: PinnedImage  # this project's image (components/images/llmops.Dockerfile)
    pushgateway: str = Field(pattern=r"^https?://[^\s]+$")
    schedule: str = Field(default="*/15 * * * *", pattern=r"^(\S+\s+){4}\S+$")


class Retrieval(Section):
    image: PinnedImage  # Qdrant, the -unprivileged variant (runs as a non-root user)
    replicas: int = Field(default=1, ge=1, le=9)
    storage_gib: int = Field(default=50, ge=10, le=16384)
    snapshot_schedule: str = Field(default="0 */6 * * *", pattern=r"^(\S+\s+){4}\S+$")
    indexes: list[IndexConfig] = Field(min_length=1)
    freshness: Freshness | None = None

    @model_validator(mode="after")
    def _freshness_has_a_corpus(self) -> Retrieval:
        if self.freshness is not None and not any(index.corpus for index in self.indexes):
            raise invalid("freshness", self.freshness.schedule, "expected at least one index with a corpus to compare")
        return self


class Alerting(Section):
    # runbook_url = <runbookBaseUrl>/<runbook name>; the rendered pages live in runbooks/pages/.
    runbook_base_url: str = Field(pattern=r"^https://[^\s]+$")
    rule_namespace: str = Field(default="monitoring", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    # Labels the Prometheus Operator's ruleSelector matches (kube-prometheus-stack: release=<its name>).
    rule_selector_labels: dict[str, str] = {}


EnforcementLevel = Literal["advisory", "mandatory", "remediate", "disabled"]


class PolicyEnforcement(Section):
    """How the policy pack enforces on this stack: a pack-wide level and per-policy overrides."""
    enforcement: EnforcementLevel = "mandatory"
    overrides: dict[str, EnforcementLevel] = {}


class Tools(Section):
    """Small utility images the data components' jobs use."""
    curl_image: PinnedImage
    aws_cli_image: PinnedImage


class DevicePlugin(Section):
    image: PinnedImage


class RequestLogs(Section):
    """Where the serving request logs are kept (a KMS-encrypted bucket per region, written by the cluster's Fluent
    Bit): the durable copy the PII scanner scans and `llmops release compare` reads (stable, canary, shadow)."""
    retention_days: int = Field(default=30, ge=1, le=3650)  # then the objects expire (personal data: no hoarding)
    # What Fluent Bit tails: the serving pods' container logs (as driftMonitor.logPath).
    log_path: str = Field(default="/var/log/containers/*_serving_*.log", pattern=r"^/[^\s]+$")
    # The platform's Fluent Bit service account in namespace logging (the fluent-bit chart's default name): the only
    # one that may assume the bucket's write role (IRSA).
    fluent_bit_service_account: str = Field(default="fluent-bit", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def parse_cidr(cidr: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        return None


class FailoverHealthCheck(Section):
    """Route53's checks of each model's regional endpoint: HTTPS, and the body must name the model.
    vLLM's /health answers 200 with an empty body as soon as the engine runs; /v1/models names the
    served model (`"id":"<model>"`), which only a replica with its weights loaded can answer."""
    path: str = Field(default="/v1/models", pattern=r"^/[A-Za-z0-9/._~-]{0,254}$")
    interval_seconds: Literal[10, 30] = 10
    failure_threshold: int = Field(default=3, ge=1, le=10)


class Standby(Section):
    """How a secondary region waits. warm: GPU nodes up and the models loaded (the pools' minSize and the
    models' replicas as everywhere), so failover is a DNS change. cold: no GPU nodes and no replicas until
    failover scales them up; the plan shows the recovery time that costs."""
    mode: Literal["warm", "cold"] = "warm"
    node_start_seconds: int = Field(default=600, ge=60, le=3600)  # a GPU node from launch to Ready


class Failover(Section):
    hosted_zone_id: str = Field(pattern=r"^[A-Z0-9]{1,32}$")  # the public zone of serving.domain
    routing: Literal["failover", "latency"] = "failover"  # PRIMARY/SECONDARY, or active-active by latency
    ttl_seconds: int = Field(default=60, ge=5, le=300)
    health_check: FailoverHealthCheck = FailoverHealthCheck()
    standby: dict[str, Standby] = {}  # secondary region -> its standby; default warm
    replicate_to: list[str] | None = None  # regions receiving model artifacts and index snapshots; default: secondaries
    # Where traffic goes (failover routing): the PRIMARY records' region. The failover runbook pins it here after
    # moving traffic, so the next `pulumi up` keeps the move; default: regions.primary.
    active_region: str | None = None


