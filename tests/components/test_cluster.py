"""The EKS control plane as planned: private, encrypted, logged, with IRSA and its own Kubernetes provider."""

from __future__ import annotations

import json

import pytest

from components.cluster import CONTROL_PLANE_LOGS
from components.config import region_code


def clusters(plan):
    return plan.by_type("aws:eks/cluster:Cluster")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_api_endpoint_is_private_only(plans, stack):
    for cluster in clusters(plans[stack]):
        vpc = cluster.inputs["vpcConfig"]
        assert vpc["endpointPrivateAccess"] is True
        assert vpc["endpointPublicAccess"] is False
        assert "publicAccessCidrs" not in vpc


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_secrets_are_envelope_encrypted_with_a_rotating_key(plans, stack):
    plan = plans[stack]
    assert clusters(plan)
    for cluster in clusters(plan):
        encryption = cluster.inputs["encryptionConfig"]
        assert encryption["resources"] == ["secrets"]
        key_name = cluster.name.removesuffix("-eks") + "-secrets"
        key = plan.get("aws:kms/key:Key", key_name)
        assert key.inputs["enableKeyRotation"] is True
        assert key.inputs["deletionWindowInDays"] == 30
        assert encryption["provider"]["keyArn"].split("/")[-1].startswith(key_name)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_control_plane_logs_all_types_to_a_group_with_retention(plans, stack):
    plan = plans[stack]
    for cluster in clusters(plan):
        assert cluster.inputs["enabledClusterLogTypes"] == CONTROL_PLANE_LOGS
        group = plan.get("aws:cloudwatch/logGroup:LogGroup", cluster.name.removesuffix("-eks") + "-control-plane-logs")
        assert group.inputs["name"] == f"/aws/eks/{cluster.inputs['name']}/cluster"
        assert group.inputs["retentionInDays"] > 0
        assert group.urn in cluster.dependencies  # EKS must not create the group first (with no retention)


def test_deletion_protection_outside_dev(plans):
    assert {c.inputs["deletionProtection"] for c in clusters(plans["dev"])} == {False}
    for stack in ("staging", "prod"):
        assert {c.inputs["deletionProtection"] for c in clusters(plans[stack])} == {True}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_oidc_provider_trusts_the_cluster_issuer_for_sts(plans, stack):
    plan = plans[stack]
    for cluster in clusters(plan):
        prefix = cluster.name.removesuffix("-eks")
        oidc = plan.get("aws:iam/openIdConnectProvider:OpenIdConnectProvider", f"{prefix}-oidc")
        assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
        assert oidc.inputs["url"].startswith("https://oidc.eks.")


def test_vpc_cni_permissions_live_on_an_irsa_role_not_the_node_role(plans):
    plan = plans["dev"]
    node_policies = [a.inputs["policyArn"] for a in plan.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                     if a.name.startswith("dev-use1-nodes-")]
    assert sorted(p.rsplit("/", 1)[-1] for p in node_policies) == ["AmazonEC2ContainerRegistryPullOnly",
                                                                   "AmazonEKSWorkerNodePolicy"]
    cni_role = plan.get("aws:iam/role:Role", "dev-use1-vpc-cni")
    trust = json.loads(cni_role.inputs["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert [v for k, v in condition.items() if k.endswith(":sub")] == ["system:serviceaccount:kube-system:aws-node"]
    assert trust["Statement"][0]["Action"] == "sts:AssumeRoleWithWebIdentity"
    addon = plan.get("aws:eks/addon:Addon", "dev-use1-vpc-cni")
    assert addon.inputs["serviceAccountRoleArn"].split(":role/")[1].startswith("dev-use1-vpc-cni-")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_cluster_has_its_own_kubernetes_provider_and_objects_use_it(plans, stack):
    plan = plans[stack]
    providers = {p.urn: p for p in plan.by_type("pulumi:providers:kubernetes")}
    assert len(providers) == len(clusters(plan))
    for provider in providers.values():
        kubeconfig = json.loads(provider.inputs["kubeconfig"])
        exec_args = kubeconfig["users"][0]["user"]["exec"]["args"]
        assert exec_args[:4] == ["eks", "get-token", "--cluster-name", kubeconfig["current-context"]]
        assert "token" not in json.dumps(kubeconfig["users"][0]["user"]).replace("get-token", "")
    for obj in plan.kubernetes_objects():
        assert obj.provider in providers, f"{obj.urn} would be applied to whatever cluster the default kubeconfig names"


def test_public_endpoint_only_with_the_configured_allow_list(tmp_path, stack_yaml):
    from llmops.offline.engine import run_program
    from llmops.offline.project import load_project, load_stack
    from tests.conftest import write_program_copy

    stack_yaml["config"]["llmops:cluster"].update(endpointPublicAccess=True, publicAccessCidrs=["203.0.113.0/24"])
    project = load_project(write_program_copy(tmp_path, "dev", stack_yaml))
    plan = run_program(project, load_stack(project, "dev"))
    vpc = clusters(plan)[0].inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True
    assert vpc["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert vpc["endpointPrivateAccess"] is True


def test_cluster_names_are_per_environment_and_region(plans):
    names = sorted(c.inputs["name"] for c in clusters(plans["prod"]))
    assert names == [f"llmops-prod-{region_code('us-east-1')}", f"llmops-prod-{region_code('us-west-2')}"]
