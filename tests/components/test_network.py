"""The VPC as planned: private subnets in two or more zones, NAT egress, no public node addresses."""

from __future__ import annotations

import ipaddress

import pytest

from components.network import subnet_layout


def subnets(plan, kind):
    return [s for s in plan.by_type("aws:ec2/subnet:Subnet") if f"-{kind}-" in s.name]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_private_subnets_span_at_least_two_zones_per_region(plans, stack):
    plan = plans[stack]
    for vpc in plan.by_type("aws:ec2/vpc:Vpc"):
        prefix = vpc.name.removesuffix("-vpc")
        private = [s for s in subnets(plan, "private") if s.name.startswith(prefix + "-")]
        zones = {s.inputs["availabilityZone"] for s in private}
        assert len(zones) >= 2 and len(zones) == len(private)
        network = ipaddress.ip_network(vpc.inputs["cidrBlock"])
        assert all(ipaddress.ip_network(s.inputs["cidrBlock"]).subnet_of(network) for s in private)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_no_subnet_hands_out_public_ips(plans, stack):
    all_subnets = plans[stack].by_type("aws:ec2/subnet:Subnet")
    assert all_subnets
    assert {s.inputs["mapPublicIpOnLaunch"] for s in all_subnets} == {False}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_nodes_and_control_plane_use_only_private_subnets(plans, stack):
    plan = plans[stack]
    private_ids = {s.urn.rsplit("::", 1)[-1] for s in subnets(plan, "private")}
    used = [*(n.inputs["subnetIds"] for n in plan.by_type("aws:eks/nodeGroup:NodeGroup")),
            *(c.inputs["vpcConfig"]["subnetIds"] for c in plan.by_type("aws:eks/cluster:Cluster"))]
    for ids in used:
        assert {i.rsplit("-", 1)[0] for i in ids} <= private_ids


def test_private_routes_leave_through_nat_and_prod_has_one_nat_per_zone(plans):
    for stack, expected in (("dev", 1), ("staging", 3), ("prod", 6)):
        plan = plans[stack]
        assert len(plan.by_type("aws:ec2/natGateway:NatGateway")) == expected
        private_defaults = [r for r in plan.by_type("aws:ec2/route:Route") if "-private-" in r.name]
        assert private_defaults and all(r.inputs.get("natGatewayId") and "gatewayId" not in r.inputs for r in private_defaults)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_default_security_group_is_closed_and_flows_are_logged(plans, stack):
    plan = plans[stack]
    for group in plan.by_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"):
        assert group.inputs.get("ingress", []) == [] and group.inputs.get("egress", []) == []
    assert len(plan.by_type("aws:ec2/flowLog:FlowLog")) == len(plan.by_type("aws:ec2/vpc:Vpc"))
    assert {f.inputs["trafficType"] for f in plan.by_type("aws:ec2/flowLog:FlowLog")} == {"ALL"}


def test_s3_gateway_endpoint_keeps_model_downloads_off_nat(plans):
    endpoints = plans["prod"].by_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert sorted(e.inputs["serviceName"] for e in endpoints) == ["com.amazonaws.us-east-1.s3", "com.amazonaws.us-west-2.s3"]
    assert {e.inputs["vpcEndpointType"] for e in endpoints} == {"Gateway"}


@pytest.mark.parametrize("cidr,zones", [("10.40.0.0/16", 2), ("10.40.0.0/16", 6), ("10.9.16.0/20", 3)])
def test_subnet_layout_is_disjoint_and_inside_the_vpc(cidr, zones):
    private, public = subnet_layout(cidr, zones)
    blocks = [ipaddress.ip_network(b) for b in private + public]
    assert len(private) == len(public) == zones
    assert all(b.subnet_of(ipaddress.ip_network(cidr)) for b in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1:])
