"""The MLflow tracking server and its one-shot schema migration, as Kubernetes objects.

The database password never appears here: `secret_exec` reads the RDS-managed secret from
Secrets Manager at start (IRSA) and hands it to libpq as PGPASSWORD. The schema migration
runs once per MLflow image as a Job named after the image, never in the server's own
start-up, so replicas never race to migrate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
from components.release import fingerprint

NAME = "mlflow"
PORT = 5000
SCRIPTS = "/opt/llmops"


@dataclass(frozen=True)
class MlflowSpec:
    namespace: str
    image: str
    replicas: int
    role_arn: str
    region: str
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_secret_arn: str
    artifact_bucket: str
    client_namespaces: tuple[str, ...]
    scripts: Mapping[str, str]  # file name -> source, mounted at /opt/llmops
    tags: Mapping[str, str]


def tracking_uri(namespace: str) -> str:
    return f"http://{NAME}.{namespace}.svc:{PORT}"


def backend_store_uri(spec: MlflowSpec) -> str:
    # No password in the URI: libpq reads PGPASSWORD, which secret_exec sets. TLS is required.
    return f"postgresql://{spec.db_user}@{spec.db_host}:{spec.db_port}/{spec.db_name}?sslmode=require"


def _with_db_password(spec: MlflowSpec, command: list[str]) -> list[str]:
    return ["python", f"{SCRIPTS}/secret_exec.py", "--secret-arn", spec.db_secret_arn, "--region", spec.region,
            "--env", "PGPASSWORD=password", "--", *command]


def _labels(spec: MlflowSpec, component: str = "model-registry") -> dict[str, str]:
    return standard_labels(NAME, component, spec.tags)


def _pod_spec(spec: MlflowSpec, container: dict[str, Any], restart: str | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        # IRSA's web-identity token is projected by EKS; the Kubernetes API token is not needed.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [{"name": "scripts", "configMap": {"name": f"{NAME}-scripts"}}, scratch_volume("tmp", "2Gi")],
    }
    if restart:
        pod["restartPolicy"] = restart
    return pod


def _container(name: str, command: list[str], spec: MlflowSpec, cpu: int, memory: str) -> dict[str, Any]:
    return {
        "name": name, "image": spec.image, "command": command,
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "AWS_REGION", "value": spec.region},
                {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
        "resources": resources(cpu, memory),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "scripts", "mountPath": SCRIPTS, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def migration_job_name(image: str) -> str:
    return f"{NAME}-db-upgrade-{fingerprint({'image': image}, 10)}"


def migration_job(spec: MlflowSpec) -> dict[str, Any]:
    container = _container("db-upgrade", _with_db_password(
        spec, ["python", f"{SCRIPTS}/mlflow_migrate.py", backend_store_uri(spec)]), spec, 1, "1Gi")
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": migration_job_name(spec.image), "namespace": spec.namespace,
                     "labels": _labels(spec, "schema-migration")},
        "spec": {"backoffLimit": 3, "activeDeadlineSeconds": 1800,
                 "template": {"metadata": {"labels": _labels(spec, "schema-migration")},
                              "spec": _pod_spec(spec, container, restart="Never")}},
    }


def allowed_hosts(namespace: str) -> str:
    """MLflow 3 rejects unknown Host headers; allow the Service's names and pod IPs (kubelet probes)."""
    names = [NAME, f"{NAME}.{namespace}", f"{NAME}.{namespace}.svc", f"{NAME}.{namespace}.svc.cluster.local", "localhost"]
    return ",".join([*names, *(f"{n}:{PORT}" for n in names), "10.*", "172.*", "192.168.*"])


def server_deployment(spec: MlflowSpec) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "model-registry"}
    command = _with_db_password(spec, [
        "mlflow", "server", "--host", "0.0.0.0", "--port", str(PORT), "--workers", "2",
        "--backend-store-uri", backend_store_uri(spec),
        "--serve-artifacts", "--artifacts-destination", f"s3://{spec.artifact_bucket}/artifacts",
        "--allowed-hosts", allowed_hosts(spec.namespace),
    ])
    container = _container("mlflow", command, spec, 1, "2Gi")
    container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    container["readinessProbe"] = {**probe, "periodSeconds": 10, "failureThreshold": 3}
    container["livenessProbe"] = {**probe, "periodSeconds": 20, "failureThreshold": 6, "initialDelaySeconds": 30}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {"replicas": spec.replicas, "selector": {"matchLabels": selector},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": _labels(spec)},
                              "spec": {**_pod_spec(spec, container), "topologySpreadConstraints": [
                                  {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}]}}},
    }


def mlflow_objects(spec: MlflowSpec) -> list[dict[str, Any]]:
    selector = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "model-registry"}
    labels = _labels(spec)
    return [
        service_account(NAME, spec.namespace, labels, role_arn=spec.role_arn),
        config_map(f"{NAME}-scripts", spec.namespace, labels, spec.scripts),
        migration_job(spec),
        server_deployment(spec),
        cluster_ip_service(NAME, spec.namespace, labels, selector, {"http": PORT}),
        pod_disruption_budget(NAME, spec.namespace, labels, selector),
        ingress_only_from(NAME, spec.namespace, labels, selector, [PORT], [spec.namespace, *spec.client_namespaces]),
    ]
