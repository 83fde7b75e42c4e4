"""What several policies need: the stack context they are configured with, and ways to read resources.

Policy config (set per stack by `llmops policy config`, or by hand in a `--policy-pack-config`
file) carries `environment`, `allowedRegions`, `runbookBaseUrl`, `runbooks` (the catalogued runbook
names) and `privilegedAllowList`: everything a policy checks against, since the pack is installed
alone and reads nothing outside its folder. Without an `environment`, policies assume the strictest
case (not dev); without the others, the checks that need them narrow (see each policy).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyConfigSchema

CONTEXT_SCHEMA = PolicyConfigSchema(properties={
    "environment": {"type": "string", "enum": ["dev", "staging", "prod"]},
    "allowedRegions": {"type": "array", "items": {"type": "string"}},
    "runbookBaseUrl": {"type": "string"},
    "runbooks": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    "privilegedAllowList": {"type": "array", "items": {"type": "string"},
                            "default": ["kube-system/nvidia-device-plugin"]},
})
DEFAULT_PRIVILEGED_ALLOW_LIST = ("kube-system/nvidia-device-plugin",)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_POOL_SELECTORS = ("llmops.io/pool", "nvidia.com/gpu.present")
WORKLOAD_TYPES = {
    "kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob", "kubernetes:core/v1:Pod",
}


def config(args: Any) -> Mapping[str, Any]:
    return args.get_config() or {}


def environment(args: Any) -> str | None:
    return config(args).get("environment")


def outside_dev(args: Any) -> bool:
    return environment(args) != "dev"


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec a workload creates, whatever its kind."""
    spec = props.get("spec") or {}
    if resource_type == "kubernetes:core/v1:Pod":
        return spec
    if resource_type == "kubernetes:batch/v1:CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
    return (spec.get("template") or {}).get("spec")


def object_ref(props: Mapping[str, Any]) -> str:
    metadata = props.get("metadata") or {}
    return f"{metadata.get('namespace', 'default')}/{metadata.get('name', '?')}"


def containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number (enough for counts such as GPUs)."""
    return float(str(value))


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def json_document(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    try:
        document = json.loads(value)
    except (TypeError, ValueError):
        return None
    return document if isinstance(document, Mapping) else None
