"""What every EKS managed node group of ours shares: a hardened launch template and the group itself.

Root volumes are gp3 and encrypted with the account's EBS key: a customer-managed key
would need a grant for the Auto Scaling service-linked role, and nodes silently fail to
launch without it. IMDSv2 is required with a hop limit of 1, so pods (which get AWS
access through IRSA) cannot borrow the node role's credentials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

# What a node group's Kubernetes taint effect is called in the EKS API.
TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}


@dataclass(frozen=True)
class NodeGroupSpec:
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    ami_type: str
    instance_types: Sequence[str]
    capacity_type: str  # "spot" or "on-demand", as in the stack config
    min_size: int
    desired_size: int
    max_size: int
    root_volume_gib: int
    labels: Mapping[str, str]
    tags: Mapping[str, str]
    taints: Sequence[tuple[str, str, str]] = field(default_factory=tuple)  # (key, value, Kubernetes effect)
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def launch_template(name: str, spec: NodeGroupSpec, parent: pulumi.Resource) -> aws.ec2.LaunchTemplate:
    propagated = [{"resource_type": kind, "tags": dict(spec.tags)} for kind in ("instance", "volume", "network-interface")]
    return aws.ec2.LaunchTemplate(
        name,
        description=f"EKS nodes for {name}: encrypted gp3 root, IMDSv2 only",
        block_device_mappings=[{
            "device_name": "/dev/xvda",
            "ebs": {
                "volume_size": spec.root_volume_gib,
                "volume_type": "gp3",
                "encrypted": "true",
                "delete_on_termination": "true",
            },
        }],
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
            "instance_metadata_tags": "disabled",
        },
        tag_specifications=propagated,
        update_default_version=True,
        tags=dict(spec.tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def managed_node_group(name: str, spec: NodeGroupSpec, parent: pulumi.Resource) -> aws.eks.NodeGroup:
    template = launch_template(f"{name}-lt", spec, parent)
    return aws.eks.NodeGroup(
        name,
        cluster_name=spec.cluster_name,
        # A prefix, not a fixed name: a replaced group is created before the old one is drained.
        node_group_name_prefix=f"{spec.labels.get('llmops.io/pool', name)}-",
        node_role_arn=spec.node_role_arn,
        subnet_ids=list(spec.subnet_ids),
        ami_type=spec.ami_type,
        instance_types=list(spec.instance_types),
        capacity_type="SPOT" if spec.capacity_type == "spot" else "ON_DEMAND",
        scaling_config={"min_size": spec.min_size, "desired_size": spec.desired_size, "max_size": spec.max_size},
        launch_template={"id": template.id, "version": template.latest_version.apply(str)},
        labels=dict(spec.labels),
        taints=[{"key": key, "value": value, "effect": TAINT_EFFECTS[effect]} for key, value, effect in spec.taints],
        # One node at a time: a GPU node drained takes its replicas' GPUs with it.
        update_config={"max_unavailable": 1},
        tags=dict(spec.tags),
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(spec.depends_on),
            # The cluster autoscaler owns the current size; `pulumi up` must not reset it.
            ignore_changes=["scalingConfig.desiredSize"],
        ),
    )
