"""The typed stack configuration: the only place raw Pulumi config is read.

Every key a stack file may hold is declared here once. `load()` reads the
`llmops:` namespace of the running stack and `parse()` turns it into a frozen
`StackConfig`. A bad value stops the program with one `ConfigError` that names
the file, the key, the value and what is allowed -- before any resource is
declared, so a typo never becomes half a deployment.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from components.instance_types import ARM_GPU_FAMILIES, GPU_INSTANCE_TYPES, family, is_accelerated

NAMESPACE = "llmops"
# Pulumi.yaml's `stackConfigDir`; the file a message points the engineer at.
STACK_CONFIG_DIR = "stacks"

# EKS versions with schemas in kubernetes-validate and standard or extended support.
KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35")
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
# Bucket bounds of vLLM's `vllm:time_to_first_token_seconds` histogram (v1 engine).
# A latency SLO is computed from the bucket at its threshold, so the threshold must be one.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
REQUIRED_TAGS = ("owner", "cost-center", "environment")

_REGION = re.compile(r"^(us|eu|ap|ca|sa|me|af|il|mx)(-gov)?-(north|south|east|west|central|northeast|northwest|southeast|southwest)-[1-9]$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$")
_IMAGE_BY_DIGEST = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[0-9]+/[a-z0-9._/-]+)?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[a-f0-9]{64}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DIRECTIONS = {"north": "n", "south": "s", "east": "e", "west": "w", "central": "c",
               "northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}


class ConfigError(ValueError):
    """A stack config value is wrong; the message says where and what is allowed."""


def _invalid(key: str | None, value: Any, expected: str) -> PydanticCustomError:
    """An error on `key` of the model being validated (None: the model itself)."""
    return PydanticCustomError("llmops", "{expected}", {"key": key, "value": value, "expected": expected})


def region_code(region: str) -> str:
    """A short, unique code for names: us-east-1 -> use1, ap-southeast-2 -> apse2, us-gov-west-1 -> usgw1."""
    area, *middle, number = region.split("-")
    return area + "".join(_DIRECTIONS.get(part, part[0]) for part in middle) + number


def _text(pattern: re.Pattern[str], expected: str) -> Any:
    """A string type that must match `pattern`; each list item is checked (and named) on its own."""
    def check(value: str) -> str:
        if not pattern.match(value):
            raise _invalid(None, value, expected)
        return value
    return Annotated[str, AfterValidator(check)]


def _gpu_instance_type(instance_type: str) -> str:
    if family(instance_type) in ARM_GPU_FAMILIES:
        raise _invalid(None, instance_type, "expected an x86 GPU instance type; the pool runs the AL2023 x86_64 NVIDIA AMI")
    if instance_type not in GPU_INSTANCE_TYPES:
        raise _invalid(None, instance_type, "expected a GPU instance type, one of "
                       + ", ".join(sorted({family(t) for t in GPU_INSTANCE_TYPES})) + " (e.g. g6.xlarge)")
    return instance_type


def _cpu_instance_type(instance_type: str) -> str:
    if is_accelerated(instance_type):
        raise _invalid(None, instance_type, "expected a CPU instance type; accelerators belong in gpuPools")
    return instance_type


RegionName = _text(_REGION, "expected an AWS region name such as us-east-1")
DnsLabel = _text(_DNS_LABEL, "expected a lowercase DNS label of at most 32 characters (a-z, 0-9, '-')")
PinnedImage = _text(_IMAGE_BY_DIGEST, "expected an image pinned by digest, REPOSITORY[:TAG]@sha256:<64 hex digits>; tags are mutable")
RoleArn = _text(_ROLE_ARN, "expected an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")
GpuInstanceType = Annotated[str, AfterValidator(_gpu_instance_type)]
CpuInstanceType = Annotated[str, AfterValidator(_cpu_instance_type)]


def _yaml_key(field: str) -> str:
    """snake_case field -> the camelCase key in YAML; sizes in GiB keep their unit's spelling."""
    return re.sub(r"Gib$", "GiB", to_camel(field))


class _Model(BaseModel):
    """Strict: no coercion of "3" to 3, no unknown keys, camelCase keys in YAML."""

    model_config = ConfigDict(strict=True, frozen=True, alias_generator=_yaml_key, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = sorted(field.alias or name for name, field in cls.model_fields.items())
            for key in data:
                if key not in allowed:
                    raise _invalid(key, data[key], "unknown key; allowed keys: " + ", ".join(allowed))
        return data


class Regions(_Model):
    allowed: list[RegionName] = Field(min_length=1)
    primary: str
    secondaries: list[str] = []

    @model_validator(mode="after")
    def _within_allowed(self) -> Regions:
        allowed = ", ".join(self.allowed)
        if self.primary not in self.allowed:
            raise _invalid("primary", self.primary, f"expected one of the allowed regions: {allowed}")
        for index, region in enumerate(self.secondaries):
            if region not in self.allowed:
                raise _invalid(f"secondaries[{index}]", region, f"expected one of the allowed regions: {allowed}")
            if region == self.primary or self.secondaries.index(region) != index:
                raise _invalid(f"secondaries[{index}]", region, "expected each region once, and not the primary")
        return self

    @property
    def all(self) -> list[str]:
        return [self.primary, *self.secondaries]


class Network(_Model):
    vpc_cidrs: dict[str, str]
    availability_zones: int = Field(default=3, ge=2, le=6)
    nat_gateways: Literal["single", "per-az"] = "per-az"


class NodeScaling(_Model):
    min_size: int = Field(ge=0, le=450)
    desired_size: int = Field(ge=0, le=450)
    max_size: int = Field(ge=1, le=450)

    @model_validator(mode="after")
    def _ordered(self) -> NodeScaling:
        if self.min_size > self.max_size:
            raise _invalid("minSize", self.min_size, f"expected minSize <= maxSize ({self.max_size})")
        if not self.min_size <= self.desired_size <= self.max_size:
            raise _invalid("desiredSize", self.desired_size,
                           f"expected minSize ({self.min_size}) <= desiredSize <= maxSize ({self.max_size})")
        return self


class SystemPool(NodeScaling):
    instance_types: list[CpuInstanceType] = Field(min_length=1)
    root_volume_gib: int = Field(default=50, ge=20, le=1024)
    min_size: int = Field(default=2, ge=1, le=450)


class Cluster(_Model):
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
            raise _invalid(None, version, "expected one of " + ", ".join(KUBERNETES_VERSIONS) + " (quoted, as a string)")
        return version

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise _invalid(None, days, "expected a CloudWatch retention period: " + ", ".join(map(str, LOG_RETENTION_DAYS)))
        return days

    @model_validator(mode="after")
    def _allow_list_only_when_public(self) -> Cluster:
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise _invalid("publicAccessCidrs", [], "expected at least one CIDR when endpointPublicAccess is true; "
                           "a public endpoint without an allow-list is open to the internet")
        if self.public_access_cidrs and not self.endpoint_public_access:
            raise _invalid("publicAccessCidrs", self.public_access_cidrs, "expected no CIDRs while endpointPublicAccess is false")
        for index, cidr in enumerate(self.public_access_cidrs):
            network = _parse_cidr(cidr)
            if network is None or network.prefixlen == 0:
                raise _invalid(f"publicAccessCidrs[{index}]", cidr, "expected an IPv4 CIDR narrower than 0.0.0.0/0, e.g. 203.0.113.0/24")
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
            raise _invalid(None, types, "expected instance types with the same GPU model; got " + ", ".join(sorted(gpus)))
        return types

    @model_validator(mode="after")
    def _gpus_match_instances(self) -> GpuPool:
        for instance_type in self.instance_types:
            actual = GPU_INSTANCE_TYPES[instance_type].gpus
            if actual != self.gpus_per_node:
                raise _invalid("gpusPerNode", self.gpus_per_node, f"expected {actual}, the GPU count of {instance_type}")
        return self

    @property
    def gpu(self) -> str:
        return GPU_INSTANCE_TYPES[self.instance_types[0]].gpu

    @property
    def smallest_instance(self) -> str:
        return min(self.instance_types, key=lambda t: (GPU_INSTANCE_TYPES[t].vcpus, GPU_INSTANCE_TYPES[t].memory_gib))


class RegistryRef(_Model):
    model: str = Field(min_length=1)
    alias: str = Field(default="production", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,254}$")


class Availability(_Model):
    objective: float = Field(gt=90, lt=100)


class TimeToFirstToken(_Model):
    objective: float = Field(gt=50, lt=100)
    threshold_seconds: float

    @field_validator("threshold_seconds")
    @classmethod
    def _bucket_bound(cls, seconds: float) -> float:
        if seconds not in TTFT_BUCKETS:
            raise _invalid(None, seconds, "expected a bucket bound of vllm:time_to_first_token_seconds: "
                           + ", ".join(f"{b:g}" for b in TTFT_BUCKETS))
        return seconds


class Slo(_Model):
    availability: Availability
    time_to_first_token: TimeToFirstToken
    window_days: int = Field(default=30, ge=7, le=90)
    # Below this many requests per second burn-rate alerts stay silent: a handful of
    # failures out of a handful of requests is not a page.
    min_request_rate: float = Field(default=0.1, ge=0)


class Release(_Model):
    """What a serving release is made of; any change to any part is a new release."""
    version: str = Field(pattern=r"^[1-9][0-9]{0,9}$")  # the registry model version
    prompt_version: str = Field(default="none", min_length=1, max_length=63)
    feature_view: str | None = Field(default=None, min_length=1, max_length=127)
    retrieval_index: str | None = None


class Canary(_Model):
    release: Release
    weight: int = Field(ge=0, le=100)  # percent of requests routed to the canary
    replicas: int = Field(default=1, ge=1, le=16)


class Startup(_Model):
    """The startup-probe budget: time to load weights from local disk into GPUs, plus a fixed part
    (engine start, CUDA graph capture). Derived from the model size, never a constant."""
    base_seconds: int = Field(default=180, ge=30, le=3600)
    seconds_per_gib: float = Field(default=4.0, gt=0, le=120)


class Resources(_Model):
    cpu: int = Field(ge=1, le=192)
    memory_gib: int = Field(ge=4, le=2048)


class Model(_Model):
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
    startup: Startup = Startup()
    resources: Resources | None = None  # default: the replica's share of the node
    slo: Slo

    @field_validator("tensor_parallel_size")
    @classmethod
    def _power_of_two(cls, size: int) -> int:
        if size not in (1, 2, 4, 8, 16):
            raise _invalid(None, size, "expected 1, 2, 4, 8 or 16 (GPUs per replica, on one node)")
        return size

    @model_validator(mode="after")
    def _coherent(self) -> Model:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise _invalid("maxReplicas", self.max_replicas, f"expected maxReplicas >= replicas ({self.replicas})")
        if self.canary is not None and self.canary.release == self.release:
            raise _invalid("canary.release", self.canary.release.model_dump(by_alias=True, exclude_none=True),
                           "expected a release that differs from the stable release")
        return self

    @property
    def ceiling(self) -> int:
        return self.max_replicas or self.replicas

    @property
    def active_canary(self) -> Canary | None:
        """The canary, when there is one that takes traffic (weight 0 means none)."""
        return self.canary if self.canary is not None and self.canary.weight > 0 else None

    def peak_gpus(self) -> int:
        """GPUs the model can hold at once without a rollout: stable at its ceiling plus the canary."""
        canary = self.active_canary.replicas if self.active_canary else 0
        return (self.ceiling + canary) * self.tensor_parallel_size


class Serving(_Model):
    domain: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    gateway_class_name: str = Field(min_length=1, max_length=253)
    tls_secret_name: str = Field(default="inference-tls", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    prometheus_url: str = Field(pattern=r"^https?://[^\s]+$")  # where KEDA reads the queue depth


class Database(_Model):
    instance_class: str = Field(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    allocated_storage_gib: int = Field(default=50, ge=20, le=65536)
    engine_version: str = Field(default="16.6", pattern=r"^1[4-7](\.[0-9]+)?$")
    backup_retention_days: int = Field(default=7, ge=1, le=35)
    multi_az: bool | None = None  # default: true in prod


class Registry(_Model):
    image: PinnedImage  # MLflow with psycopg2 and boto3 (components/images/mlflow.Dockerfile)
    replicas: int = Field(default=2, ge=1, le=10)
    database: Database


class Redis(_Model):
    node_type: str = Field(pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    engine_version: str = Field(default="7.1", pattern=r"^[67](\.[0-9]+)?$")
    nodes: int | None = Field(default=None, ge=1, le=6)  # default: 1 in dev, 2 elsewhere (a primary and a replica)


class FeatureStore(_Model):
    image: PinnedImage  # Feast with the aws and redis extras (components/images/feast.Dockerfile)
    project: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")
    replicas: int = Field(default=2, ge=1, le=10)
    materialize_schedule: str = Field(default="*/15 * * * *", pattern=r"^(\S+\s+){4}\S+$")
    redis: Redis


class IndexConfig(_Model):
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
            raise _invalid("chunkOverlap", self.chunk_overlap, f"expected less than chunkSize ({self.chunk_size})")
        return self


class Freshness(_Model):
    """The freshness CronJob: `llmops retrieval freshness` for every index with a corpus, on a schedule."""
    image: PinnedImage  # this project's image (components/images/llmops.Dockerfile)
    pushgateway: str = Field(pattern=r"^https?://[^\s]+$")
    schedule: str = Field(default="*/15 * * * *", pattern=r"^(\S+\s+){4}\S+$")


class Retrieval(_Model):
    image: PinnedImage  # Qdrant, the -unprivileged variant (runs as a non-root user)
    replicas: int = Field(default=1, ge=1, le=9)
    storage_gib: int = Field(default=50, ge=10, le=16384)
    snapshot_schedule: str = Field(default="0 */6 * * *", pattern=r"^(\S+\s+){4}\S+$")
    indexes: list[IndexConfig] = Field(min_length=1)
    freshness: Freshness | None = None

    @model_validator(mode="after")
    def _freshness_has_a_corpus(self) -> Retrieval:
        if self.freshness is not None and not any(index.corpus for index in self.indexes):
            raise _invalid("freshness", self.freshness.schedule, "expected at least one index with a corpus to compare")
        return self


class Alerting(_Model):
    # runbook_url = <runbookBaseUrl>/<runbook name>; the rendered pages live in runbooks/pages/.
    runbook_base_url: str = Field(pattern=r"^https://[^\s]+$")
    rule_namespace: str = Field(default="monitoring", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    # Labels the Prometheus Operator's ruleSelector matches (kube-prometheus-stack: release=<its name>).
    rule_selector_labels: dict[str, str] = {}


EnforcementLevel = Literal["advisory", "mandatory", "remediate", "disabled"]


class PolicyEnforcement(_Model):
    """How the policy pack enforces on this stack: a pack-wide level and per-policy overrides."""
    enforcement: EnforcementLevel = "mandatory"
    overrides: dict[str, EnforcementLevel] = {}


class Tools(_Model):
    """Small utility images the data components' jobs use."""
    curl_image: PinnedImage
    aws_cli_image: PinnedImage


class DevicePlugin(_Model):
    image: PinnedImage


def _parse_cidr(cidr: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        return None


class FailoverHealthCheck(_Model):
    """Route53's checks of each model's regional endpoint: HTTPS, and the body must name the model.
    vLLM's /health answers 200 with an empty body as soon as the engine runs; /v1/models names the
    served model (`"id":"<model>"`), which only a replica with its weights loaded can answer."""
    path: str = Field(default="/v1/models", pattern=r"^/[A-Za-z0-9/._~-]{0,254}$")
    interval_seconds: Literal[10, 30] = 10
    failure_threshold: int = Field(default=3, ge=1, le=10)


class Standby(_Model):
    """How a secondary region waits. warm: GPU nodes up and the models loaded (the pools' minSize and the
    models' replicas as everywhere), so failover is a DNS change. cold: no GPU nodes and no replicas until
    failover scales them up; the plan shows the recovery time that costs."""
    mode: Literal["warm", "cold"] = "warm"
    node_start_seconds: int = Field(default=600, ge=60, le=3600)  # a GPU node from launch to Ready


class Failover(_Model):
    hosted_zone_id: str = Field(pattern=r"^[A-Z0-9]{1,32}$")  # the public zone of serving.domain
    routing: Literal["failover", "latency"] = "failover"  # PRIMARY/SECONDARY, or active-active by latency
    ttl_seconds: int = Field(default=60, ge=5, le=300)
    health_check: FailoverHealthCheck = FailoverHealthCheck()
    standby: dict[str, Standby] = {}  # secondary region -> its standby; default warm
    replicate_to: list[str] | None = None  # regions receiving model artifacts and index snapshots; default: secondaries
    # Where traffic goes (failover routing): the PRIMARY records' region. The failover runbook pins it here after
    # moving traffic, so the next `pulumi up` keeps the move; default: regions.primary.
    active_region: str | None = None


class StackConfig(_Model):
    environment: Literal["dev", "staging", "prod"]
    regions: Regions
    tags: dict[str, str]
    network: Network
    cluster: Cluster
    gpu_pools: list[GpuPool] = Field(min_length=1)
    device_plugin: DevicePlugin
    models: list[Model] = Field(min_length=1)
    serving: Serving
    registry: Registry
    feature_store: FeatureStore
    retrieval: Retrieval
    tools: Tools
    alerting: Alerting
    policy: PolicyEnforcement = PolicyEnforcement()
    failover: Failover | None = None  # required with more than one region

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        self._check_tags()
        self._check_vpc_cidrs()
        self._check_models()
        self._check_failover()
        return self

    def _check_failover(self) -> None:
        secondaries, allowed = self.regions.secondaries, self.regions.allowed
        if self.failover is None:
            if secondaries:
                raise _invalid("failover", None, "required when the stack has secondary regions "
                               f"({', '.join(secondaries)}): hostedZoneId at least, so traffic can move between them")
            return
        if not secondaries:
            raise _invalid("failover", "...", "expected only in a stack with regions.secondaries: there is nowhere to fail over to")
        if self.failover.active_region is not None:
            if self.failover.active_region not in self.regions.all:
                raise _invalid("failover.activeRegion", self.failover.active_region,
                               f"expected a region of this stack: {', '.join(self.regions.all)}")
            if self.failover.routing != "failover":
                raise _invalid("failover.activeRegion", self.failover.active_region,
                               "expected only with failover routing (latency routing has no primary)")
        if self.failover.routing == "failover" and len(secondaries) > 1:
            raise _invalid("failover.routing", "failover", f"expected latency with {len(secondaries)} secondaries: "
                           "Route53 failover routing has one PRIMARY and one SECONDARY record per name")
        for region, standby in self.failover.standby.items():
            if region not in secondaries:
                raise _invalid(f"failover.standby.{region}", standby.mode,
                               f"expected a secondary region of this stack: {', '.join(secondaries)}")
            if standby.mode == "cold" and self.failover.routing == "latency":
                raise _invalid(f"failover.standby.{region}.mode", "cold",
                               "expected warm with latency routing: every region takes traffic (active-active)")
        for index, region in enumerate(self.failover.replicate_to or []):
            if region not in allowed:
                raise _invalid(f"failover.replicateTo[{index}]", region, "expected one of the allowed regions "
                               f"(data residency: {', '.join(allowed)}); replicas are data too")
            if region not in secondaries:
                raise _invalid(f"failover.replicateTo[{index}]", region,
                               f"expected a secondary region of this stack ({', '.join(secondaries)}): its buckets receive the copies")
        for region in secondaries:
            if self.standby(region).mode == "warm":
                for index, pool in enumerate(self.gpu_pools):
                    if pool.min_size < 1 and any(m.pool == pool.name for m in self.models):
                        raise _invalid(f"gpuPools[{index}].minSize", pool.min_size,
                                       f"expected at least 1: {region} is a warm standby, so its models must stay loaded")

    def standby(self, region: str) -> Standby:
        """How a region waits: the primary (and, with latency routing, every region) serves; secondaries as configured."""
        if self.failover is None or region == self.regions.primary:
            return Standby(mode="warm")
        return self.failover.standby.get(region) or Standby(mode="warm")

    @property
    def active_region(self) -> str:
        """Where failover routing sends traffic while it is healthy (the PRIMARY records)."""
        return (self.failover.active_region if self.failover else None) or self.regions.primary

    @property
    def replication_targets(self) -> list[str]:
        if self.failover is None:
            return []
        return list(self.failover.replicate_to if self.failover.replicate_to is not None else self.regions.secondaries)

    def _check_tags(self) -> None:
        for tag in REQUIRED_TAGS:
            if not self.tags.get(tag):
                raise _invalid(f"tags.{tag}", self.tags.get(tag), "required tag is missing or empty")
        if self.tags["environment"] != self.environment:
            raise _invalid("tags.environment", self.tags["environment"], f"expected {self.environment!r}, the stack's environment")
        for key, value in self.tags.items():
            # Tags become Kubernetes labels too, so they must satisfy both rule sets.
            if key.startswith("aws:") or not _LABEL_VALUE.match(value) or len(key) > 63:
                raise _invalid(f"tags.{key}", value, "expected a value of at most 63 characters of A-Z, a-z, 0-9, '-', '_' or '.', "
                               "starting and ending alphanumeric (it is also a Kubernetes label)")

    def _check_vpc_cidrs(self) -> None:
        seen: dict[str, ipaddress.IPv4Network] = {}
        for region, cidr in self.network.vpc_cidrs.items():
            if region not in self.regions.all:
                raise _invalid(f"network.vpcCidrs.{region}", cidr, "expected CIDRs only for the stack's regions: " + ", ".join(self.regions.all))
            network = _parse_cidr(cidr)
            if network is None or not 16 <= network.prefixlen <= 20 or not network.is_private:
                raise _invalid(f"network.vpcCidrs.{region}", cidr, "expected a private IPv4 CIDR from /16 to /20, e.g. 10.20.0.0/16")
            for other, other_network in seen.items():
                if network.overlaps(other_network):
                    raise _invalid(f"network.vpcCidrs.{region}", cidr, f"expected no overlap with {other} ({other_network})")
            seen[region] = network
        for region in self.regions.all:
            if region not in self.network.vpc_cidrs:
                raise _invalid(f"network.vpcCidrs.{region}", None, "required: a VPC CIDR for every region of the stack")

    def _check_models(self) -> None:
        pools = {pool.name: pool for pool in self.gpu_pools}
        if len(pools) != len(self.gpu_pools):
            names = [pool.name for pool in self.gpu_pools]
            duplicate = next(name for name in names if names.count(name) > 1)
            raise _invalid(f"gpuPools[{names.index(duplicate, names.index(duplicate) + 1)}].name", duplicate, "expected unique pool names")
        indexes = [index.name for index in self.retrieval.indexes]
        names = [model.name for model in self.models]
        gpus_wanted: dict[str, int] = {}
        for index, model in enumerate(self.models):
            where = f"models[{index}]"
            if names.index(model.name) != index:
                raise _invalid(f"{where}.name", model.name, "expected unique model names")
            pool = pools.get(model.pool)
            if pool is None:
                raise _invalid(f"{where}.pool", model.pool, "expected one of the gpuPools names: " + ", ".join(pools))
            if model.tensor_parallel_size > pool.gpus_per_node:
                raise _invalid(f"{where}.tensorParallelSize", model.tensor_parallel_size,
                               f"expected at most {pool.gpus_per_node}, the GPUs per node of pool {pool.name!r}")
            for key, release in (("release", model.release), ("canary.release", model.canary.release if model.canary else None)):
                if release is not None and release.retrieval_index is not None and release.retrieval_index not in indexes:
                    raise _invalid(f"{where}.{key}.retrievalIndex", release.retrieval_index,
                                   "expected one of the retrieval.indexes names: " + ", ".join(indexes))
            gpus_wanted[pool.name] = gpus_wanted.get(pool.name, 0) + model.peak_gpus()
            capacity = pool.max_size * pool.gpus_per_node
            if gpus_wanted[pool.name] > capacity:
                raise _invalid(f"{where}.replicas", model.replicas,
                               f"expected the models on pool {pool.name!r} to need at most its {capacity} GPUs "
                               f"(maxSize {pool.max_size} x {pool.gpus_per_node}); with maxReplicas and canaries "
                               f"they need {gpus_wanted[pool.name]}")
            self._check_fits_on_node(where, model, pool)

    def _check_fits_on_node(self, where: str, model: Model, pool: GpuPool) -> None:
        largest = replica_share(model, pool)
        if model.resources is not None:
            if model.resources.cpu > largest.cpu:
                raise _invalid(f"{where}.resources.cpu", model.resources.cpu,
                               f"expected at most {largest.cpu}, this replica's share of a {pool.smallest_instance} node")
            if model.resources.memory_gib > largest.memory_gib:
                raise _invalid(f"{where}.resources.memoryGiB", model.resources.memory_gib,
                               f"expected at most {largest.memory_gib}, this replica's share of a {pool.smallest_instance} node")
        per_node = pool.gpus_per_node // model.tensor_parallel_size
        needed = NODE_IMAGES_GIB + per_node * model_cache_gib(model)
        if pool.root_volume_gib < needed:
            raise _invalid(f"{where}.sizeGiB", model.size_gib,
                           f"expected pool {pool.name!r} (rootVolumeGiB {pool.root_volume_gib}) to hold {NODE_IMAGES_GIB} GiB of "
                           f"images plus {per_node} replica(s) x {model_cache_gib(model)} GiB of model cache; "
                           f"raise rootVolumeGiB to at least {needed}")

    def pool(self, name: str) -> GpuPool:
        return next(pool for pool in self.gpu_pools if pool.name == name)


# --- sizing, shared by validation and the manifests --------------------------------------------------

# Root-volume space a GPU node needs besides model caches: the OS, the vLLM image (~20 GiB
# unpacked) and the system pods' images.
NODE_IMAGES_GIB = 60


@dataclass(frozen=True)
class ReplicaShare:
    cpu: int
    memory_gib: int


def replica_share(model: Model, pool: GpuPool) -> ReplicaShare:
    """A replica's share of its node: GPUs-used / GPUs-per-node of what the kubelet can allocate
    (two vCPUs and 10% + 4 GiB of memory are kept for the kubelet and node agents), on the pool's smallest type."""
    node = GPU_INSTANCE_TYPES[pool.smallest_instance]
    share = model.tensor_parallel_size / node.gpus
    return ReplicaShare(cpu=max(1, int((node.vcpus - 2) * share)),
                        memory_gib=max(4, int((node.memory_gib * 0.9 - 4) * share)))


def replica_resources(model: Model, pool: GpuPool) -> ReplicaShare:
    if model.resources is not None:
        return ReplicaShare(cpu=model.resources.cpu, memory_gib=model.resources.memory_gib)
    return replica_share(model, pool)


def rollout_surge(config: StackConfig, model: Model) -> int:
    """1 if the pool keeps enough spare GPUs for every Deployment on it to surge one replica at once
    (a `pulumi up` that changes the image rolls them all), else 0: replace in place, never exceed the pool."""
    pool = config.pool(model.pool)
    on_pool = [m for m in config.models if m.pool == pool.name]
    spare = pool.max_size * pool.gpus_per_node - sum(m.peak_gpus() for m in on_pool)
    surging = sum(m.tensor_parallel_size * (2 if m.active_canary else 1) for m in on_pool)
    return 1 if spare >= surging else 0


def model_cache_gib(model: Model) -> int:
    """Disk for one replica's copy of the weights (10% headroom for tokenizer files and metadata)."""
    return -(-model.size_gib * 11 // 10)  # ceil(size x 1.1) in integers: no float rounding


# --- reading --------------------------------------------------------------------------------------------

def parse(flat: Mapping[str, Any], source: str) -> StackConfig:
    """Validate the engine's flat config (`llmops:key` -> string, objects as JSON) into a StackConfig."""
    prefix = NAMESPACE + ":"
    data: dict[str, Any] = {}
    for key, raw in flat.items():
        if not key.startswith(prefix):
            continue  # other namespaces (aws:, kubernetes:) belong to providers
        name = key[len(prefix):]
        data[name] = _decode(raw)
    try:
        return StackConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(source, e) for e in error.errors(include_url=False))) from None


def load() -> StackConfig:
    """Read the running stack's config (from the Pulumi engine) and validate it."""
    import pulumi
    import pulumi.runtime.config as runtime_config

    # The CLI hands config over in PULUMI_CONFIG; set_all_config (tests, our offline harness)
    # fills the context variable. Read both, so unknown keys can be reported too.
    flat = {**pulumi.runtime.get_config_env(), **runtime_config.CONFIG.get()}
    return parse(flat, f"{STACK_CONFIG_DIR}/Pulumi.{pulumi.get_stack()}.yaml")


def load_file(path: str | Path) -> StackConfig:
    """Read a stack file directly (for tools that run outside Pulumi, such as the runbooks), with the same
    loader and the same refusals as `llmops preview` (components/config_files.py)."""
    from components.config_files import ConfigFileError, load_stack_config

    try:
        flat = load_stack_config(path, NAMESPACE)
    except ConfigFileError as error:
        raise ConfigError(str(error)) from None
    return parse(flat, str(path))


def _decode(raw: Any) -> Any:
    """Objects and lists reach the program as JSON text (as the CLI passes them); scalars stay text."""
    if not isinstance(raw, str):
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, (dict, list)) else raw


_EXPECTED = {
    "int_type": "expected an integer", "float_type": "expected a number", "string_type": "expected a string",
    "bool_type": "expected true or false", "list_type": "expected a list", "dict_type": "expected a mapping",
    "model_type": "expected a mapping", "model_attributes_type": "expected a mapping", "missing": "required key is missing",
}


def _describe(source: str, error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    path = [str(part) for part in error["loc"]]
    if error["type"] == "llmops":
        if ctx.get("key"):
            path.append(ctx["key"])
        value, expected = ctx.get("value"), ctx["expected"]
    else:
        value, expected = error.get("input"), _expected(error)
    key = NAMESPACE + ":" + re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", ".".join(path))
    if error["type"] == "missing":
        return f"{source}: {key}: {expected}"
    return f"{source}: {key} = {_show(value)}: {expected}"


def _expected(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        return "expected one of " + ctx["expected"].replace("'", '"')
    bounds = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"expected a value {bounds[kind]} {limit}"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} item(s)"
    if kind == "too_long":
        return f"expected at most {ctx['max_length']} item(s)"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx['pattern']}"
    return error["msg"]


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
