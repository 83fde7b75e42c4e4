"""`Network`: one VPC per region with private subnets for every node, in two or more zones.

Nodes live only in private subnets and never get a public IP; outbound traffic leaves
through NAT gateways (one per zone, or a single one where the config accepts the risk),
and S3 traffic -- model weights are tens of gigabytes -- goes through a free gateway
endpoint instead of paying NAT data charges. The default security group is emptied
and every flow is logged.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from components.identity import service_trust_policy


@dataclass(frozen=True)
class NetworkArgs:
    region: str
    cidr: str
    availability_zones: int
    nat_gateways: Literal["single", "per-az"]
    cluster_name: str  # for the subnet tags Kubernetes load balancers discover subnets by
    flow_log_retention_days: int


def subnet_layout(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Private and public subnet CIDRs: one eighth of the VPC per zone for nodes and pods
    (the VPC CNI gives every pod a VPC address), small public subnets carved from the last eighth."""
    vpc = ipaddress.IPv4Network(cidr)
    eighths = list(vpc.subnets(prefixlen_diff=3))
    private = [str(block) for block in eighths[:zones]]
    public = [str(block) for block in eighths[-1].subnets(new_prefix=min(vpc.prefixlen + 8, 27))][:zones]
    return private, public


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        private_cidrs, public_cidrs = subnet_layout(args.cidr, args.availability_zones)
        zones = aws.get_availability_zones_output(
            state="available",
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).names

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_hostnames=True, enable_dns_support=True,
                          tags={"Name": name}, opts=child)
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
                                     tags={"Name": f"{name}-default-closed"}, opts=child)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": name}, opts=child)

        public_table = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags={"Name": f"{name}-public"}, opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_table.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=gateway.id, opts=child)

        cluster_tag = f"kubernetes.io/cluster/{args.cluster_name}"
        public_subnets, private_subnets, private_tables, nats = [], [], [], []
        for index, (private_cidr, public_cidr) in enumerate(zip(private_cidrs, public_cidrs, strict=True)):
            zone = zones[index]
            public = aws.ec2.Subnet(
                f"{name}-public-{index}", vpc_id=vpc.id, cidr_block=public_cidr, availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{index}", "kubernetes.io/role/elb": "1", cluster_tag: "shared"}, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{index}", subnet_id=public.id, route_table_id=public_table.id,
                                          opts=child)
            public_subnets.append(public)

            if args.nat_gateways == "per-az" or index == 0:
                address = aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc", tags={"Name": f"{name}-nat-{index}"}, opts=child)
                nats.append(aws.ec2.NatGateway(f"{name}-nat-{index}", allocation_id=address.id, subnet_id=public.id,
                                               tags={"Name": f"{name}-nat-{index}"},
                                               opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway])))

            private = aws.ec2.Subnet(
                f"{name}-private-{index}", vpc_id=vpc.id, cidr_block=private_cidr, availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-private-{index}", "kubernetes.io/role/internal-elb": "1", cluster_tag: "shared"},
                opts=child)
            table = aws.ec2.RouteTable(f"{name}-private-{index}", vpc_id=vpc.id, tags={"Name": f"{name}-private-{index}"},
                                       opts=child)
            aws.ec2.Route(f"{name}-private-{index}-default", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=nats[-1].id, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{index}", subnet_id=private.id, route_table_id=table.id,
                                          opts=child)
            private_subnets.append(private)
            private_tables.append(table)

        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[t.id for t in private_tables],
                            tags={"Name": f"{name}-s3"}, opts=child)
        self._flow_logs(name, vpc, args.flow_log_retention_days)

        self.vpc_id = vpc.id
        self.private_subnet_ids = [subnet.id for subnet in private_subnets]
        self.public_subnet_ids = [subnet.id for subnet in public_subnets]
        self.register_outputs({"vpcId": self.vpc_id, "privateSubnetIds": self.private_subnet_ids,
                               "publicSubnetIds": self.public_subnet_ids})

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, retention_days: int) -> None:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(f"{name}-flow-logs", name=f"/llmops/vpc/{name}/flow-logs",
                                        retention_in_days=retention_days, opts=child)
        role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com"),
                            opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=group.arn.apply(lambda arn: json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow",
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                           "Resource": [arn, f"{arn}:*"]}],
        })), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                        log_destination=group.arn, iam_role_arn=role.arn, max_aggregation_interval=60, opts=child)


def ingress_security_group(name: str, *, vpc_id: pulumi.Input[str], port: int, source_security_group_id: pulumi.Input[str],
                           description: str, parent: pulumi.Resource) -> aws.ec2.SecurityGroup:
    """A security group for a data store: one port, only from the cluster's security group, no egress."""
    group = aws.ec2.SecurityGroup(name, vpc_id=vpc_id, description=description, ingress=[], egress=[],
                                  tags={"Name": name}, opts=pulumi.ResourceOptions(parent=parent))
    aws.vpc.SecurityGroupIngressRule(name, security_group_id=group.id, referenced_security_group_id=source_security_group_id,
                                     ip_protocol="tcp", from_port=port, to_port=port,
                                     description=f"{description} from the EKS cluster",
                                     opts=pulumi.ResourceOptions(parent=parent))
    return group
