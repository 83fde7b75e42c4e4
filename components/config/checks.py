"""Checks that cross sections of the stack config (each raises the error that names the key to change): tags
that are also Kubernetes labels, one private VPC CIDR per region, models that fit their pools, and a failover
block that matches the regions."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from components.config.base import LABEL_VALUE, REQUIRED_TAGS, invalid
from components.config.sections import GpuPool, Model, parse_cidr
from components.config.sizing import NODE_IMAGES_GIB, model_cache_gib, replica_share

if TYPE_CHECKING:
    from components.config.stack import StackConfig


def check_failover(config: StackConfig) -> None:
    secondaries, allowed = config.regions.secondaries, config.regions.allowed
    if config.failover is None:
        if secondaries:
            raise invalid("failover", None, "required when the stack has secondary regions "
                           f"({', '.join(secondaries)}): hostedZoneId at least, so traffic can move between them")
        return
    if not secondaries:
        raise invalid("failover", "...", "expected only in a stack with regions.secondaries: there is nowhere to fail over to")
    if config.failover.active_region is not None:
        if config.failover.active_region not in config.regions.all:
            raise invalid("failover.activeRegion", config.failover.active_region,
                           f"expected a region of this stack: {', '.join(config.regions.all)}")
        if config.failover.routing != "failover":
            raise invalid("failover.activeRegion", config.failover.active_region,
                           "expected only with failover routing (latency routing has no primary)")
    if config.failover.routing == "failover" and len(secondaries) > 1:
        raise invalid("failover.routing", "failover", f"expected latency with {len(secondaries)} secondaries: "
                       "Route53 failover routing has one PRIMARY and one SECONDARY record per name")
    for region, standby in config.failover.standby.items():
        if region not in secondaries:
            raise invalid(f"failover.standby.{region}", standby.mode,
                           f"expected a secondary region of this stack: {', '.join(secondaries)}")
        if standby.mode == "cold" and config.failover.routing == "latency":
            raise invalid(f"failover.standby.{region}.mode", "cold",
                           "expected warm with latency routing: every region takes traffic (active-active)")
    for index, region in enumerate(config.failover.replicate_to or []):
        if region not in allowed:
            raise invalid(f"failover.replicateTo[{index}]", region, "expected one of the allowed regions "
                           f"(data residency: {', '.join(allowed)}); replicas are data too")
        if region not in secondaries:
            raise invalid(f"failover.replicateTo[{index}]", region,
                          f"expected a secondary region of this stack ({', '.join(secondaries)}): "
                          "its buckets receive the copies")
    for region in secondaries:
        if config.standby(region).mode == "warm":
            for index, pool in enumerate(config.gpu_pools):
                if pool.min_size < 1 and any(m.pool == pool.name for m in config.models):
                    raise invalid(f"gpuPools[{index}].minSize", pool.min_size,
                                   f"expected at least 1: {region} is a warm standby, so its models must stay loaded")


def check_tags(config: StackConfig) -> None:
    for tag in REQUIRED_TAGS:
        if not config.tags.get(tag):
            raise invalid(f"tags.{tag}", config.tags.get(tag), "required tag is missing or empty")
    if config.tags["environment"] != config.environment:
        raise invalid("tags.environment", config.tags["environment"], f"expected {config.environment!r}, the stack's environment")
    for key, value in config.tags.items():
        # Tags become Kubernetes labels too, so they must satisfy both rule sets.
        if key.startswith("aws:") or not LABEL_VALUE.match(value) or len(key) > 63:
            raise invalid(f"tags.{key}", value, "expected a value of at most 63 characters of A-Z, a-z, 0-9, '-', '_' or '.', "
                           "starting and ending alphanumeric (it is also a Kubernetes label)")


def check_vpc_cidrs(config: StackConfig) -> None:
    seen: dict[str, ipaddress.IPv4Network] = {}
    for region, cidr in config.network.vpc_cidrs.items():
        if region not in config.regions.all:
            raise invalid(f"network.vpcCidrs.{region}", cidr,
                          "expected CIDRs only for the stack's regions: " + ", ".join(config.regions.all))
        network = parse_cidr(cidr)
        if network is None or not 16 <= network.prefixlen <= 20 or not network.is_private:
            raise invalid(f"network.vpcCidrs.{region}", cidr, "expected a private IPv4 CIDR from /16 to /20, e.g. 10.20.0.0/16")
        for other, other_network in seen.items():
            if network.overlaps(other_network):
                raise invalid(f"network.vpcCidrs.{region}", cidr, f"expected no overlap with {other} ({other_network})")
        seen[region] = network
    for region in config.regions.all:
        if region not in config.network.vpc_cidrs:
            raise invalid(f"network.vpcCidrs.{region}", None, "required: a VPC CIDR for every region of the stack")


def check_models(config: StackConfig) -> None:
    pools = {pool.name: pool for pool in config.gpu_pools}
    if len(pools) != len(config.gpu_pools):
        names = [pool.name for pool in config.gpu_pools]
        duplicate = next(name for name in names if names.count(name) > 1)
        second = names.index(duplicate, names.index(duplicate) + 1)
        raise invalid(f"gpuPools[{second}].name", duplicate, "expected unique pool names")
    indexes = [index.name for index in config.retrieval.indexes]
    names = [model.name for model in config.models]
    gpus_wanted: dict[str, int] = {}
    shadows: dict[str, int] = {}  # of gpus_wanted, the shadows' GPUs
    for index, model in enumerate(config.models):
        where = f"models[{index}]"
        if names.index(model.name) != index:
            raise invalid(f"{where}.name", model.name, "expected unique model names")
        pool = pools.get(model.pool)
        if pool is None:
            raise invalid(f"{where}.pool", model.pool, "expected one of the gpuPools names: " + ", ".join(pools))
        if model.tensor_parallel_size > pool.gpus_per_node:
            raise invalid(f"{where}.tensorParallelSize", model.tensor_parallel_size,
                           f"expected at most {pool.gpus_per_node}, the GPUs per node of pool {pool.name!r}")
        for key, release in (("release", model.release), ("canary.release", model.canary.release if model.canary else None),
                             ("shadow.release", model.shadow.release if model.shadow else None)):
            if release is not None and release.retrieval_index is not None and release.retrieval_index not in indexes:
                raise invalid(f"{where}.{key}.retrievalIndex", release.retrieval_index,
                               "expected one of the retrieval.indexes names: " + ", ".join(indexes))
        gpus_wanted[pool.name] = gpus_wanted.get(pool.name, 0) + model.peak_gpus()
        shadows[pool.name] = shadows.get(pool.name, 0) + model.shadow_gpus()
        capacity = pool.max_size * pool.gpus_per_node
        if gpus_wanted[pool.name] > capacity:
            key, value = (("shadow.replicas", model.shadow.replicas) if model.shadow
                          else ("replicas", model.replicas))
            raise invalid(f"{where}.{key}", value,
                           f"expected the models on pool {pool.name!r} to need at most its {capacity} GPUs "
                           f"(maxSize {pool.max_size} x {pool.gpus_per_node}); with maxReplicas, canaries and "
                           f"shadows they need {gpus_wanted[pool.name]}, of which shadows {shadows[pool.name]}")
        check_fits_on_node(where, model, pool)


def check_fits_on_node(where: str, model: Model, pool: GpuPool) -> None:
    largest = replica_share(model, pool)
    if model.resources is not None:
        if model.resources.cpu > largest.cpu:
            raise invalid(f"{where}.resources.cpu", model.resources.cpu,
                           f"expected at most {largest.cpu}, this replica's share of a {pool.smallest_instance} node")
        if model.resources.memory_gib > largest.memory_gib:
            raise invalid(f"{where}.resources.memoryGiB", model.resources.memory_gib,
                           f"expected at most {largest.memory_gib}, this replica's share of a {pool.smallest_instance} node")
    per_node = pool.gpus_per_node // model.tensor_parallel_size
    needed = NODE_IMAGES_GIB + per_node * model_cache_gib(model)
    if pool.root_volume_gib < needed:
        raise invalid(f"{where}.sizeGiB", model.size_gib,
                       f"expected pool {pool.name!r} (rootVolumeGiB {pool.root_volume_gib}) to hold {NODE_IMAGES_GIB} GiB of "
                       f"images plus {per_node} replica(s) x {model_cache_gib(model)} GiB of model cache; "
                       f"raise rootVolumeGiB to at least {needed}")


def check_drift(config: StackConfig) -> None:
    indexes = {index.name: index for index in config.retrieval.indexes}
    for position, model in enumerate(config.models):
        if model.drift is None:
            continue
        where = f"models[{position}].drift"
        if config.drift_monitor is None:
            raise invalid(where, model.name, "expected llmops:driftMonitor (its image) too: drift is judged by the "
                          "drift monitor")
        embedding = model.drift.embedding
        if embedding is None:
            continue
        index = indexes.get(embedding.index)
        if index is None:
            raise invalid(f"{where}.embedding.index", embedding.index,
                          "expected one of the retrieval.indexes names: " + ", ".join(indexes))
        if not index.embedding_model.startswith("local:") and config.drift_monitor.embeddings is None:
            raise invalid(f"{where}.embedding.index", embedding.index,
                          f"expected llmops:driftMonitor.embeddings (url, dimension) too: {index.embedding_model} "
                          "is served by an OpenAI-compatible endpoint the monitor must call")
