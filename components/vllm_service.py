"""`VllmService`: one model served by vLLM in one region -- stable, optional canary and shadow, routing, autoscaling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from components.config import GpuPool, Model, Serving, model_cache_gib, replica_resources
from components.config.releases import release_of
from components.kubernetes import kubernetes_objects
from components.manifests.gateway import model_hostnames
from components.manifests.route import CANARY, SHADOW, STABLE, stable_weight
from components.manifests.vllm import Track, VllmSpec, vllm_objects


@dataclass(frozen=True)
class VllmServiceArgs:
    model: Model
    pool: GpuPool
    surge: int
    region_code: str
    serving: Serving
    namespace: str
    gateway: str
    registry_uri: str
    fetch_image: str
    retrieval_fingerprints: Mapping[str, str]
    tags: Mapping[str, str]
    cold: bool = False  # a cold standby region: no replicas (and no canary or shadow) until failover scales it up


def vllm_spec(args: VllmServiceArgs) -> VllmSpec:
    model, pool = args.model, args.pool
    share = replica_resources(model, pool)
    canary = None if args.cold else model.active_canary
    shadow = None if args.cold else model.shadow
    floor = 0 if args.cold else model.replicas
    return VllmSpec(
        name=model.name, namespace=args.namespace, image=model.image, pool=pool.name,
        tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
        gpu_memory_utilization=model.gpu_memory_utilization, size_gib=model.size_gib, cache_gib=model_cache_gib(model),
        cpu=share.cpu, memory_gib=share.memory_gib, min_replicas=floor, max_replicas=model.ceiling,
        queue_depth_target=model.queue_depth_target, startup_base_seconds=model.startup.base_seconds,
        startup_seconds_per_gib=model.startup.seconds_per_gib, surge=args.surge, registry_uri=args.registry_uri,
        fetch_image=args.fetch_image, hostnames=model_hostnames(model.name, args.serving.domain, args.region_code),
        gateway=(args.namespace, args.gateway), prometheus_url=args.serving.prometheus_url,
        stable=Track(STABLE, release_of(model, model.release, args.retrieval_fingerprints), floor,
                     stable_weight(canary.weight if canary else 0)),
        canary=Track(CANARY, release_of(model, canary.release, args.retrieval_fingerprints), canary.replicas,
                     canary.weight) if canary else None,
        shadow=Track(SHADOW, release_of(model, shadow.release, args.retrieval_fingerprints), shadow.replicas,
                     shadow.sample_percent) if shadow else None,
        sticky_header=canary.sticky.header if canary and canary.sticky else None,
        tags=args.tags)


def shadow_cost(spec: VllmSpec) -> dict[str, object] | None:
    """What the shadow costs and does, for the plan: GPUs held, replicas, percent mirrored, its release."""
    if spec.shadow is None:
        return None
    return {"releaseId": spec.shadow.release.release_id, "version": spec.shadow.release.model_version,
            "replicas": spec.shadow.replicas, "gpus": spec.shadow.replicas * spec.tensor_parallel_size,
            "samplePercent": spec.shadow.weight, "pool": spec.pool}


class VllmService(pulumi.ComponentResource):
    def __init__(self, name: str, args: VllmServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:serving:VllmService", name, None, opts)
        spec = vllm_spec(args)
        kubernetes_objects(name, vllm_objects(spec), self)
        self.release_id = spec.stable.release.release_id
        self.shadow = shadow_cost(spec)
        self.register_outputs({
            "shadow": self.shadow,
            "releaseId": spec.stable.release.release_id, "version": spec.stable.release.model_version,
            "canaryReleaseId": spec.canary.release.release_id if spec.canary else None,
            "canaryWeight": spec.canary.weight if spec.canary else 0, "hostnames": list(spec.hostnames),
        })
