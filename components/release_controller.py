"""`ReleaseController`: the controller that applies the models' rollout policies (`llmops release watch`), in one
region, with an IAM role (IRSA) that reaches exactly the environment's runbook lock, topic, one records prefix and
the key they are encrypted with -- all in the primary region, where `Operations` keeps them.

Deployed only where some model has a rollout policy; the Kubernetes objects are built in
`components/manifests/release_controller.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import Model, StackConfig, stack_file_config
from components.identity import role_policy, service_account_role
from components.kubernetes import kubernetes_objects, late
from components.manifests.release_controller import (
    NAME,
    ReleaseControllerSpec,
    patchable,
    records_prefix,
    release_controller_objects,
    targets_document,
)
from components.operations import Operations


def rollout_models(config: StackConfig) -> list[Model]:
    return [model for model in config.models if model.rollout is not None]


def wanted(config: StackConfig) -> bool:
    """A controller runs where it has something to judge: configured, and some model has a rollout policy."""
    return config.release_controller is not None and bool(rollout_models(config))


def stalled_after_seconds(config: StackConfig) -> int:
    """How long without a decision means the controller is stuck: stalledIntervals x the slowest policy's interval."""
    assert config.release_controller is not None
    slowest = max(model.rollout.interval_seconds for model in rollout_models(config) if model.rollout)
    return config.release_controller.stalled_intervals * slowest


def iam_statements(*, operations_region: str, lock_table_arn: str, topic_arn: str, bucket_arn: str, prefix: str,
                   key_arn: str) -> list[dict[str, Any]]:
    """The lock items, notifications, its own records prefix, and the key only as those services use it."""
    services = [f"{service}.{operations_region}.amazonaws.com" for service in ("dynamodb", "s3", "sns")]
    return [
        {"Sid": "RunbookLock", "Effect": "Allow", "Resource": lock_table_arn,
         "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]},
        {"Sid": "Notify", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn},
        {"Sid": "Records", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": f"{bucket_arn}/{prefix}/*"},
        # Without it a missing record reads as 403, not 404, and resuming a run after a crash fails.
        {"Sid": "ListRecords", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
        {"Sid": "RunbookKey", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"],
         "Resource": key_arn, "Condition": {"StringEquals": {"kms:ViaService": services}}},
    ]


@dataclass(frozen=True)
class ReleaseControllerArgs:
    config: StackConfig
    region: str
    namespace: str  # the serving namespace: its Deployments and HTTPRoutes
    tracking_uri: str  # this region's model registry
    oidc_provider: aws.iam.OpenIdConnectProvider
    operations: Operations  # the environment's, in the primary region
    tags: Mapping[str, str]


class ReleaseController(pulumi.ComponentResource):
    def __init__(self, name: str, args: ReleaseControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:serving:ReleaseController", name, None, opts)
        cfg, ops = args.config, args.operations
        if cfg.release_controller is None or not wanted(cfg):
            raise ValueError("a release controller needs llmops:releaseController and a model with a rollout policy")
        primary, prefix = cfg.regions.primary, records_prefix(args.region)

        role = service_account_role(f"{name}-release-controller", oidc_provider=args.oidc_provider,
                                    namespace=args.namespace, service_account=NAME, parent=self)
        role_policy(f"{name}-release-controller", role, pulumi.Output.all(
            ops.lock_table.arn, ops.topic.arn, ops.evidence_bucket.arn, ops.key.arn).apply(
            lambda a: iam_statements(operations_region=primary, lock_table_arn=a[0], topic_arn=a[1], bucket_arn=a[2],
                                     prefix=prefix, key_arn=a[3])), parent=self)

        models = tuple(model.name for model in rollout_models(cfg))
        spec = ReleaseControllerSpec(
            environment=cfg.environment, region=args.region, namespace=args.namespace,
            image=cfg.release_controller.image, role_arn=late("role_arn"), models=models,
            targets=targets_document(
                environment=cfg.environment, region=args.region, operations_region=primary,
                namespace=args.namespace, tracking_uri=args.tracking_uri,
                prometheus_url=cfg.serving.prometheus_url, lock_table=late("lock_table"),
                records_bucket=late("records_bucket"), key_arn=late("key_arn"), topic_arn=late("topic_arn")),
            stack_config=stack_file_config(cfg), tags=args.tags)
        kubernetes_objects(f"{name}-release", release_controller_objects(spec), self, late_values={
            "role_arn": role.arn, "lock_table": ops.lock_table.name, "records_bucket": ops.evidence_bucket.name,
            "key_arn": ops.key.arn, "topic_arn": ops.topic.arn})
        deployments, routes = patchable(models)
        self.outputs = {"roleArn": role.arn, "models": list(models), "patches": {"deployments": deployments,
                                                                               "httproutes": routes},
                        "stalledAfterSeconds": stalled_after_seconds(cfg), "recordsPrefix": prefix}
        self.register_outputs(self.outputs)
