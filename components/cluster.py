"""`Cluster`: an EKS control plane that is private by default, with its identity plumbing and system nodes.

The API endpoint is reachable only inside the VPC unless the config opens it to an
explicit CIDR allow-list. Kubernetes secrets are envelope-encrypted with a KMS key that
rotates; every control-plane log type goes to CloudWatch; an OIDC provider lets pods
assume narrowly-scoped IAM roles (IRSA), so the node role stays minimal. Each cluster
gets its own explicit Kubernetes provider: nothing is ever applied to whichever
cluster a kubeconfig happens to point at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config import SystemPool
from components.identity import managed_policy_arn, partition, service_account_role, service_trust_policy
from components.kubernetes import kubernetes_object
from components.manifests.storage import ENCRYPTED_GP3, encrypted_gp3_storage_class
from components.node_group import NodeGroupSpec, managed_node_group

CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
SYSTEM_POOL_LABEL = {"llmops.io/pool": "system"}


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    subnet_ids: Sequence[pulumi.Input[str]]
    endpoint_public_access: bool
    public_access_cidrs: Sequence[str]
    log_retention_days: int
    admin_role_arns: Sequence[str]
    system_pool: SystemPool
    deletion_protection: bool
    tags: Mapping[str, str]


def kubeconfig(cluster_name: str, region: str, endpoint: str, certificate_authority: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no credential is stored in it)."""
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name,
                      "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
            "interactiveMode": "Never",
        }}}],
    })


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    oidc_provider: aws.iam.OpenIdConnectProvider
    node_role: aws.iam.Role
    provider: k8s.Provider
    system_node_group: aws.eks.NodeGroup

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:infra:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = args.region

        secrets_key = aws.kms.Key(f"{name}-secrets",
                                  description=f"Envelope encryption of Kubernetes secrets in {args.cluster_name}",
                                  enable_key_rotation=True, deletion_window_in_days=30, opts=child)
        aws.kms.Alias(f"{name}-secrets", name=f"alias/{args.cluster_name}-secrets", target_key_id=secrets_key.key_id, opts=child)

        role = aws.iam.Role(f"{name}-control-plane", assume_role_policy=service_trust_policy("eks.amazonaws.com"), opts=child)
        role_policy = aws.iam.RolePolicyAttachment(f"{name}-control-plane", role=role.name,
                                                   policy_arn=managed_policy_arn(region, "AmazonEKSClusterPolicy"), opts=child)
        # EKS writes control-plane logs here; creating the group first is how its retention is ours to set.
        log_group = aws.cloudwatch.LogGroup(f"{name}-control-plane-logs", name=f"/aws/eks/{args.cluster_name}/cluster",
                                            retention_in_days=args.log_retention_days, opts=child)

        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            role_arn=role.arn,
            vpc_config={
                "subnet_ids": list(args.subnet_ids),
                "endpoint_private_access": True,
                "endpoint_public_access": args.endpoint_public_access,
                "public_access_cidrs": list(args.public_access_cidrs) if args.endpoint_public_access else None,
            },
            encryption_config={"provider": {"key_arn": secrets_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            deletion_protection=args.deletion_protection,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, log_group]),
        )
        self.oidc_provider = aws.iam.OpenIdConnectProvider(f"{name}-oidc", url=cluster.identities[0].oidcs[0].issuer,
                                                           client_id_lists=["sts.amazonaws.com"], opts=child)

        for index, principal in enumerate(args.admin_role_arns):
            entry = aws.eks.AccessEntry(f"{name}-admin-{index}", cluster_name=cluster.name, principal_arn=principal,
                                        type="STANDARD", opts=child)
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{index}", cluster_name=cluster.name, principal_arn=entry.principal_arn,
                policy_arn=f"arn:{partition(region)}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                access_scope={"type": "cluster"}, opts=child)

        cni_role = service_account_role(f"{name}-vpc-cni", oidc_provider=self.oidc_provider, namespace="kube-system",
                                        service_account="aws-node", parent=self)
        cni_policy = aws.iam.RolePolicyAttachment(f"{name}-vpc-cni", role=cni_role.name,
                                                  policy_arn=managed_policy_arn(region, "AmazonEKS_CNI_Policy"), opts=child)
        vpc_cni = aws.eks.Addon(f"{name}-vpc-cni", cluster_name=cluster.name, addon_name="vpc-cni",
                                service_account_role_arn=cni_role.arn, resolve_conflicts_on_create="OVERWRITE",
                                resolve_conflicts_on_update="PRESERVE",
                                opts=pulumi.ResourceOptions(parent=self, depends_on=[cni_policy]))
        kube_proxy = aws.eks.Addon(f"{name}-kube-proxy", cluster_name=cluster.name, addon_name="kube-proxy",
                                   resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="PRESERVE", opts=child)

        self.node_role = aws.iam.Role(f"{name}-nodes", assume_role_policy=service_trust_policy("ec2.amazonaws.com"), opts=child)
        node_policies = [
            aws.iam.RolePolicyAttachment(f"{name}-nodes-{policy}", role=self.node_role.name,
                                         policy_arn=managed_policy_arn(region, policy), opts=child)
            # Pull-only registry access; the CNI's permissions live on its own IRSA role, not here.
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
        ]

        pool = args.system_pool
        self.system_node_group = managed_node_group(f"{name}-system", NodeGroupSpec(
            cluster_name=cluster.name, node_role_arn=self.node_role.arn, subnet_ids=args.subnet_ids,
            ami_type="AL2023_x86_64_STANDARD", instance_types=pool.instance_types, capacity_type="on-demand",
            min_size=pool.min_size, desired_size=pool.desired_size, max_size=pool.max_size,
            root_volume_gib=pool.root_volume_gib, labels=SYSTEM_POOL_LABEL, tags=dict(args.tags),
            depends_on=[*node_policies, vpc_cni, kube_proxy]), parent=self)
        aws.eks.Addon(f"{name}-coredns", cluster_name=cluster.name, addon_name="coredns",
                      resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="PRESERVE",
                      opts=pulumi.ResourceOptions(parent=self, depends_on=[self.system_node_group]))
        ebs_role = service_account_role(f"{name}-ebs-csi", oidc_provider=self.oidc_provider, namespace="kube-system",
                                        service_account="ebs-csi-controller-sa", parent=self)
        ebs_policy = aws.iam.RolePolicyAttachment(f"{name}-ebs-csi", role=ebs_role.name, opts=child,
                                                  policy_arn=managed_policy_arn(region, "service-role/AmazonEBSCSIDriverPolicy"))
        ebs_csi = aws.eks.Addon(f"{name}-ebs-csi", cluster_name=cluster.name, addon_name="aws-ebs-csi-driver",
                                service_account_role_arn=ebs_role.arn, resolve_conflicts_on_create="OVERWRITE",
                                resolve_conflicts_on_update="PRESERVE",
                                opts=pulumi.ResourceOptions(parent=self, depends_on=[ebs_policy, self.system_node_group]))

        config = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
            lambda values: kubeconfig(values[0], region, values[1], _ca_data(values[2])))
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=config, enable_server_side_apply=True,
                                     delete_unreachable=False, opts=child)
        kubernetes_object(f"{name}-storageclass-{ENCRYPTED_GP3}", encrypted_gp3_storage_class(args.tags),
                          pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[ebs_csi]))

        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.cluster_security_group_id = cluster.vpc_config.cluster_security_group_id
        self.register_outputs({"name": self.name, "endpoint": self.endpoint, "oidcProviderArn": self.oidc_provider.arn,
                               "nodeRoleArn": self.node_role.arn})


def _ca_data(certificate_authority: Any) -> str:
    # Inside Output.all(...).apply nested objects may be plain dicts (the engine's wire form).
    return str(certificate_authority["data"] if isinstance(certificate_authority, dict) else certificate_authority.data)
