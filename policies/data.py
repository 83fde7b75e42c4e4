"""Data store policies: S3, RDS, ElastiCache and KMS keys."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.common import CONTEXT_SCHEMA, outside_dev

BUCKET = "aws:s3/bucket:Bucket"
SSE_CONFIGURATION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
# A bucket holds artifacts, logs or snapshots unless its `llmops.io/holds` tag says otherwise.
VERSIONED_PURPOSES = ("artifact", "log", "snapshot", "model", "registry", "evidence", "quarantine", "feature")


def _buckets_with(args: StackValidationArgs, resource_type: str) -> dict[str, Any]:
    """Bucket URN -> the resource of `resource_type` whose `bucket` input comes from it."""
    found = {}
    for resource in args.resources:
        if resource.resource_type == resource_type:
            for bucket in resource.property_dependencies.get("bucket", []):
                found[bucket.urn] = resource
    return found


def _buckets(args: StackValidationArgs) -> list[Any]:
    return [r for r in args.resources if r.resource_type == BUCKET]


def _public_access_blocked(args: StackValidationArgs, report: ReportViolation) -> None:
    blocks = _buckets_with(args, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    for bucket in _buckets(args):
        block = blocks.get(bucket.urn)
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        off = [f for f in flags if not (block and block.props.get(f) is True)]
        if off:
            report(f"bucket {bucket.name}: public access is not fully blocked ({', '.join(off)}); add a "
                   "BucketPublicAccessBlock with all four set to true.", bucket.urn)


def _sse_kms(args: StackValidationArgs, report: ReportViolation) -> None:
    configs = _buckets_with(args, SSE_CONFIGURATION)
    for bucket in _buckets(args):
        rules = (configs[bucket.urn].props.get("rules") or []) if bucket.urn in configs else []
        algorithms = {((r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")) for r in rules}
        if not algorithms & {"aws:kms", "aws:kms:dsse"}:
            report(f"bucket {bucket.name} is not encrypted with SSE-KMS; add a server-side encryption configuration "
                   "with sseAlgorithm aws:kms and the component's key.", bucket.urn)


def _holds_versioned_data(bucket: Any) -> bool:
    purpose = str(((bucket.props.get("tags") or {}).get("llmops.io/holds")) or bucket.name).lower()
    return any(word in purpose for word in VERSIONED_PURPOSES)


def _versioned(args: StackValidationArgs, report: ReportViolation) -> None:
    versioning = _buckets_with(args, "aws:s3/bucketVersioning:BucketVersioning")
    for bucket in _buckets(args):
        if not _holds_versioned_data(bucket):
            continue
        status = ((versioning[bucket.urn].props.get("versioningConfiguration") or {}).get("status")
                  if bucket.urn in versioning else None)
        if status != "Enabled":
            report(f"bucket {bucket.name} holds artifacts, logs or snapshots but is not versioned; add a "
                   "BucketVersioning with status Enabled so an overwrite or delete can be undone.", bucket.urn)


def _no_force_destroy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == BUCKET and args.props.get("forceDestroy") and outside_dev(args):
        report(f"bucket {args.name} has forceDestroy outside dev; remove it so `pulumi destroy` cannot delete "
               "its objects.", None)


def _rds_encrypted_private(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster"):
        return
    if args.props.get("storageEncrypted") is not True:
        report(f"database {args.name} is not encrypted at rest; set storageEncrypted: true (with a KMS key).", None)
    if args.props.get("publiclyAccessible"):
        report(f"database {args.name} is publicly accessible; set publiclyAccessible: false.", None)


def _rds_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster") or not outside_dev(args):
        return
    if args.props.get("deletionProtection") is not True:
        report(f"database {args.name} has no deletion protection; set deletionProtection: true outside dev.", None)
    if float(args.props.get("backupRetentionPeriod") or 0) < 7:
        report(f"database {args.name} keeps backups {args.props.get('backupRetentionPeriod', 0)} day(s); keep at "
               "least 7 outside dev (backupRetentionPeriod).", None)


def _elasticache_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "aws:elasticache/replicationGroup:ReplicationGroup":
        return
    if args.props.get("atRestEncryptionEnabled") is not True:
        report(f"cache {args.name} is not encrypted at rest; set atRestEncryptionEnabled: true.", None)
    if args.props.get("transitEncryptionEnabled") is not True:
        report(f"cache {args.name} is not encrypted in transit; set transitEncryptionEnabled: true "
               "(and transitEncryptionMode: required).", None)


def _kms_rotates(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:kms/key:Key" and args.props.get("enableKeyRotation") is not True:
        spec = args.props.get("customerMasterKeySpec", args.props.get("keySpec", "SYMMETRIC_DEFAULT"))
        if str(spec) == "SYMMETRIC_DEFAULT":
            report(f"KMS key {args.name} does not rotate; set enableKeyRotation: true.", None)


POLICIES = [
    StackValidationPolicy(name="s3-public-access-blocked", description="S3 buckets block all public access.",
                          validate=_public_access_blocked, config_schema=CONTEXT_SCHEMA),
    StackValidationPolicy(name="s3-sse-kms", description="S3 buckets are encrypted with SSE-KMS.",
                          validate=_sse_kms, config_schema=CONTEXT_SCHEMA),
    StackValidationPolicy(name="s3-versioning",
                          description="S3 buckets holding artifacts, logs or snapshots are versioned.",
                          validate=_versioned, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="s3-no-force-destroy", description="S3 buckets have no force-destroy outside dev.",
                             validate=_no_force_destroy, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="rds-encrypted-private", description="Databases are encrypted and not public.",
                             validate=_rds_encrypted_private, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="rds-protected",
                             description="Databases outside dev have deletion protection and at least 7 days "
                                         "of backups.",
                             validate=_rds_protected, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="elasticache-encrypted", description="Caches are encrypted at rest and in transit.",
                             validate=_elasticache_encrypted, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="kms-key-rotation", description="Symmetric KMS keys rotate.",
                             validate=_kms_rotates, config_schema=CONTEXT_SCHEMA),
]
