"""What every section of the stack config is built from: the namespace, the vocabularies (regions, Kubernetes
versions, TTFT buckets), field checks that name what is expected, and the strict base model (no coercion,
no unknown keys, camelCase keys in YAML)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from components.instance_types import (
    ARM_GPU_FAMILIES,
    GPU_INSTANCE_TYPES,
    family,
    is_accelerated,
)

NAMESPACE = "llmops"
# Pulumi.yaml's `stackConfigDir`; the file a message points the engineer at.
STACK_CONFIG_DIR = "stacks"

# EKS versions with schemas in kubernetes-validate and standard or extended support.
KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35")
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
                      3653)
# Bucket bounds of vLLM's `vllm:time_to_first_token_seconds` histogram (v1 engine).
# A latency SLO is computed from the bucket at its threshold, so the threshold must be one.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
                160.0, 640.0, 2560.0)
REQUIRED_TAGS = ("owner", "cost-center", "environment")

REGION = re.compile(r"^(us|eu|ap|ca|sa|me|af|il|mx)(-gov)?-"
                    r"(north|south|east|west|central|northeast|northwest|southeast|southwest)-[1-9]$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$")
IMAGE_BY_DIGEST = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[0-9]+/[a-z0-9._/-]+)?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                             r"@sha256:[a-f0-9]{64}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DIRECTIONS = {"north": "n", "south": "s", "east": "e", "west": "w", "central": "c",
               "northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}


class ConfigError(ValueError):
    """A stack config value is wrong; the message says where and what is allowed."""


def invalid(key: str | None, value: Any, expected: str) -> PydanticCustomError:
    """An error on `key` of the model being validated (None: the model itself)."""
    return PydanticCustomError("llmops", "{expected}", {"key": key, "value": value, "expected": expected})


def region_code(region: str) -> str:
    """A short, unique code for names: us-east-1 -> use1, ap-southeast-2 -> apse2, us-gov-west-1 -> usgw1."""
    area, *middle, number = region.split("-")
    return area + "".join(_DIRECTIONS.get(part, part[0]) for part in middle) + number


def text_matching(pattern: re.Pattern[str], expected: str) -> Any:
    """A string type that must match `pattern`; each list item is checked (and named) on its own."""
    def check(value: str) -> str:
        if not pattern.match(value):
            raise invalid(None, value, expected)
        return value
    return Annotated[str, AfterValidator(check)]


def gpu_instance_type(instance_type: str) -> str:
    if family(instance_type) in ARM_GPU_FAMILIES:
        raise invalid(None, instance_type, "expected an x86 GPU instance type; the pool runs the AL2023 x86_64 NVIDIA AMI")
    if instance_type not in GPU_INSTANCE_TYPES:
        raise invalid(None, instance_type, "expected a GPU instance type, one of "
                       + ", ".join(sorted({family(t) for t in GPU_INSTANCE_TYPES})) + " (e.g. g6.xlarge)")
    return instance_type


def cpu_instance_type(instance_type: str) -> str:
    if is_accelerated(instance_type):
        raise invalid(None, instance_type, "expected a CPU instance type; accelerators belong in gpuPools")
    return instance_type


RegionName = text_matching(REGION, "expected an AWS region name such as us-east-1")
DnsLabel = text_matching(DNS_LABEL, "expected a lowercase DNS label of at most 32 characters (a-z, 0-9, '-')")
PinnedImage = text_matching(IMAGE_BY_DIGEST, "expected an image pinned by digest, REPOSITORY[:TAG]@sha256:<64 hex digits>; "
                                               "tags are mutable")
RoleArn = text_matching(ROLE_ARN, "expected an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")
GpuInstanceType = Annotated[str, AfterValidator(gpu_instance_type)]
CpuInstanceType = Annotated[str, AfterValidator(cpu_instance_type)]


def _yaml_key(field: str) -> str:
    """snake_case field -> the camelCase key in YAML; sizes in GiB keep their unit's spelling."""
    return re.sub(r"Gib$", "GiB", to_camel(field))


class Section(BaseModel):
    """Strict: no coercion of "3" to 3, no unknown keys, camelCase keys in YAML."""

    model_config = ConfigDict(strict=True, frozen=True, alias_generator=_yaml_key, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = sorted(field.alias or name for name, field in cls.model_fields.items())
            for key in data:
                if key not in allowed:
                    raise invalid(key, data[key], "unknown key; allowed keys: " + ", ".join(allowed))
        return data


