"""The Feast feature server and its materialization CronJob, as Kubernetes objects.

`feature_store.yaml` comes from a jinja2 template (components/templates) and holds no
secret: Feast expands `${REDIS_PASSWORD}`, which `secret_exec` reads from Secrets Manager
at start. The registry lives in a versioned S3 bucket, so it survives any pod or node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from components.manifests.labels import standard_labels
from components.manifests.workload import (
    cluster_ip_service,
    config_map,
    container_security_context,
    ingress_only_from,
    pod_disruption_budget,
    pod_security_context,
    resources,
    scratch_volume,
    service_account,
)

NAME = "feast"
PORT = 6566
REPO = "/etc/feast"
SCRIPTS = "/opt/llmops"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_ENVIRONMENT = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                  keep_trailing_newline=True, autoescape=False)


def render_feature_store_yaml(*, project: str, bucket: str, redis_host: str, redis_port: int) -> str:
    return _ENVIRONMENT.get_template("feature_store.yaml.j2").render(
        project=project, bucket=bucket, redis_host=redis_host, redis_port=redis_port)


@dataclass(frozen=True)
class FeastSpec:
    namespace: str
    image: str
    replicas: int
    role_arn: str
    region: str
    secret_arn: str  # {"password": ...}
    feature_store_yaml: str
    materialize_schedule: str
    client_namespaces: tuple[str, ...]
    scripts: Mapping[str, str]
    tags: Mapping[str, str]


def _with_redis_password(spec: FeastSpec, command: list[str]) -> list[str]:
    return ["python", f"{SCRIPTS}/secret_exec.py", "--secret-arn", spec.secret_arn, "--region", spec.region,
            "--env", "REDIS_PASSWORD=password", "--", *command]


def _container(name: str, spec: FeastSpec, command: list[str], cpu: int, memory: str) -> dict[str, Any]:
    return {
        "name": name, "image": spec.image, "command": _with_redis_password(spec, command), "workingDir": REPO,
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "AWS_REGION", "value": spec.region},
                {"name": "FEAST_USAGE", "value": "False"}],
        "resources": resources(cpu, memory),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "repo", "mountPath": REPO, "readOnly": True},
                         {"name": "scripts", "mountPath": SCRIPTS, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }


def _pod(spec: FeastSpec, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "serviceAccountName": NAME, "automountServiceAccountToken": False,
        "securityContext": pod_security_context(), "containers": [container],
        "volumes": [{"name": "repo", "configMap": {"name": f"{NAME}-repo"}},
                    {"name": "scripts", "configMap": {"name": f"{NAME}-scripts"}}, scratch_volume("tmp", "2Gi")],
    }


def feast_objects(spec: FeastSpec) -> list[dict[str, Any]]:
    labels = standard_labels(NAME, "feature-store", spec.tags)
    selector = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "feature-store"}
    server = _container("feature-server", spec, ["feast", "serve", "--host", "0.0.0.0", "--port", str(PORT)], 1, "2Gi")
    server["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    probe = {"tcpSocket": {"port": "http"}, "timeoutSeconds": 5}
    server["readinessProbe"] = {**probe, "periodSeconds": 10}
    server["livenessProbe"] = {**probe, "periodSeconds": 20, "failureThreshold": 6, "initialDelaySeconds": 30}
    # No shell: the end of the window is computed in Python at run time.
    materialize = _container("materialize", spec, [
        "python", "-c",
        "from datetime import datetime, timezone; from feast import FeatureStore; "
        f"FeatureStore(repo_path='{REPO}').materialize_incremental(end_date=datetime.now(timezone.utc))"], 2, "4Gi")
    job_labels = standard_labels(NAME, "materialization", spec.tags)
    return [
        service_account(NAME, spec.namespace, labels, role_arn=spec.role_arn),
        config_map(f"{NAME}-repo", spec.namespace, labels, {"feature_store.yaml": spec.feature_store_yaml}),
        config_map(f"{NAME}-scripts", spec.namespace, labels, spec.scripts),
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": NAME, "namespace": spec.namespace, "labels": labels},
         "spec": {"replicas": spec.replicas, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": labels}, "spec": _pod(spec, server)}}},
        cluster_ip_service(NAME, spec.namespace, labels, selector, {"http": PORT}),
        pod_disruption_budget(NAME, spec.namespace, labels, selector),
        {"apiVersion": "batch/v1", "kind": "CronJob",
         "metadata": {"name": f"{NAME}-materialize", "namespace": spec.namespace, "labels": job_labels},
         "spec": {"schedule": spec.materialize_schedule, "concurrencyPolicy": "Forbid",
                  "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3, "startingDeadlineSeconds": 300,
                  "jobTemplate": {"spec": {"backoffLimit": 2, "activeDeadlineSeconds": 3600, "template": {
                      "metadata": {"labels": job_labels},
                      "spec": {**_pod(spec, materialize), "restartPolicy": "Never"}}}}}},
        ingress_only_from(NAME, spec.namespace, labels, selector, [PORT], [spec.namespace, *spec.client_namespaces]),
    ]
