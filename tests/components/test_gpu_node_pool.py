"""GPU pools as planned: tainted, labelled, NVIDIA AMI, hardened launch templates, and a device plugin that fits."""

from __future__ import annotations

import pytest

from components.manifests.device_plugin import device_plugin_daemonset
from components.scheduling import GPU_PRESENT_LABEL, GPU_TAINT


def gpu_groups(plan):
    return [g for g in plan.by_type("aws:eks/nodeGroup:NodeGroup") if "-gpu-" in g.name]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_gpu_node_group_is_tainted_and_labelled(plans, stack):
    groups = gpu_groups(plans[stack])
    assert groups
    for group in groups:
        assert group.inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
        assert group.inputs["amiType"] == "AL2023_x86_64_NVIDIA"
        labels = group.inputs["labels"]
        assert labels[GPU_PRESENT_LABEL] == "true"
        assert labels["llmops.io/pool"] == group.name.split("-gpu-")[1].removesuffix("-nodes")
        assert labels["llmops.io/gpu-type"] in {"L4", "H100"}


def test_system_pool_is_untainted_standard_ami(plans):
    system = plans["prod"].get("aws:eks/nodeGroup:NodeGroup", "prod-use1-system")
    assert "taints" not in system.inputs or system.inputs["taints"] == []
    assert system.inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert system.inputs["capacityType"] == "ON_DEMAND"


def test_capacity_type_and_scaling_follow_the_config(plans):
    dev = gpu_groups(plans["dev"])[0]
    assert dev.inputs["capacityType"] == "SPOT"
    assert dev.inputs["scalingConfig"] == {"minSize": 0, "desiredSize": 1, "maxSize": 2}
    assert dev.inputs["instanceTypes"] == ["g6.xlarge", "g6.2xlarge"]
    assert {g.inputs["capacityType"] for g in gpu_groups(plans["staging"]) + gpu_groups(plans["prod"])} == {"ON_DEMAND"}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_launch_templates_require_imdsv2_and_encrypt_gp3_roots(plans, stack):
    plan = plans[stack]
    templates = {t.urn.rsplit("::", 1)[-1]: t for t in plan.by_type("aws:ec2/launchTemplate:LaunchTemplate")}
    for group in plan.by_type("aws:eks/nodeGroup:NodeGroup"):
        template = templates[group.inputs["launchTemplate"]["id"].rsplit("-", 1)[0]]
        metadata = template.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required"
        assert metadata["httpPutResponseHopLimit"] == 1
        (root,) = template.inputs["blockDeviceMappings"]
        assert root["ebs"]["encrypted"] == "true" and root["ebs"]["volumeType"] == "gp3"
        assert "imageId" not in template.inputs  # EKS picks the AMI of amiType, patched with the node group
        assert "associatePublicIpAddress" not in str(template.inputs.get("networkInterfaces", ""))


def test_root_volume_size_comes_from_the_pool(plans):
    template = plans["prod"].get("aws:ec2/launchTemplate:LaunchTemplate", "prod-use1-gpu-h100-nodes-lt")
    assert template.inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 1000


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_device_plugin_runs_only_on_gpu_nodes_and_tolerates_their_taint(plans, stack):
    plan = plans[stack]
    daemonsets = plan.by_type("kubernetes:apps/v1:DaemonSet")
    assert len(daemonsets) == len(plan.by_type("aws:eks/cluster:Cluster"))
    for daemonset in daemonsets:
        pod = daemonset.inputs["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {GPU_PRESENT_LABEL: "true"}
        assert {"key": GPU_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        container = pod["containers"][0]
        assert "@sha256:" in container["image"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in container["securityContext"]


def test_gpu_nodes_get_the_label_the_device_plugin_selects():
    """The two halves share one constant; a test that they agree guards against a later split."""
    daemonset = device_plugin_daemonset(image="x@sha256:" + "0" * 64,
                                        tags={"owner": "o", "cost-center": "c", "environment": "dev"})
    from components.scheduling import gpu_node_labels

    selector = daemonset["spec"]["template"]["spec"]["nodeSelector"]
    assert selector.items() <= gpu_node_labels("l4", "L4", "spot").items()
