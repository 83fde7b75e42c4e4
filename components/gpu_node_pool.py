"""`GpuNodePool`: an EKS managed node group of GPU instances that only GPU workloads can land on.

Nodes run the AL2023 NVIDIA AMI (driver and container toolkit baked in), carry the
`nvidia.com/gpu=true:NoSchedule` taint and labels naming the pool, the GPU model and the
capacity type, and scale between the config's bounds (spot or on-demand).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.config import GpuPool
from components.node_group import NodeGroupSpec, managed_node_group
from components.scheduling import GPU_TAINT, gpu_node_labels

AMI_TYPE = "AL2023_x86_64_NVIDIA"


@dataclass(frozen=True)
class GpuNodePoolArgs:
    pool: GpuPool
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    tags: Mapping[str, str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class GpuNodePool(pulumi.ComponentResource):
    node_group: aws.eks.NodeGroup

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:infra:GpuNodePool", name, None, opts)
        pool = args.pool
        self.labels = gpu_node_labels(pool.name, pool.gpu, pool.capacity_type)
        self.node_group = managed_node_group(f"{name}-nodes", NodeGroupSpec(
            cluster_name=args.cluster_name, node_role_arn=args.node_role_arn, subnet_ids=args.subnet_ids,
            ami_type=AMI_TYPE, instance_types=pool.instance_types, capacity_type=pool.capacity_type,
            min_size=pool.min_size, desired_size=pool.desired_size, max_size=pool.max_size,
            root_volume_gib=pool.root_volume_gib, labels=self.labels,
            tags={**args.tags, "llmops.io/pool": pool.name},
            taints=[(GPU_TAINT["key"], GPU_TAINT["value"], GPU_TAINT["effect"])],
            depends_on=args.depends_on), parent=self)
        self.register_outputs({"nodeGroupName": self.node_group.node_group_name, "labels": self.labels,
                               "maxGpus": pool.max_size * pool.gpus_per_node})
