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
import re
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


class _Model(BaseModel):
    """Strict: no coercion of "3" to 3, no unknown keys, camelCase keys in YAML."""

    model_config = ConfigDict(strict=True, frozen=True, alias_generator=to_camel, populate_by_name=False)

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
    root_volume_gib: int = Field(default=50, alias="rootVolumeGiB", ge=20, le=1024)
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
    root_volume_gib: int = Field(default=200, alias="rootVolumeGiB", ge=100, le=16384)
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


class Model(_Model):
    name: DnsLabel
    registry: RegistryRef
    image: PinnedImage
    pool: str
    tensor_parallel_size: int = Field(default=1)
    max_model_len: int = Field(ge=256, le=1_048_576)
    replicas: int = Field(default=1, ge=1, le=64)
    slo: Slo

    @field_validator("tensor_parallel_size")
    @classmethod
    def _power_of_two(cls, size: int) -> int:
        if size not in (1, 2, 4, 8, 16):
            raise _invalid(None, size, "expected 1, 2, 4, 8 or 16 (GPUs per replica, on one node)")
        return size


class DevicePlugin(_Model):
    image: PinnedImage


def _parse_cidr(cidr: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        return None


class StackConfig(_Model):
    environment: Literal["dev", "staging", "prod"]
    regions: Regions
    tags: dict[str, str]
    network: Network
    cluster: Cluster
    gpu_pools: list[GpuPool] = Field(min_length=1)
    device_plugin: DevicePlugin
    models: list[Model] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        self._check_tags()
        self._check_vpc_cidrs()
        self._check_models()
        return self

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
        names = [model.name for model in self.models]
        gpus_wanted: dict[str, int] = {}
        for index, model in enumerate(self.models):
            if names.index(model.name) != index:
                raise _invalid(f"models[{index}].name", model.name, "expected unique model names")
            pool = pools.get(model.pool)
            if pool is None:
                raise _invalid(f"models[{index}].pool", model.pool, "expected one of the gpuPools names: " + ", ".join(pools))
            if model.tensor_parallel_size > pool.gpus_per_node:
                raise _invalid(f"models[{index}].tensorParallelSize", model.tensor_parallel_size,
                               f"expected at most {pool.gpus_per_node}, the GPUs per node of pool {pool.name!r}")
            gpus_wanted[pool.name] = gpus_wanted.get(pool.name, 0) + model.replicas * model.tensor_parallel_size
            capacity = pool.max_size * pool.gpus_per_node
            if gpus_wanted[pool.name] > capacity:
                raise _invalid(f"models[{index}].replicas", model.replicas,
                               f"expected the models on pool {pool.name!r} to need at most its {capacity} GPUs "
                               f"(maxSize {pool.max_size} x {pool.gpus_per_node}); they need {gpus_wanted[pool.name]}")

    def pool(self, name: str) -> GpuPool:
        return next(pool for pool in self.gpu_pools if pool.name == name)


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
