"""The release controller (`llmops release watch`) in one region, as Kubernetes objects: its service account (IRSA),
a Role that lets it read the serving namespace's Deployments and HTTPRoutes and patch only the models' own, one
hardened replica, the runbook targets it reads in the cluster, and the Service and ServiceMonitor that scrape it.

Why one replica and no PodDisruptionBudget: the runbook lock (DynamoDB) already keeps two controllers from acting
on one model, and `Recreate` keeps two from running at once during an upgrade. Why patch by name: a controller
that could patch any Deployment in `serving` could patch its own pod template, and so run anything as itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from components.manifests.labels import standard_labels
from components.manifests.route import canary_backend, stable_backend
from components.manifests.workload import (
    cluster_ip_service,
    config_map,
    container_security_context,
    pod_security_context,
    resources,
    scratch_volume,
    service_account,
)
from components.release import fingerprint

NAME = "release-controller"
COMPONENT = "release-controller"
METRICS_PORT = 9109
TARGETS_DIR = "/etc/llmops/targets"  # LLMOPS_TARGETS_DIR: <env>.yaml and the stack file beside it
STATE_MOUNT = "/var/lib/llmops"  # an emptyDir: runbook journals and the controller's analysis state
STATE_DIR = f"{STATE_MOUNT}/runs"
TARGETS_CHECKSUM = "llmops.io/targets-checksum"
GATEWAY_GROUP = "gateway.networking.k8s.io"
READ = ["get", "list", "watch"]


@dataclass(frozen=True)
class ReleaseControllerSpec:
    environment: str
    region: str
    namespace: str
    image: str
    role_arn: str  # the IRSA role (a deploy-time value)
    models: tuple[str, ...]  # the models it judges: the only Deployments and HTTPRoutes it may patch
    targets: Mapping[str, Any]  # the runbook targets document (`targets_document`)
    stack_config: Mapping[str, Any]  # the stack's config, `llmops:<key>` -> value, as a stack file holds it
    tags: Mapping[str, str]


def records_prefix(region: str) -> str:
    """Where this region's controller writes audit records and evidence in the runbook bucket (and nowhere else)."""
    return f"{NAME}/{region}"


def stack_file_name(environment: str) -> str:
    return f"Pulumi.{environment}.yaml"


def targets_document(*, environment: str, region: str, operations_region: str, namespace: str, tracking_uri: str,
                     prometheus_url: str, lock_table: str, records_bucket: str, key_arn: str,
                     topic_arn: str) -> dict[str, Any]:
    """The runbook targets (runbooks/targets.py) the controller and the runbooks it launches read in the cluster:
    this region's registry and API server, the environment's lock, records and topic (in the primary region)."""
    records = f"s3://{records_bucket}/{records_prefix(region)}"
    return {
        "environment": environment,
        # A writable copy (the init container's): the runbooks pin their changes in it, and say so in their evidence
        # and notifications, for a person to commit to the repository.
        "stack_file": f"{STATE_MOUNT}/{stack_file_name(environment)}",
        "aws": {"region": operations_region},
        "registry": {"tracking_uri": tracking_uri},
        "kubernetes": {"in_cluster": True, "namespace": namespace},
        "prometheus": {"url": prometheus_url},
        "lock": {"table": lock_table},
        "audit": {"uri": f"{records}/audit", "kms_key_id": key_arn},
        "evidence": {"uri": f"{records}/evidence", "kms_key_id": key_arn},
        "notifications": {"topic_arn": topic_arn},
        "state_dir": STATE_DIR,
    }


def _labels(spec: ReleaseControllerSpec) -> dict[str, str]:
    return standard_labels(NAME, COMPONENT, spec.tags)


def _selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": COMPONENT}


def _metadata(spec: ReleaseControllerSpec, name: str = NAME) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": _labels(spec)}


def patchable(models: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Deployments, HTTPRoutes) the controller may patch: each model's stable and canary tracks and its route."""
    deployments = [name for model in models for name in (stable_backend(model), canary_backend(model))]
    return deployments, list(models)  # a model's HTTPRoute is named after it (manifests/vllm.py)


def role(spec: ReleaseControllerSpec) -> dict[str, Any]:
    """Namespaced, and only what a rollout needs: read Deployments (their status is the rollout's) and HTTPRoutes,
    patch the models' own. No pods, no secrets, nothing cluster-wide."""
    deployments, routes = patchable(spec.models)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _metadata(spec),
            "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": list(READ)},
                {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": deployments, "verbs": ["patch"]},
                {"apiGroups": [GATEWAY_GROUP], "resources": ["httproutes"], "verbs": list(READ)},
                {"apiGroups": [GATEWAY_GROUP], "resources": ["httproutes"], "resourceNames": routes,
                 "verbs": ["patch"]},
            ]}


def role_binding(spec: ReleaseControllerSpec) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _metadata(spec),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": spec.namespace}]}


def targets_data(spec: ReleaseControllerSpec) -> dict[str, str]:
    """The ConfigMap's files: `<env>.yaml` (load_targets) and the stack file the targets name."""
    return {f"{spec.environment}.yaml": yaml.safe_dump(dict(spec.targets), sort_keys=False),
            stack_file_name(spec.environment): yaml.safe_dump({"config": dict(spec.stack_config)}, sort_keys=False)}


def _container(spec: ReleaseControllerSpec) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/metrics", "port": "metrics"}, "timeoutSeconds": 5}
    return {
        "name": "controller",
        "image": spec.image,
        "command": ["llmops", "release", "watch", "--env", spec.environment, "--region", spec.region,
                    "--metrics-port", str(METRICS_PORT)],
        "env": [{"name": "LLMOPS_TARGETS_DIR", "value": TARGETS_DIR}, {"name": "HOME", "value": "/tmp"},
                {"name": "AWS_REGION", "value": spec.region}, {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": resources("500m", "1Gi"),
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3, "initialDelaySeconds": 20},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "targets", "mountPath": TARGETS_DIR, "readOnly": True},
                         {"name": "state", "mountPath": STATE_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment(spec: ReleaseControllerSpec) -> dict[str, Any]:
    labels = {**_labels(spec), **_selector()}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(spec),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "Recreate"},  # never two controllers at once, not even during an upgrade
            "selector": {"matchLabels": _selector()},
            "template": {
                # A new targets file or stack config restarts the controller (a mounted ConfigMap would change under it).
                "metadata": {"labels": labels, "annotations": {TARGETS_CHECKSUM: fingerprint(targets_data(spec))}},
                "spec": {
                    "serviceAccountName": NAME,
                    # The one workload here that mounts an API token: it reads and patches through the Kubernetes API.
                    "automountServiceAccountToken": True,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 60,  # time to journal the step in progress and release the lock
                    # The stack config is mounted read-only; the runbooks edit a copy of it in the state volume.
                    "initContainers": [{
                        "name": "stack-file", "image": spec.image,
                        "command": ["cp", f"{TARGETS_DIR}/{stack_file_name(spec.environment)}",
                                    f"{STATE_MOUNT}/{stack_file_name(spec.environment)}"],
                        "resources": resources("100m", "128Mi"), "securityContext": container_security_context(),
                        "volumeMounts": [{"name": "targets", "mountPath": TARGETS_DIR, "readOnly": True},
                                         {"name": "state", "mountPath": STATE_MOUNT}]}],
                    "containers": [_container(spec)],
                    "volumes": [{"name": "targets", "configMap": {"name": f"{NAME}-targets"}},
                                scratch_volume("state", "1Gi"), scratch_volume("tmp", "1Gi")],
                },
            },
        },
    }


def service_monitor(spec: ReleaseControllerSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": _metadata(spec),
        "spec": {"selector": {"matchLabels": _selector()}, "namespaceSelector": {"matchNames": [spec.namespace]},
                 "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]},
    }


def release_controller_objects(spec: ReleaseControllerSpec) -> list[dict[str, Any]]:
    """Every object of one region's controller. It needs at least one model with a rollout policy."""
    if not spec.models:
        raise ValueError("a release controller without a model to judge: give a model a rollout policy, or deploy none")
    clash = [model for model in spec.models if NAME in (stable_backend(model), canary_backend(model))]
    if clash:
        raise ValueError(f"model {clash[0]!r}: its Deployment would be named {NAME!r}, the release controller's")
    labels = _labels(spec)
    return [
        service_account(NAME, spec.namespace, labels, role_arn=spec.role_arn),
        role(spec),
        role_binding(spec),
        config_map(f"{NAME}-targets", spec.namespace, labels, targets_data(spec)),
        deployment(spec),
        cluster_ip_service(NAME, spec.namespace, labels, _selector(), {"metrics": METRICS_PORT}),
        service_monitor(spec),
    ]
