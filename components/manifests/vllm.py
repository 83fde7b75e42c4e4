"""vLLM serving objects for one model: stable, canary and shadow Deployments, Services, disruption budgets,
weighted Gateway API routing (with sticky buckets and a request mirror to the shadow), KEDA autoscaling on queue
depth, and a ServiceMonitor.

What the reference deployments get wrong and this gets right:
- the startup budget grows with the weights instead of a fixed ten minutes;
- a rollout surges only when the pool has the spare GPUs for it, otherwise it replaces in place;
- weights are fetched from the registry version the release pins (never a moving alias, never a hub);
- the pod runs non-root with a read-only root filesystem, and writes only to scratch volumes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.manifests.labels import standard_labels
from components.manifests.route import (
    SHADOW,
    STABLE,
    STICKY_ANNOTATION,
    backend_name,
    backend_refs,
    mirror_filter,
    sticky_rules,
)
from components.manifests.workload import (
    cluster_ip_service,
    container_security_context,
    gib,
    pod_disruption_budget,
    pod_security_context,
    resources,
    scratch_volume,
    service_account,
)
from components.release import ReleaseParts
from components.scheduling import GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL

PORT = 8000
MODEL_DIR = "/models"
STARTUP_PERIOD_SECONDS = 10
# Registry download speed assumed for the rollout deadline (the init container is not probed).
DOWNLOAD_SECONDS_PER_GIB = 10
MODEL_LABEL, TRACK_LABEL = "llmops.io/model", "llmops.io/track"
VERSION_LABEL, RELEASE_LABEL = "llmops.io/version", "llmops.io/release"
RELEASE_ANNOTATION, RELEASE_PARTS_ANNOTATION = "llmops.io/release-id", "llmops.io/release"
# What a shadow's objects carry: it is reached by the route's RequestMirror filter only, never as a backendRef.
TRAFFIC_LABEL, MIRRORED = "llmops.io/traffic", "mirrored"
# What the serving container's request logger writes into every request-log record: `model`, `track` and `release`
# (the release id), so stable, canary and shadow answers to the same requests can be told apart and compared.
REQUEST_LOG_ENV = {"model": "LLMOPS_MODEL", "track": "LLMOPS_TRACK", "release": "LLMOPS_RELEASE_ID"}
# The request header the logger takes `request_id` from: the gateway sets it once and copies it onto the mirrored
# request, so the stable's (or canary's) record and the shadow's of the same request share an id and can be joined.
REQUEST_ID_HEADER, REQUEST_ID_HEADER_ENV = "x-request-id", "LLMOPS_REQUEST_ID_HEADER"


@dataclass(frozen=True)
class Track:
    """One Deployment's worth of a model: the stable release, the canary or the shadow."""
    name: str  # route.STABLE, route.CANARY or route.SHADOW
    release: ReleaseParts
    replicas: int
    weight: int  # percent of requests; the stable track's is route.stable_weight(the canary's); the shadow's: mirrored


@dataclass(frozen=True)
class VllmSpec:
    name: str
    namespace: str
    image: str
    pool: str
    tensor_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    size_gib: int
    cache_gib: int
    cpu: int
    memory_gib: int
    min_replicas: int
    max_replicas: int
    queue_depth_target: int
    startup_base_seconds: int
    startup_seconds_per_gib: float
    surge: int  # 1 when the pool has spare GPUs for one more replica during a rollout, else 0
    registry_uri: str
    fetch_image: str
    hostnames: tuple[str, ...]
    gateway: tuple[str, str]  # (namespace, name)
    prometheus_url: str
    stable: Track
    canary: Track | None
    tags: Mapping[str, str]
    shadow: Track | None = None  # gets `weight` percent of the requests mirrored; its answers are discarded
    sticky_header: str | None = None  # with a canary: the header whose bucket pins a request to a track


def serving_args(*, name: str, model_dir: str, tensor_parallel_size: int, max_model_len: int,
                 gpu_memory_utilization: float) -> list[str]:
    """The vLLM OpenAI server's arguments; part of the release id."""
    return [model_dir, "--served-model-name", name, "--tensor-parallel-size", str(tensor_parallel_size),
            "--max-model-len", str(max_model_len), "--gpu-memory-utilization", f"{gpu_memory_utilization:g}",
            "--host", "0.0.0.0", "--port", str(PORT)]


def model_dir(registered_model: str, version: str) -> str:
    return f"{MODEL_DIR}/{registered_model}/{version}"


def startup_budget_seconds(size_gib: int, base_seconds: int, seconds_per_gib: float) -> int:
    """How long vLLM may take to become healthy: engine start plus loading the weights."""
    return int(math.ceil(base_seconds + size_gib * seconds_per_gib))


def startup_failure_threshold(spec: VllmSpec) -> int:
    budget = startup_budget_seconds(spec.size_gib, spec.startup_base_seconds, spec.startup_seconds_per_gib)
    return math.ceil(budget / STARTUP_PERIOD_SECONDS)


def progress_deadline_seconds(spec: VllmSpec) -> int:
    """Download, load and a margin: a slow but healthy rollout must not be reported as failed."""
    budget = startup_budget_seconds(spec.size_gib, spec.startup_base_seconds, spec.startup_seconds_per_gib)
    return budget + spec.size_gib * DOWNLOAD_SECONDS_PER_GIB + 300


def cold_start_seconds(size_gib: int, base_seconds: int, seconds_per_gib: float, node_start_seconds: int) -> int:
    """A cold standby's recovery time for one model: a GPU node from launch to Ready, the weights downloaded
    from the registry, then loaded."""
    return node_start_seconds + size_gib * DOWNLOAD_SECONDS_PER_GIB + startup_budget_seconds(size_gib, base_seconds,
                                                                                            seconds_per_gib)


def shm_gib(memory_gib: int) -> int:
    # NCCL needs shared memory for tensor parallelism; it counts against the memory limit.
    return max(1, min(16, memory_gib // 4))


def deployment_name(spec: VllmSpec, track: Track) -> str:
    """The Deployment and the Service share the track's backend name: the route addresses the Service by it."""
    return backend_name(spec.name, track.name)


def _labels(spec: VllmSpec, track: Track | None = None) -> dict[str, str]:
    labels = {**standard_labels(spec.name, "llm-serving", spec.tags), MODEL_LABEL: spec.name}
    if track is not None:
        labels.update({TRACK_LABEL: track.name, VERSION_LABEL: track.release.model_version,
                       RELEASE_LABEL: track.release.release_id})
        if track.name == SHADOW:
            labels[TRAFFIC_LABEL] = MIRRORED
    return labels


def _selector(spec: VllmSpec, track: Track) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, TRACK_LABEL: track.name}


def _release_annotations(track: Track) -> dict[str, str]:
    return {RELEASE_ANNOTATION: track.release.release_id,
            RELEASE_PARTS_ANNOTATION: json.dumps(track.release.to_dict(), sort_keys=True)}


def _fetch_container(spec: VllmSpec, track: Track) -> dict[str, Any]:
    release = track.release
    return {
        "name": "model-fetch",
        "image": spec.fetch_image,
        # The version the release pins, through the registry (which proxies the artifact store).
        "command": ["mlflow", "artifacts", "download",
                    "--artifact-uri", f"models:/{release.registered_model}/{release.model_version}",
                    "--dst-path", model_dir(release.registered_model, release.model_version)],
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": spec.registry_uri}, {"name": "HOME", "value": "/tmp"}],
        "resources": resources(2, "4Gi"),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "model-cache", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def _vllm_container(spec: VllmSpec, track: Track) -> dict[str, Any]:
    release = track.release
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    return {
        "name": "vllm",
        "image": spec.image,
        "command": ["vllm", "serve"],
        "args": list(release.serving_args),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "HOME", "value": "/home/vllm"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},  # weights come from the registry only
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "DO_NOT_TRACK", "value": "1"},
            *request_log_env(spec.name, track),
        ],
        "resources": _gpu_resources(spec),
        "startupProbe": {**probe, "periodSeconds": STARTUP_PERIOD_SECONDS, "failureThreshold": startup_failure_threshold(spec)},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}},  # let the gateway stop routing first
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "model-cache", "mountPath": MODEL_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "home", "mountPath": "/home/vllm"},
        ],
    }


def request_log_env(model: str, track: Track) -> list[dict[str, str]]:
    """The env vars the request logger copies into each record (REQUEST_LOG_ENV: record field -> variable)."""
    values = {"model": model, "track": track.name, "release": track.release.release_id}
    return [*({"name": variable, "value": values[field]} for field, variable in REQUEST_LOG_ENV.items()),
            {"name": REQUEST_ID_HEADER_ENV, "value": REQUEST_ID_HEADER}]


def _gpu_resources(spec: VllmSpec) -> dict[str, Any]:
    amounts = {"cpu": str(spec.cpu), "memory": gib(spec.memory_gib), GPU_RESOURCE: str(spec.tensor_parallel_size)}
    return {"requests": {**amounts, "ephemeral-storage": gib(spec.cache_gib + 10)}, "limits": dict(amounts)}


def deployment(spec: VllmSpec, track: Track, *, autoscaled: bool) -> dict[str, Any]:
    labels = _labels(spec, track)
    selector = _selector(spec, track)
    deployment_spec: dict[str, Any] = {
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": progress_deadline_seconds(spec),
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": spec.surge, "maxUnavailable": 0 if spec.surge else 1}},
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": {**labels, **selector}, "annotations": _release_annotations(track)},
            "spec": {
                "serviceAccountName": spec.name,
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(),
                "nodeSelector": {POOL_LABEL: spec.pool},
                "tolerations": [GPU_TOLERATION],
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                     "labelSelector": {"matchLabels": selector}}
                    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                ],
                "terminationGracePeriodSeconds": 120,
                "initContainers": [_fetch_container(spec, track)],
                "containers": [_vllm_container(spec, track)],
                "volumes": [
                    scratch_volume("dshm", gib(shm_gib(spec.memory_gib)), memory=True),
                    scratch_volume("model-cache", gib(spec.cache_gib)),
                    scratch_volume("tmp", "4Gi"),
                    scratch_volume("home", "8Gi"),  # torch.compile and Triton caches
                ],
            },
        },
    }
    if not autoscaled or track.replicas == 0:
        # An autoscaled Deployment's size belongs to the HPA -- except a cold standby's, held at 0 so no pod asks
        # for a GPU node until failover scales it up.
        deployment_spec["replicas"] = track.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": deployment_name(spec, track), "namespace": spec.namespace, "labels": labels,
                         "annotations": _release_annotations(track)},
            "spec": deployment_spec}


def http_route(spec: VllmSpec) -> dict[str, Any]:
    """rules[0] weighs stable and canary for every request; with a sticky canary, rules after it pin each bucket
    of the sticky header to a track; with a shadow, every rule mirrors samplePercent of its requests to it."""
    backends = backend_refs(spec.name, PORT, spec.canary.weight if spec.canary else None)
    gateway_namespace, gateway_name = spec.gateway
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}], "backendRefs": backends}
    if spec.shadow is not None:
        rule["filters"] = [mirror_filter(spec.name, PORT, spec.shadow.weight)]
    rule["timeouts"] = {"request": "600s"}  # long generations stream for minutes
    rules = [rule]
    metadata: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace, "labels": _labels(spec)}
    if spec.canary is not None and spec.sticky_header is not None:
        rules += sticky_rules(spec.name, PORT, spec.canary.weight, spec.sticky_header, rule)
        metadata["annotations"] = {STICKY_ANNOTATION: spec.sticky_header}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": metadata,
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway_name,
                            "namespace": gateway_namespace}],
            "hostnames": list(spec.hostnames),
            "rules": rules,
        },
    }


def scaled_object(spec: VllmSpec) -> dict[str, Any]:
    query = f'sum(vllm:num_requests_waiting{{namespace="{spec.namespace}",service="{spec.name}"}})'
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {
            "scaleTargetRef": {"name": spec.name},
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": spec.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                # GPU nodes and weights take minutes to arrive: add one replica a minute, shed slowly.
                "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 600,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
            }}},
            "triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": spec.prometheus_url, "query": query, "threshold": str(spec.queue_depth_target)}}],
        },
    }


def service_monitor(spec: VllmSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {"selector": {"matchLabels": {MODEL_LABEL: spec.name}},
                 "namespaceSelector": {"matchNames": [spec.namespace]},
                 "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]},
    }


def vllm_objects(spec: VllmSpec) -> list[dict[str, Any]]:
    """Every object one model needs. A canary appears only with a weight above zero, a shadow only when configured."""
    autoscaled = spec.max_replicas > spec.min_replicas
    objects = [service_account(spec.name, spec.namespace, _labels(spec))]
    for track in [spec.stable] + [t for t in (spec.canary, spec.shadow) if t is not None]:
        name = deployment_name(spec, track)
        objects.append(deployment(spec, track, autoscaled=autoscaled and track.name == STABLE))
        objects.append(cluster_ip_service(name, spec.namespace, _labels(spec, track), _selector(spec, track), {"http": PORT}))
        objects.append(pod_disruption_budget(name, spec.namespace, _labels(spec, track), _selector(spec, track)))
    objects.append(http_route(spec))
    if autoscaled:
        objects.append(scaled_object(spec))
    objects.append(service_monitor(spec))
    return objects
