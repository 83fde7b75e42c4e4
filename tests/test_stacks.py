"""Each whole stack, evaluated from its real config: shape per environment, providers, parents, valid manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components import config
from llmops.offline.project import load_stack
from llmops.offline.validate import validate_plan

ROOT = Path(__file__).resolve().parent.parent


def regions(plan):
    return plan.by_type("llmops:infra:Region")


def test_dev_and_staging_have_one_region_prod_two_each_complete(plans):
    assert [len(regions(plans[s])) for s in ("dev", "staging", "prod")] == [1, 1, 2]
    prod = plans["prod"]
    for region in regions(prod):
        inside = {r.type for r in prod.descendants(region.urn)}
        assert {"aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "kubernetes:apps/v1:DaemonSet",
                "llmops:infra:GpuNodePool", "aws:ec2/vpc:Vpc"} <= inside
        pools = [r for r in prod.descendants(region.urn) if r.type == "llmops:infra:GpuNodePool"]
        assert sorted(p.name.rsplit("-", 1)[-1] for p in pools) == ["h100", "l4"]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_resource_belongs_to_a_region_component(plans, stack):
    plan = plans[stack]
    by_urn = {r.urn: r for r in plan.resources}
    for resource in plan.resources:
        chain = resource
        while chain.parent in by_urn:
            chain = by_urn[chain.parent]
        # Cross-region pieces (DNS failover, replication) live in the one RegionalFailover component.
        assert chain.type in ("llmops:infra:Region", "llmops:infra:RegionalFailover"), \
            f"{resource.urn} is not under a Region or the RegionalFailover"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_aws_resource_uses_its_regions_explicit_provider_in_an_allowed_region(plans, project, stack):
    plan = plans[stack]
    cfg = config.parse(load_stack(project, stack).config, stack)
    providers = {p.urn: p for p in plan.by_type("pulumi:providers:aws")}
    assert sorted(p.inputs["region"] for p in providers.values()) == sorted(cfg.regions.all)
    for resource in plan.resources:
        if resource.custom and resource.type.startswith("aws:"):
            assert resource.provider in providers, f"{resource.urn} would use the default provider's region"
            region = providers[resource.provider].inputs["region"]
            assert region in cfg.regions.allowed
            region_component = resource.urn.split("::")[-1].split("-")[1]
            if region_component == "failover":  # global (Route53) or the replication source's: the primary's
                assert region == cfg.regions.primary, resource.urn
                continue
            assert region_component == config.region_code(region), resource.urn


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_provider_default_tags_carry_the_required_tags(plans, stack):
    for provider in plans[stack].by_type("pulumi:providers:aws"):
        default_tags = provider.inputs["defaultTags"]
        # Providers receive nested config JSON-encoded, as the engine sends it to the plugin.
        tags = (json.loads(default_tags) if isinstance(default_tags, str) else default_tags)["tags"]
        assert {"owner", "cost-center", "environment"} <= set(tags) and tags["environment"] == stack


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_kubernetes_manifest_validates_strictly_for_the_stack_version(plans, stack):
    plan = plans[stack]
    assert plan.kubernetes_objects()
    assert validate_plan(plan) == []


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_outputs_name_each_regions_cluster(plans, project, stack):
    outputs = plans[stack].outputs
    pools = {p.name for p in config.parse(load_stack(project, stack).config, stack).gpu_pools}
    assert outputs["environment"] == stack
    for region, values in outputs["regions"].items():
        assert values["clusterName"] == f"llmops-{stack}-{config.region_code(region)}"
        assert values["clusterEndpoint"].startswith("https://")
        assert set(values["gpuNodeGroups"]) == pools


def test_only_the_config_package_reads_pulumi_config():
    config = ROOT / "components" / "config" / "loading.py"
    offenders = [p for p in (ROOT / "components").rglob("*.py")
                 if p != config and ("pulumi.Config(" in p.read_text() or "get_config" in p.read_text())]
    assert offenders == []
