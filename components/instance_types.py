"""What the EC2 GPU instance types we can schedule on actually carry.

The stack config names instance types; this table is how a bad pool (a CPU
type in a GPU pool, a wrong GPUs-per-node figure, an Arm type on the x86
NVIDIA AMI) is caught before `pulumi up` rather than by a node that never
advertises `nvidia.com/gpu`. Figures are AWS's published specifications.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstance:
    gpus: int
    gpu: str  # the accelerator model, used as the node's `llmops.io/gpu-type` label
    gpu_memory_gib: int  # per GPU


def _family(sizes: dict[str, int], gpu: str, memory: int) -> dict[str, GpuInstance]:
    return {size: GpuInstance(gpus, gpu, memory) for size, gpus in sizes.items()}


_SINGLE = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1}
_G_LARGE = {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}

GPU_INSTANCE_TYPES: dict[str, GpuInstance] = {
    f"{family}.{size}": spec
    for family, table in {
        "g4dn": _family({**_SINGLE, "12xlarge": 4, "metal": 8}, "T4", 16),
        "g5": _family({**_SINGLE, **_G_LARGE}, "A10G", 24),
        "g6": _family({**_SINGLE, **_G_LARGE}, "L4", 24),
        "g6e": _family({**_SINGLE, **_G_LARGE}, "L40S", 48),
        "p4d": _family({"24xlarge": 8}, "A100", 40),
        "p4de": _family({"24xlarge": 8}, "A100", 80),
        "p5": _family({"4xlarge": 1, "48xlarge": 8}, "H100", 80),
        "p5e": _family({"48xlarge": 8}, "H200", 141),
        "p5en": _family({"48xlarge": 8}, "H200", 141),
        "p6-b200": _family({"48xlarge": 8}, "B200", 179),
    }.items()
    for size, spec in table.items()
}

# GPU families whose instances are Arm (Graviton): the x86 NVIDIA AMI cannot boot them.
ARM_GPU_FAMILIES = ("g5g",)

# Families that carry accelerators and must never be wasted on the system pool.
ACCELERATED_FAMILIES = tuple(
    sorted({name.split(".")[0] for name in GPU_INSTANCE_TYPES} | set(ARM_GPU_FAMILIES) | {"p3", "inf2", "trn1", "trn2", "dl1"})
)


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def is_accelerated(instance_type: str) -> bool:
    return family(instance_type) in ACCELERATED_FAMILIES
