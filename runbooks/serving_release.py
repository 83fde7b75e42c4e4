"""What the runbooks that change the release a model's stable Deployment serves share (rollback, promote): their
backends, the registry's rolled-back marker, the JSON patch that moves the Deployment to a release (guarded by a `test`
of the release it saw), the wait for its rollout, and the SLO verification on Prometheus. One copy, so a rollback and
a promotion patch, wait and judge alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.manifests.alert_rules import availability_error_ratio, latency_error_ratio
from components.manifests.vllm import RELEASE_ANNOTATION, RELEASE_LABEL, RELEASE_PARTS_ANNOTATION, VERSION_LABEL, model_dir
from components.release import ReleaseParts
from runbooks.engine import StepFailed, WorldChanged
from runbooks.ports import Cluster, Registry, Signals
from runbooks.targets import Rollout, Targets, Verification, require

PRODUCTION = "production"  # the registry alias of what serves
# On a version a rollback moved away from: {"run_id", "to", "at", "by"}. Never chosen as known-good, nor promoted.
ROLLED_BACK_TAG = "llmops.rolled_back"


@dataclass
class ServingBackends:
    targets: Targets
    registry: Registry
    cluster: Cluster
    signals: Signals


def connect_serving(targets: Targets, runbook: str) -> ServingBackends:
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster
    from runbooks.adapters.mlflow_registry import MlflowRegistry
    from runbooks.adapters.prometheus import Prometheus

    require(targets, runbook, "registry", "kubernetes", "prometheus")
    assert targets.registry and targets.kubernetes and targets.prometheus
    k8s = targets.kubernetes
    return ServingBackends(targets=targets, registry=MlflowRegistry(targets.registry.tracking_uri),
                           cluster=KubernetesCluster(host=k8s.host, context=k8s.context, kubeconfig=k8s.kubeconfig,
                                                      in_cluster=k8s.in_cluster),
                           signals=Prometheus(targets.prometheus.url))


def rolled_back(version: dict[str, Any] | None) -> dict[str, Any] | None:
    """The rollback marker on a registry version (which run rolled back from it, to what), or None."""
    raw = (version or {}).get("tags", {}).get(ROLLED_BACK_TAG)
    try:
        found = json.loads(raw) if raw else None
    except ValueError:
        found = {"run_id": "?", "to": None}  # a damaged marker still marks the version
    return found if isinstance(found, dict) else None


# --- the stable Deployment ------------------------------------------------------------------------------------

def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")  # JSON pointer


def _container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    return next(c for c in pod.get("containers") or [] if c["name"] == name)


def image_with(deployment: dict[str, Any], digest: str) -> str:
    """The Deployment's vLLM image (its repository) at `digest`."""
    return _container(deployment, "vllm")["image"].rsplit("@", 1)[0] + "@" + digest


def deployed_release(deployment: dict[str, Any] | None) -> str | None:
    """The release id a Deployment's annotation names (None: no Deployment, or not deployed by this stack)."""
    return ((deployment or {}).get("metadata", {}).get("annotations") or {}).get(RELEASE_ANNOTATION)


def patch_to_release(cluster: Cluster, namespace: str, name: str, parts: ReleaseParts, image: str) -> dict[str, Any]:
    """Point the Deployment at `parts`: weights, args, image, the model-fetch command, release labels and annotations,
    in one JSON patch guarded by a `test` of the release it was read with (a concurrent change fails it whole)."""
    deployment = cluster.deployment(namespace, name)
    if deployment is None:
        raise WorldChanged(f"Deployment {namespace}/{name} is gone since the plan; re-plan")
    pod = deployment["spec"]["template"]["spec"]
    vllm = next(i for i, c in enumerate(pod["containers"]) if c["name"] == "vllm")
    fetch = next(i for i, c in enumerate(pod.get("initContainers") or []) if c["name"] == "model-fetch")
    fetch_command = list(pod["initContainers"][fetch]["command"])
    fetch_command[fetch_command.index("--artifact-uri") + 1] = f"models:/{parts.registered_model}/{parts.model_version}"
    fetch_command[fetch_command.index("--dst-path") + 1] = model_dir(parts.registered_model, parts.model_version)
    annotations = {RELEASE_ANNOTATION: parts.release_id, RELEASE_PARTS_ANNOTATION: json.dumps(parts.to_dict(), sort_keys=True)}
    labels = {VERSION_LABEL: parts.model_version, RELEASE_LABEL: parts.release_id}
    operations: list[dict[str, Any]] = [
        {"op": "test", "path": f"/metadata/annotations/{_escape(RELEASE_ANNOTATION)}", "value": deployed_release(deployment)}]
    for root in ("/metadata", "/spec/template/metadata"):
        operations += [{"op": "replace", "path": f"{root}/annotations/{_escape(k)}", "value": v} for k, v in annotations.items()]
        operations += [{"op": "replace", "path": f"{root}/labels/{_escape(k)}", "value": v} for k, v in labels.items()]
    operations += [
        {"op": "replace", "path": f"/spec/template/spec/containers/{vllm}/args", "value": list(parts.serving_args)},
        {"op": "replace", "path": f"/spec/template/spec/containers/{vllm}/image", "value": image},
        {"op": "replace", "path": f"/spec/template/spec/initContainers/{fetch}/command", "value": fetch_command},
    ]
    cluster.patch_deployment(namespace, name, operations)
    return {"release": parts.release_id, "patched_at": time.time()}


def rollout_complete(cluster: Cluster, namespace: str, name: str, release_id: str) -> bool:
    """Every replica of the Deployment runs `release_id`, and the controller has seen the latest spec."""
    deployment = cluster.deployment(namespace, name)
    if deployment is None:
        return False
    metadata, status = deployment["metadata"], deployment.get("status") or {}
    wanted = deployment["spec"].get("replicas") or status.get("replicas") or 1
    observed = metadata.get("generation") is None or (status.get("observedGeneration") or 0) >= metadata["generation"]
    counts = [status.get(k) or 0 for k in ("updatedReplicas", "availableReplicas", "replicas")]
    return deployed_release(deployment) == release_id and observed and counts == [wanted, wanted, wanted]


def wait_for_rollout(cluster: Cluster, namespace: str, name: str, release_id: str, *, timing: Rollout, deadline: float,
                     progress: Callable[[str], None], what: str) -> dict[str, Any]:
    """Poll until the rollout to `release_id` completes (`what` names the release in progress lines)."""
    began = time.monotonic()
    deadline = min(deadline, began + timing.timeout_seconds)
    while not rollout_complete(cluster, namespace, name, release_id):
        if time.monotonic() + timing.poll_seconds > deadline:
            raise StepFailed(f"the rollout of {name} did not complete within the step's timeout")
        progress(f"  wait-for-rollout: {name} not yet fully on {what} ({time.monotonic() - began:.0f}s)")
        time.sleep(timing.poll_seconds)
    return {"completed_at": time.time(), "waited_seconds": round(time.monotonic() - began, 3)}


# --- the SLOs on Prometheus -------------------------------------------------------------------------------------

def slo_readings(signals: Signals, service: str, namespace: str, slo: dict[str, float],
                 window_seconds: int) -> dict[str, Any]:
    """The stable release's error ratio and share of slow first tokens over the window, their budgets, and the
    page-level alerts firing for the model. `slo`: availability, ttft_objective (percent), ttft_threshold (seconds)."""
    window = f"{window_seconds}s"
    page = signals.vector(f'ALERTS{{alertstate="firing",severity="page",model="{service}"}}')
    return {
        "window": window,
        "availability_error_ratio": signals.scalar(availability_error_ratio(service, namespace, window)),
        "latency_error_ratio": signals.scalar(latency_error_ratio(service, namespace, window, slo["ttft_threshold"])),
        "availability_budget": round(1 - slo["availability"] / 100, 6),
        "latency_budget": round(1 - slo["ttft_objective"] / 100, 6),
        "page_alerts": sorted(a["metric"].get("alertname", "?") for a in page),
    }


def percent(ratio: float | None) -> str:
    return "no data" if ratio is None else f"{ratio * 100:.1f} %"


def describe_readings(r: dict[str, Any]) -> str:
    """`errors 16.2 % (limit 0.5 %), slow first tokens 3.0 % (limit 5.0 %), paging nothing`: for people at 3 a.m."""
    return (f"errors {percent(r['availability_error_ratio'])} (limit {percent(r['availability_budget'])}), "
            f"slow first tokens {percent(r['latency_error_ratio'])} (limit {percent(r['latency_budget'])}), "
            f"paging {', '.join(r['page_alerts']) or 'nothing'}")


def within_slo(readings: dict[str, Any]) -> bool:
    r = readings
    return (r["availability_error_ratio"] is not None and r["latency_error_ratio"] is not None
            and r["availability_error_ratio"] <= r["availability_budget"]
            and r["latency_error_ratio"] <= r["latency_budget"] and not r["page_alerts"])


def verify_slo(signals: Signals, service: str, namespace: str, slo: dict[str, float], *, verification: Verification,
               ready_at: float, deadline: float, progress: Callable[[str], None], failure: str) -> dict[str, Any]:
    """Poll until the readings are within the SLOs and nothing pages, from `ready_at` (epoch seconds: a full window
    after the change) on; StepFailed with `failure` and the last readings if that does not happen in time."""
    deadline = min(deadline, time.monotonic() + verification.timeout_seconds)
    while True:
        current = slo_readings(signals, service, namespace, slo, verification.window_seconds)
        if time.time() >= ready_at and within_slo(current):
            return {"verified_at": time.time(), **current}
        if time.monotonic() + verification.poll_seconds > deadline:
            raise StepFailed(f"{failure}: {json.dumps(current)}")
        progress(f"  verify-slo: {describe_readings(current)}")
        time.sleep(verification.poll_seconds)
