"""Declare a Kubernetes object, built as a plain dict by `components.manifests`, as a Pulumi resource.

Manifest builders stay free of Pulumi (testable in microseconds); this is the one place
that maps an object's kind to the typed pulumi-kubernetes class, so the inputs the
engine sees are exactly the dict that was built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

_LATE = re.compile(r"@@late:([a-z_]+)@@")


def late(name: str) -> str:
    """A placeholder, inside a manifest built as plain data, for a value known only at deploy time
    (a database host, a bucket name, a role ARN). `kubernetes_objects` fills it in through an Output."""
    return f"@@late:{name}@@"


def _late_value(values: Mapping[str, str], name: str) -> str:
    if values.get(name) is None:
        raise ValueError(f"deploy-time value {name!r} resolved to nothing; a manifest would carry 'None'")
    return str(values[name])


def resolve_late(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _LATE.sub(lambda match: _late_value(values, match.group(1)), value)
    if isinstance(value, dict):
        return {key: resolve_late(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_late(item, values) for item in value]
    return value


def _late_names(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_LATE.findall(value))
    if isinstance(value, dict):
        return set().union(*(_late_names(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_late_names(item) for item in value)) if value else set()
    return set()

_TYPED = {
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("batch/v1", "CronJob"): k8s.batch.v1.CronJob,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
}


def kubernetes_object(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions,
                      late_values: Mapping[str, pulumi.Input[str]] | None = None) -> pulumi.CustomResource:
    """One Kubernetes object; anything not in the typed table is applied as a custom resource."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    fields: dict[str, Any] = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}
    needed = _late_names(fields)
    if needed:
        missing = needed - set(late_values or {})
        if missing:
            raise ValueError(f"{kind} {obj['metadata'].get('name')}: no value for {sorted(missing)}")
        template = fields
        def resolve(values: dict[str, Any]) -> dict[str, Any]:
            return resolve_late(template, values)

        resolved = pulumi.Output.all(**{key: (late_values or {})[key] for key in needed}).apply(resolve)
        def field(key: str) -> Callable[[dict[str, Any]], Any]:
            return lambda resolved_fields: resolved_fields[key]

        fields = {key: resolved.apply(field(key)) if _late_names(value) else value for key, value in template.items()}
    typed = _TYPED.get((api_version, kind))
    if typed is not None:
        # Typed classes take top-level fields as snake_case keyword arguments (`reclaim_policy`).
        return typed(name, **{re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key): value
                              for key, value in fields.items()}, opts=opts)
    return k8s.apiextensions.CustomResource(name, api_version=api_version, kind=kind, **fields, opts=opts)


def kubernetes_objects(prefix: str, objects: Sequence[dict[str, Any]], parent: pulumi.Resource,
                       late_values: Mapping[str, pulumi.Input[str]] | None = None,
                       after: Mapping[str, Sequence[str]] | None = None) -> dict[str, pulumi.CustomResource]:
    """Declare every object as `<prefix>-<kind>-<name>`, keyed `Kind/name` in the result.

    Objects wait for the Namespace they live in when it is in the same list, and for the
    `Kind/name` keys `after` lists for them (which must come earlier in `objects`)."""
    created: dict[str, pulumi.CustomResource] = {}
    for obj in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
        metadata = obj["metadata"]
        key = f"{obj['kind']}/{metadata['name']}"
        waits = [created[f"Namespace/{metadata['namespace']}"]] if f"Namespace/{metadata.get('namespace')}" in created else []
        waits += [created[other] for other in (after or {}).get(key, ())]
        created[key] = kubernetes_object(f"{prefix}-{obj['kind'].lower()}-{metadata['name']}", obj,
                                         pulumi.ResourceOptions(parent=parent, depends_on=waits), late_values)
    return created
