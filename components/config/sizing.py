"""Sizing shared by validation and the manifests: a replica's share of its node, the model cache on disk, and
whether a rollout may surge -- one formula each, so a check and the object it checks cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.config.sections import GpuPool, Model
from components.instance_types import GPU_INSTANCE_TYPES

if TYPE_CHECKING:
    from components.config.stack import StackConfig

# Root-volume space a GPU node needs besides model caches: the OS, the vLLM image (~20 GiB
# unpacked) and the system pods' images.
NODE_IMAGES_GIB = 60


@dataclass(frozen=True)
class ReplicaShare:
    cpu: int
    memory_gib: int


def replica_share(model: Model, pool: GpuPool) -> ReplicaShare:
    """A replica's share of its node: GPUs-used / GPUs-per-node of what the kubelet can allocate
    (two vCPUs and 10% + 4 GiB of memory are kept for the kubelet and node agents), on the pool's smallest type."""
    node = GPU_INSTANCE_TYPES[pool.smallest_instance]
    share = model.tensor_parallel_size / node.gpus
    return ReplicaShare(cpu=max(1, int((node.vcpus - 2) * share)),
                        memory_gib=max(4, int((node.memory_gib * 0.9 - 4) * share)))


def replica_resources(model: Model, pool: GpuPool) -> ReplicaShare:
    if model.resources is not None:
        return ReplicaShare(cpu=model.resources.cpu, memory_gib=model.resources.memory_gib)
    return replica_share(model, pool)


def rollout_surge(config: StackConfig, model: Model) -> int:
    """1 if the pool keeps enough spare GPUs for every Deployment on it to surge one replica at once
    (a `pulumi up` that changes the image rolls them all), else 0: replace in place, never exceed the pool."""
    pool = config.pool(model.pool)
    on_pool = [m for m in config.models if m.pool == pool.name]
    spare = pool.max_size * pool.gpus_per_node - sum(m.peak_gpus() for m in on_pool)
    surging = sum(m.tensor_parallel_size * m.deployments() for m in on_pool)
    return 1 if spare >= surging else 0


def model_cache_gib(model: Model) -> int:
    """Disk for one replica's copy of the weights (10% headroom for tokenizer files and metadata)."""
    return -(-model.size_gib * 11 // 10)  # ceil(size x 1.1) in integers: no float rounding
