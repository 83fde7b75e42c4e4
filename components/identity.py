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


def role_policy(name: str, role: aws.iam.Role, statements: pulumi.Input[list[dict]],
                parent: pulumi.Resource) -> aws.iam.RolePolicy:
    """An inline policy: the role's permissions live and die with it, and are read in one place."""
    document = pulumi.Output.from_input(statements).apply(
        lambda items: json.dumps({"Version": "2012-10-17", "Statement": items}, sort_keys=True))
    return aws.iam.RolePolicy(name, role=role.id, policy=document, opts=pulumi.ResourceOptions(parent=parent))


def bucket_statements(bucket_arn: str, key_arn: str, *, write: bool, prefix: str = "*") -> list[dict]:
    """Read (and write) objects under one prefix of one bucket, with its KMS key; never `*` resources."""
    object_actions = ["s3:GetObject", "s3:GetObjectVersion"] + (["s3:PutObject", "s3:DeleteObject"] if write else [])
    key_actions = ["kms:Decrypt"] + (["kms:GenerateDataKey", "kms:Encrypt"] if write else [])
    return [
        {"Sid": "ListBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket_arn},
        {"Sid": "Objects", "Effect": "Allow", "Action": object_actions, "Resource": f"{bucket_arn}/{prefix}"},
        {"Sid": "BucketKey", "Effect": "Allow", "Action": key_actions, "Resource": key_arn},
    ]


def secret_statements(secret_arn: str, key_arn: str) -> list[dict]:
    return [
        {"Sid": "ReadSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn},
        {"Sid": "SecretKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn},
    ]
