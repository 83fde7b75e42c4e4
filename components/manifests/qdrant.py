"""Qdrant, the retrieval index: a StatefulSet on encrypted gp3 volumes, reachable only from inside
the cluster, with its API key from Secrets Manager and scheduled snapshots to S3.

The API key is fetched at pod start by an aws-cli init container into a memory-backed file
Qdrant reads as `config/local.yaml`; it is never in a manifest or a Kubernetes Secret.
Index versions are collections behind an alias (flipped by the reindex runbook); the
retrieval configs and their fingerprints are published in the `retrieval-config` ConfigMap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.manifests.labels import standard_labels
from components.manifests.workload import (
    config_map,
    container_security_context,
    ingress_only_from,
    pod_disruption_budget,
    pod_security_context,
    resources,
    scratch_volume,
    service_account,
)

NAME = "qdrant"
HTTP_PORT, GRPC_PORT = 6333, 6334
STORAGE_CLASS = "gp3-encrypted"

# Runs in the aws-cli image; the secret's ARN arrives as an environment variable, never in the script text.
FETCH_API_KEY = ('key=$(aws secretsmanager get-secret-value --secret-id "$API_KEY_SECRET_ARN" '
                 '--query SecretString --output text) && '
                 'printf \'service:\\n  api_key: "%s"\\n\' "$key" > /run/qdrant/local.yaml')
FETCH_API_KEY_FILE = ('aws secretsmanager get-secret-value --secret-id "$API_KEY_SECRET_ARN" '
                      '--query SecretString --output text > /run/qdrant/api-key')
# Runs in the curl image: take a full snapshot (all collections and aliases), download it, delete it from the pod.
TAKE_SNAPSHOT = (
    'set -eu; key=$(cat /run/qdrant/api-key); base="http://qdrant.$NAMESPACE.svc:6333"; '
    'name=$(curl -fsS -X POST -H "api-key: $key" "$base/snapshots?wait=true" | sed -n \'s/.*"name":"\\([^"]*\\)".*/\\1/p\'); '
    'test -n "$name"; curl -fsS -H "api-key: $key" -o "/snapshots/$name" "$base/snapshots/$name"; '
    'curl -fsS -X DELETE -H "api-key: $key" "$base/snapshots/$name?wait=true" > /dev/null; echo "$name" > /snapshots/NAME')
UPLOAD_SNAPSHOT = ('set -eu; name=$(cat /snapshots/NAME); aws s3 cp "/snapshots/$name" '
                   '"s3://$BUCKET/qdrant/$(date -u +%Y/%m/%d)/$name" '
                   '--sse aws:kms --sse-kms-key-id "$KMS_KEY_ARN" --only-show-errors')


@dataclass(frozen=True)
class QdrantSpec:
    namespace: str
    image: str
    aws_cli_image: str
    curl_image: str
    storage_gib: int
    region: str
    server_role_arn: str
    snapshot_role_arn: str
    api_key_secret_arn: str
    snapshot_bucket: str
    kms_key_arn: str
    snapshot_schedule: str
    retrieval_configs: Mapping[str, Mapping[str, Any]]  # index name -> config with its fingerprint
    client_namespaces: tuple[str, ...]
    tags: Mapping[str, str]
    # The freshness CronJob (when configured): image, Pushgateway, schedule, its IRSA role; indexes with a corpus.
    freshness_image: str | None = None
    freshness_pushgateway: str | None = None
    freshness_schedule: str = "*/15 * * * *"
    freshness_role_arn: str | None = None


def _aws_cli(spec: QdrantSpec, name: str, script: str, env: Mapping[str, str], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "image": spec.aws_cli_image, "command": ["sh", "-c", script],
            "env": [{"name": "AWS_REGION", "value": spec.region}, {"name": "HOME", "value": "/tmp"},
                    *({"name": k, "value": v} for k, v in env.items())],
            "resources": resources(1, "512Mi"), "securityContext": container_security_context(),
            "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}]}


def statefulset(spec: QdrantSpec) -> dict[str, Any]:
    labels = standard_labels(NAME, "retrieval-index", spec.tags)
    selector = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "retrieval-index"}
    probe_port = {"httpGet": {"path": "/readyz", "port": "http"}, "timeoutSeconds": 5}
    qdrant = {
        "name": "qdrant", "image": spec.image,
        "env": [{"name": "QDRANT__STORAGE__STORAGE_PATH", "value": "/qdrant/storage"},
                {"name": "QDRANT__STORAGE__SNAPSHOTS_PATH", "value": "/qdrant/snapshots"},
                {"name": "QDRANT__STORAGE__TEMP_PATH", "value": "/tmp"},
                {"name": "QDRANT__TELEMETRY_DISABLED", "value": "true"}],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}],
        "resources": resources(2, "8Gi"),
        "readinessProbe": {**probe_port, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "timeoutSeconds": 5, "periodSeconds": 10,
                          "failureThreshold": 6},
        "startupProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10, "failureThreshold": 60},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "storage", "mountPath": "/qdrant/storage"},
                         {"name": "snapshots", "mountPath": "/qdrant/snapshots"},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "secret-config", "mountPath": "/qdrant/config/local.yaml", "subPath": "local.yaml",
                          "readOnly": True}],
    }
    fetch = _aws_cli(spec, "api-key", FETCH_API_KEY, {"API_KEY_SECRET_ARN": spec.api_key_secret_arn},
                     [{"name": "secret-config", "mountPath": "/run/qdrant"}])
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": NAME, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "serviceName": f"{NAME}-headless", "replicas": 1, "selector": {"matchLabels": selector},
            "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": NAME, "automountServiceAccountToken": False,
                "securityContext": pod_security_context(), "terminationGracePeriodSeconds": 60,
                "initContainers": [fetch], "containers": [qdrant],
                "volumes": [scratch_volume("secret-config", "1Mi", memory=True), scratch_volume("tmp", "4Gi"),
                            scratch_volume("snapshots", f"{spec.storage_gib}Gi")],
            }},
            "volumeClaimTemplates": [{"metadata": {"name": "storage", "labels": labels}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                "resources": {"requests": {"storage": f"{spec.storage_gib}Gi"}}}}],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        },
    }


def snapshot_cronjob(spec: QdrantSpec) -> dict[str, Any]:
    labels = standard_labels(NAME, "index-snapshot", spec.tags)
    shared = [{"name": "api-key", "mountPath": "/run/qdrant"}, {"name": "snapshots", "mountPath": "/snapshots"}]
    fetch_key = _aws_cli(spec, "api-key", FETCH_API_KEY_FILE, {"API_KEY_SECRET_ARN": spec.api_key_secret_arn}, [shared[0]])
    take = {"name": "snapshot", "image": spec.curl_image, "command": ["sh", "-c", TAKE_SNAPSHOT],
            "env": [{"name": "NAMESPACE", "value": spec.namespace}], "resources": resources(1, "256Mi"),
            "securityContext": container_security_context(), "volumeMounts": shared}
    upload = _aws_cli(spec, "upload", UPLOAD_SNAPSHOT, {"BUCKET": spec.snapshot_bucket, "KMS_KEY_ARN": spec.kms_key_arn},
                      [shared[1]])
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": f"{NAME}-snapshot", "namespace": spec.namespace, "labels": labels},
        "spec": {"schedule": spec.snapshot_schedule, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 600,
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                 "jobTemplate": {"spec": {"backoffLimit": 2, "activeDeadlineSeconds": 7200, "template": {
                     "metadata": {"labels": labels},
                     "spec": {"serviceAccountName": f"{NAME}-snapshot", "automountServiceAccountToken": False,
                              "securityContext": pod_security_context(), "restartPolicy": "Never",
                              "initContainers": [fetch_key, take], "containers": [upload],
                              "volumes": [scratch_volume("api-key", "1Mi", memory=True), scratch_volume("tmp", "1Gi"),
                                          scratch_volume("snapshots", f"{spec.storage_gib}Gi")]}}}}},
    }


def freshness_cronjob(spec: QdrantSpec, index: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """`llmops retrieval freshness` on a schedule: the live index against its corpus, pushed for the index alerts."""
    labels = standard_labels(NAME, "index-freshness", spec.tags)
    fetch_key = _aws_cli(spec, "api-key", FETCH_API_KEY_FILE, {"API_KEY_SECRET_ARN": spec.api_key_secret_arn},
                         [{"name": "api-key", "mountPath": "/run/qdrant"}])
    check = {"name": "freshness", "image": spec.freshness_image,
             "command": ["llmops", "retrieval", "freshness", "--index", index, "--corpus", config["corpus"],
                         "--serving-fingerprint", config["fingerprint"],
                         "--qdrant-url", f"http://{NAME}.{spec.namespace}.svc:{HTTP_PORT}",
                         "--qdrant-api-key-file", "/run/qdrant/api-key", "--pushgateway", spec.freshness_pushgateway,
                         "--region", spec.region],
             "resources": resources(1, "512Mi"), "securityContext": container_security_context(),
             "volumeMounts": [{"name": "api-key", "mountPath": "/run/qdrant", "readOnly": True},
                              {"name": "tmp", "mountPath": "/tmp"}]}
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": f"{NAME}-freshness-{index}", "namespace": spec.namespace, "labels": labels},
        "spec": {"schedule": spec.freshness_schedule, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 300,
                 "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 3,
                 "jobTemplate": {"spec": {"backoffLimit": 1, "activeDeadlineSeconds": 900, "template": {
                     "metadata": {"labels": labels},
                     "spec": {"serviceAccountName": f"{NAME}-freshness", "automountServiceAccountToken": False,
                              "securityContext": pod_security_context(), "restartPolicy": "Never",
                              "initContainers": [fetch_key], "containers": [check],
                              "volumes": [scratch_volume("api-key", "1Mi", memory=True),
                                          scratch_volume("tmp", "256Mi")]}}}}},
    }


def qdrant_objects(spec: QdrantSpec) -> list[dict[str, Any]]:
    labels = standard_labels(NAME, "retrieval-index", spec.tags)
    selector = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "retrieval-index"}
    ports = [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
             {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"}]
    return [
        service_account(NAME, spec.namespace, labels, role_arn=spec.server_role_arn),
        service_account(f"{NAME}-snapshot", spec.namespace, standard_labels(NAME, "index-snapshot", spec.tags),
                        role_arn=spec.snapshot_role_arn),
        config_map("retrieval-config", spec.namespace, labels,
                   {f"{name}.json": json.dumps(config, sort_keys=True, indent=2)
                    for name, config in spec.retrieval_configs.items()}),
        statefulset(spec),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": spec.namespace, "labels": labels},
         "spec": {"type": "ClusterIP", "selector": selector, "ports": ports}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": f"{NAME}-headless", "namespace": spec.namespace, "labels": labels},
         "spec": {"clusterIP": "None", "selector": selector, "ports": ports, "publishNotReadyAddresses": True}},
        pod_disruption_budget(NAME, spec.namespace, labels, selector),
        ingress_only_from(NAME, spec.namespace, labels, selector, [HTTP_PORT, GRPC_PORT],
                          [spec.namespace, *spec.client_namespaces]),
        snapshot_cronjob(spec),
    ] + _freshness_objects(spec)


def _freshness_objects(spec: QdrantSpec) -> list[dict[str, Any]]:
    indexes = {name: config for name, config in spec.retrieval_configs.items() if config.get("corpus")}
    if not spec.freshness_image or not indexes:
        return []
    account = service_account(f"{NAME}-freshness", spec.namespace, standard_labels(NAME, "index-freshness", spec.tags),
                              role_arn=spec.freshness_role_arn)
    return [account, *(freshness_cronjob(spec, name, config) for name, config in sorted(indexes.items()))]
