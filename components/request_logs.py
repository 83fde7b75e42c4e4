"""`RequestLogs`: the serving request logs' durable copy in one region -- a bucket of its own (SecureBucket: KMS with
its own key, versioned, TLS-only, expiring after requestLogs.retentionDays), an IRSA role that lets only the cluster's
Fluent Bit write under `requests/`, and the Fluent Bit config that ships every record there
(`components/manifests/request_logs.py`).

A bucket of its own, not a prefix of the registry's: the records hold prompts (personal data), so they expire, are
readable by no role that reads models (the registry's and the serving pods'), are not replicated to other regions
with the artifacts, and their key can be granted or revoked alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.bucket import SecureBucket, SecureBucketArgs
from components.config import StackConfig
from components.identity import role_policy, service_account_role
from components.keys import rotating_key
from components.kubernetes import kubernetes_objects, late
from components.manifests.drift_monitor import FLUENT_BIT_NAMESPACE
from components.manifests.request_logs import (
    PREFIX,
    RequestLogSink,
    fluent_bit_config_map,
    iam_statements,
    request_logs_uri,
)


@dataclass(frozen=True)
class RequestLogsArgs:
    config: StackConfig
    region: str
    oidc_provider: aws.iam.OpenIdConnectProvider
    tags: Mapping[str, str]


class RequestLogs(pulumi.ComponentResource):
    def __init__(self, name: str, args: RequestLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:data:RequestLogs", name, None, opts)
        cfg, logs = args.config, args.config.request_logs
        child = pulumi.ResourceOptions(parent=self)
        key = rotating_key(f"{name}-request-logs", description=f"Serving request logs in {args.region}",
                           alias=f"llmops-{name}-request-logs", parent=self)
        bucket = SecureBucket(f"{name}-request-logs", SecureBucketArgs(
            purpose="serving request logs", kms_key_arn=key.arn, force_destroy=cfg.environment == "dev",
            expire_days=logs.retention_days, noncurrent_version_days=7), opts=child)
        role = service_account_role(f"{name}-request-logs", oidc_provider=args.oidc_provider,
                                    namespace=FLUENT_BIT_NAMESPACE, service_account=logs.fluent_bit_service_account,
                                    parent=self)
        role_policy(f"{name}-request-logs", role, pulumi.Output.all(bucket.arn, key.arn).apply(
            lambda a: iam_statements(region=args.region, bucket_arn=a[0], key_arn=a[1])), parent=self)
        sink = RequestLogSink(environment=cfg.environment, region=args.region, bucket=late("bucket"),
                              log_path=logs.log_path, tags=dict(args.tags))
        kubernetes_objects(f"{name}-request-logs", [fluent_bit_config_map(sink)], self,
                           late_values={"bucket": bucket.name})
        self.bucket, self.key, self.role = bucket, key, role
        self.outputs = {"bucket": bucket.name, "prefix": f"{PREFIX}/", "uri": bucket.name.apply(request_logs_uri),
                        "roleArn": role.arn, "retentionDays": logs.retention_days}
        self.register_outputs(self.outputs)
