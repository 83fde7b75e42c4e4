"""GPU capacity policies: GPU node groups are tainted, and no rollout needs more GPUs than its pool holds."""

from __future__ import annotations

import math
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.common import CONTEXT_SCHEMA, GPU_RESOURCE, GPU_TAINT_KEY, json_document, object_ref, pod_spec, quantity

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
POOL_LABEL = "llmops.io/pool"
# GPUs per instance for the families a pool may use (AWS's published figures).
_GPUS_BY_SIZE = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1, "12xlarge": 4, "24xlarge": 4,
                 "48xlarge": 8, "metal": 8}
_EIGHT_GPU_FAMILIES = ("p4d", "p4de", "p5", "p5e", "p5en", "p6-b200")


def gpus_per_instance(instance_type: str) -> int:
    family, _, size = instance_type.partition(".")
    if family in _EIGHT_GPU_FAMILIES:
        return 1 if size == "4xlarge" else 8
    if family in ("g4dn", "g5", "g6", "g6e", "g5g"):
        return _GPUS_BY_SIZE.get(size, 0)
    return 0


def is_gpu_node_group(props: Any) -> bool:
    ami = str(props.get("amiType", ""))
    return "NVIDIA" in ami or "GPU" in ami or any(gpus_per_instance(t) for t in props.get("instanceTypes") or [])


def _tainted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NODE_GROUP or not is_gpu_node_group(args.props):
        return
    taints = args.props.get("taints") or []
    if not any(t.get("key") == GPU_TAINT_KEY and t.get("effect") == "NO_SCHEDULE" for t in taints):
        report(f"GPU node group {args.name} has no {GPU_TAINT_KEY} NO_SCHEDULE taint; add it so only pods that "
               "ask for GPUs are placed on these nodes.", None)


def _cluster_of_provider(provider: Any) -> str | None:
    """The EKS cluster a Kubernetes provider targets: its kubeconfig's current context."""
    kubeconfig = json_document((provider.props if provider else {}).get("kubeconfig"))
    return kubeconfig.get("current-context") if kubeconfig else None


def _max_surge(spec: Any, ceiling: int) -> int:
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")  # Kubernetes' default
    if isinstance(surge, str) and surge.endswith("%"):
        return math.ceil(ceiling * float(surge[:-1]) / 100)
    return int(surge)


def _rollouts_fit(args: StackValidationArgs, report: ReportViolation) -> None:
    pools: dict[tuple[str | None, str], int] = {}
    for group in args.resources:
        if group.resource_type == NODE_GROUP and is_gpu_node_group(group.props):
            pool = (group.props.get("labels") or {}).get(POOL_LABEL)
            per_node = min((gpus_per_instance(t) for t in group.props.get("instanceTypes") or []), default=0)
            maximum = (group.props.get("scalingConfig") or {}).get("maxSize", 0)
            if pool:
                key = (group.props.get("clusterName"), pool)
                pools[key] = pools.get(key, 0) + int(maximum) * per_node
    ceilings = {}
    for scaler in args.resources:
        if scaler.resource_type in ("kubernetes:keda.sh/v1alpha1:ScaledObject",
                                    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"):
            spec = scaler.props.get("spec") or {}
            target = (spec.get("scaleTargetRef") or {}).get("name")
            namespace = (scaler.props.get("metadata") or {}).get("namespace", "default")
            ceiling = spec.get("maxReplicaCount", spec.get("maxReplicas"))
            if target and ceiling is not None:
                ceilings[(_cluster_of_provider(scaler.provider), namespace, target)] = int(ceiling)
    peak: dict[tuple[str | None, str], list[tuple[str, int]]] = {}
    for deployment in args.resources:
        if deployment.resource_type != "kubernetes:apps/v1:Deployment":
            continue
        pod = pod_spec(deployment.resource_type, deployment.props) or {}
        gpus = sum(quantity(((c.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE, 0))
                   for c in pod.get("containers") or [])
        pool = (pod.get("nodeSelector") or {}).get(POOL_LABEL)
        if not gpus or not pool:
            continue
        cluster = _cluster_of_provider(deployment.provider)
        metadata = deployment.props.get("metadata") or {}
        spec = deployment.props.get("spec") or {}
        ceiling = ceilings.get((cluster, metadata.get("namespace", "default"), metadata.get("name")),
                               int(spec.get("replicas", 1)))
        need = int((ceiling + _max_surge(spec, ceiling)) * gpus)
        peak.setdefault((cluster, pool), []).append((object_ref(deployment.props), need))
    for (cluster, pool), needs in sorted(peak.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        capacity = pools.get((cluster, pool))
        if capacity is None:  # a kubeconfig that does not name the cluster: match the pool if it is unambiguous
            same_pool = [c for (_, p), c in pools.items() if p == pool]
            capacity = same_pool[0] if len(same_pool) == 1 else None
        total = sum(n for _, n in needs)
        if capacity is None:
            report(f"cluster {cluster}: Deployments {', '.join(d for d, _ in needs)} select GPU pool {pool!r}, "
                   "which no GPU node group in the stack provides.", None)
        elif total > capacity:
            detail = ", ".join(f"{d} {n}" for d, n in needs)
            report(f"cluster {cluster}, pool {pool!r}: at their replica ceilings and mid-rollout the Deployments need "
                   f"{total} GPUs ({detail}) but the pool holds at most {capacity}; lower maxSurge to 0 or raise the "
                   "pool's maxSize.", None)


POLICIES = [
    ResourceValidationPolicy(
        name="gpu-node-group-tainted", description="Every GPU node group carries the nvidia.com/gpu NoSchedule taint.",
        validate=_tainted, config_schema=CONTEXT_SCHEMA),
    StackValidationPolicy(
        name="gpu-rollout-within-pool",
        description="Serving rollouts never need more GPUs than their pool's maximum.",
        validate=_rollouts_fit, config_schema=CONTEXT_SCHEMA),
]
