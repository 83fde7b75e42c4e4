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
    vcpus: int
    memory_gib: int


# size -> (GPUs, vCPUs, memory GiB)
_G5_G6 = {"xlarge": (1, 4, 16), "2xlarge": (1, 8, 32), "4xlarge": (1, 16, 64), "8xlarge": (1, 32, 128),
          "16xlarge": (1, 64, 256), "12xlarge": (4, 48, 192), "24xlarge": (4, 96, 384), "48xlarge": (8, 192, 768)}
_FAMILIES: dict[str, tuple[str, int, dict[str, tuple[int, int, int]]]] = {
    "g4dn": ("T4", 16, {**{k: v for k, v in _G5_G6.items() if k not in ("24xlarge", "48xlarge")}, "metal": (8, 96, 384)}),
    "g5": ("A10G", 24, _G5_G6),
    "g6": ("L4", 24, _G5_G6),
    "g6e": ("L40S", 48, {size: (gpus, vcpus, memory * 2) for size, (gpus, vcpus, memory) in _G5_G6.items()}),
    "p4d": ("A100", 40, {"24xlarge": (8, 96, 1152)}),
    "p4de": ("A100", 80, {"24xlarge": (8, 96, 1152)}),
    "p5": ("H100", 80, {"4xlarge": (1, 16, 256), "48xlarge": (8, 192, 2048)}),
    "p5e": ("H200", 141, {"48xlarge": (8, 192, 2048)}),
    "p5en": ("H200", 141, {"48xlarge": (8, 192, 2048)}),
    "p6-b200": ("B200", 179, {"48xlarge": (8, 192, 2048)}),
}

GPU_INSTANCE_TYPES: dict[str, GpuInstance] = {
    f"{family}.{size}": GpuInstance(gpus, gpu, gpu_memory, vcpus, memory)
    for family, (gpu, gpu_memory, sizes) in _FAMILIES.items()
    for size, (gpus, vcpus, memory) in sizes.items()
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
