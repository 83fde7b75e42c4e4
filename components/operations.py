"""`Operations`: what the runbooks need from the environment, in its primary region.

A DynamoDB table for runbook locks (conditional writes; point-in-time recovery; KMS), an SNS
topic for run notifications (KMS), a bucket for audit records and evidence bundles, and an
object-locked bucket where the pii-incident runbook quarantines personal data under legal hold. Their
names are stack outputs, from which `llmops runbook targets` writes the environment's targets file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.bucket import SecureBucket, SecureBucketArgs
from components.keys import rotating_key


@dataclass(frozen=True)
class OperationsArgs:
    environment: str
    tags: Mapping[str, str]


class Operations(pulumi.ComponentResource):
    def __init__(self, name: str, args: OperationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:ops:Operations", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        dev = args.environment == "dev"
        key = rotating_key(f"{name}-runbooks", description="Runbook locks, notifications, audit and evidence",
                           alias=f"llmops-{args.environment}-runbooks", parent=self)
        locks = aws.dynamodb.Table(
            f"{name}-runbook-locks", name=f"llmops-{args.environment}-runbook-locks", billing_mode="PAY_PER_REQUEST",
            hash_key="lock_key", attributes=[{"name": "lock_key", "type": "S"}],
            ttl={"attribute_name": "expires_at", "enabled": True},
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": key.arn},
            deletion_protection_enabled=not dev, opts=child)
        topic = aws.sns.Topic(f"{name}-runbooks", name=f"llmops-{args.environment}-runbooks",
                              kms_master_key_id=key.arn, opts=child)
        evidence = SecureBucket(f"{name}-runbook-evidence", SecureBucketArgs(
            purpose="runbook audit records and evidence", kms_key_arn=key.arn, force_destroy=dev,
            noncurrent_version_days=400), opts=child)
        # Never force-destroyed, not even in dev: what is held here is evidence.
        quarantine = SecureBucket(f"{name}-pii-quarantine", SecureBucketArgs(
            purpose="personal data quarantined by the pii-incident runbook (legal hold)", kms_key_arn=key.arn,
            force_destroy=False, noncurrent_version_days=3650, object_lock=True), opts=child)
        # For the release controller's role, which may touch exactly these.
        self.lock_table, self.topic, self.evidence_bucket, self.key = locks, topic, evidence, key
        self.outputs = {"lockTable": locks.name, "topicArn": topic.arn, "evidenceBucket": evidence.name,
                        "piiQuarantineBucket": quarantine.name, "keyArn": key.arn}
        self.register_outputs(self.outputs)
