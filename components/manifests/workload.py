"""Building blocks every workload of ours shares: the restricted security context, writable scratch
volumes for a read-only root filesystem, and Kubernetes quantity spelling.

Pods built from these pass the `restricted` Pod Security Standard that our namespaces enforce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.manifests.labels import standard_labels

RUN_AS = 1000
RESTRICTED = "restricted"


def namespace(name: str, tags: Mapping[str, str], *, enforce: str = RESTRICTED) -> dict[str, Any]:
    labels = {**standard_labels(name, "namespace", tags), **{
        f"pod-security.kubernetes.io/{mode}": enforce for mode in ("enforce", "audit", "warn")}}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod_security_context(*, fs_group: bool = True) -> dict[str, Any]:
    context: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                               "seccompProfile": {"type": "RuntimeDefault"}}
    if fs_group:
        context["fsGroup"] = RUN_AS
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def container_security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def gib(value: float) -> str:
    return f"{int(value)}Gi" if float(value).is_integer() else f"{int(value * 1024)}Mi"


def resources(cpu: int | str, memory: str) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed QoS): such a pod is the last to be evicted under pressure."""
    amounts = {"cpu": str(cpu), "memory": memory}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def scratch_volume(name: str, size: str, *, memory: bool = False) -> dict[str, Any]:
    empty_dir: dict[str, Any] = {"sizeLimit": size}
    if memory:
        empty_dir["medium"] = "Memory"
    return {"name": name, "emptyDir": empty_dir}


def service_account(name: str, namespace_: str, labels: Mapping[str, str],
                    role_arn: str | None = None) -> dict[str, Any]:
    """A service account of its own; pods get no API token unless they mount one deliberately."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace_, "labels": dict(labels)}
    if role_arn:
        metadata["annotations"] = {"eks.amazonaws.com/role-arn": role_arn}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata, "automountServiceAccountToken": False}


def pod_disruption_budget(name: str, namespace_: str, labels: Mapping[str, str],
                          selector: Mapping[str, str]) -> dict[str, Any]:
    """At most one pod down by voluntary disruption; never blocks a node drain outright."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace_, "labels": dict(labels)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}}}


def cluster_ip_service(name: str, namespace_: str, labels: Mapping[str, str], selector: Mapping[str, str],
                       ports: Mapping[str, int]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace_, "labels": dict(labels)},
            "spec": {"type": "ClusterIP", "selector": dict(selector),
                     "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
                               for port_name, port in ports.items()]}}


def ingress_only_from(name: str, namespace_: str, labels: Mapping[str, str], pod_selector: Mapping[str, str],
                      ports: list[int], namespaces: list[str]) -> dict[str, Any]:
    """Deny all ingress to the selected pods except these ports from these namespaces."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace_, "labels": dict(labels)},
            "spec": {"podSelector": {"matchLabels": dict(pod_selector)}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
                                           for ns in namespaces],
                                  "ports": [{"protocol": "TCP", "port": port} for port in ports]}]}}


def config_map(name: str, namespace_: str, labels: Mapping[str, str], data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace_, "labels": dict(labels)},
            "data": dict(data)}
