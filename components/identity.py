"""IAM roles, kept narrow: trust policies for AWS services and for Kubernetes service accounts (IRSA).

A pod gets AWS permissions only through a role bound to its own service account
in its own namespace, never through the node's role.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws


def service_trust_policy(service: str) -> str:
    """A trust policy that lets one AWS service (e.g. eks.amazonaws.com) assume the role."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


def service_account_trust_policy(provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> str:
    """A trust policy for exactly one Kubernetes service account, through the cluster's OIDC provider."""
    issuer = issuer_url.removeprefix("https://")
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{issuer}:aud": "sts.amazonaws.com",
            }},
        }],
    })


def service_account_role(name: str, *, oidc_provider: aws.iam.OpenIdConnectProvider, namespace: str,
                         service_account: str, parent: pulumi.Resource) -> aws.iam.Role:
    """An IAM role that only `namespace/service_account` can assume."""
    policy = pulumi.Output.all(oidc_provider.arn, oidc_provider.url).apply(
        lambda args: service_account_trust_policy(args[0], args[1], namespace, service_account))
    return aws.iam.Role(name, assume_role_policy=policy,
                        description=f"IRSA role for {namespace}/{service_account}",
                        opts=pulumi.ResourceOptions(parent=parent))


def partition(region: str) -> str:
    """The ARN partition a region belongs to."""
    return "aws-us-gov" if "-gov-" in region else "aws"


def managed_policy_arn(region: str, name: str) -> str:
    return f"arn:{partition(region)}:iam::aws:policy/{name}"
