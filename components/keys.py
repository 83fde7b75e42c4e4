"""Customer-managed KMS keys: one per data component, rotating yearly, with an alias that names it."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def rotating_key(name: str, *, description: str, alias: str, parent: pulumi.Resource) -> aws.kms.Key:
    key = aws.kms.Key(name, description=description, enable_key_rotation=True, deletion_window_in_days=30,
                      opts=pulumi.ResourceOptions(parent=parent))
    aws.kms.Alias(name, name=f"alias/{alias}", target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=parent))
    return key


def generated_secret(name: str, *, description: str, kms_key_arn: pulumi.Input[str], length: int, version: int,
                     recovery_window_days: int, as_json_key: str | None = None,
                     parent: pulumi.Resource) -> tuple[pulumi.Output[str], aws.secretsmanager.Secret]:
    """A random value from Secrets Manager's generator, stored in a KMS-encrypted secret through a
    write-only attribute: it is in no Pulumi state or plan. Bump `version` to rotate it.
    Returns the value (a Pulumi secret, for other write-only attributes) and the secret."""
    value = pulumi.Output.secret(aws.secretsmanager.get_random_password_output(
        password_length=length, exclude_punctuation=True, opts=pulumi.InvokeOutputOptions(parent=parent)).random_password)
    child = pulumi.ResourceOptions(parent=parent)
    secret = aws.secretsmanager.Secret(name, description=description, kms_key_id=kms_key_arn,
                                       recovery_window_in_days=recovery_window_days, opts=child)
    stored = pulumi.Output.json_dumps({as_json_key: value}) if as_json_key else value
    aws.secretsmanager.SecretVersion(name, secret_id=secret.id, secret_string_wo=stored, secret_string_wo_version=version,
                                     opts=child)
    return value, secret
