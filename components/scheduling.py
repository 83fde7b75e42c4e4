"""How GPU workloads and GPU nodes find each other: one taint, a few labels.

Plain constants (no Pulumi), shared by the node pools that set them and by the
manifests that tolerate and select them, so the two can never disagree.
"""

GPU_RESOURCE = "nvidia.com/gpu"
# Every GPU node carries this taint, so only pods that ask for GPUs land there.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

POOL_LABEL = "llmops.io/pool"
GPU_TYPE_LABEL = "llmops.io/gpu-type"
CAPACITY_TYPE_LABEL = "llmops.io/capacity-type"
# The label NVIDIA's own tooling (GPU feature discovery) uses for "this node has a GPU".
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"


def gpu_node_labels(pool: str, gpu: str, capacity_type: str) -> dict[str, str]:
    return {POOL_LABEL: pool, GPU_TYPE_LABEL: gpu, CAPACITY_TYPE_LABEL: capacity_type, GPU_PRESENT_LABEL: "true"}
