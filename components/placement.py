"""`DataPlacement`: where a data component lives and who may reach it -- shared by the registry,
the feature store and the retrieval index, and built once per region."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class DataPlacement:
    environment: str
    region: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # private subnets for databases and caches
    cluster_security_group_id: pulumi.Input[str]  # the only source allowed in
    oidc_provider: aws.iam.OpenIdConnectProvider  # for the components' IRSA roles
    client_namespaces: tuple[str, ...]  # Kubernetes namespaces allowed to call the component
    tags: Mapping[str, str]
