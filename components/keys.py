"""Customer-managed KMS keys: one per data component, rotating yearly, with an alias that names it."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def rotating_key(name: str, *, description: str, alias: str, parent: pulumi.Resource) -> aws.kms.Key:
    key = aws.kms.Key(name, description=description, enable_key_rotation=True, deletion_window_in_days=30,
                      opts=pulumi.ResourceOptions(parent=parent))
    aws.kms.Alias(name, name=f"alias/{alias}", target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=parent))
    return key
