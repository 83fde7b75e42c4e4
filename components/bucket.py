"""`SecureBucket`: the only way this project makes an S3 bucket.

Public access blocked four ways, objects owned by the bucket owner (no ACLs), SSE-KMS with
the component's own key and S3 bucket keys (fewer KMS calls), versioning, a policy that
refuses any request not over TLS, and force-destroy only in dev -- so a `pulumi destroy`
outside dev can never take model artifacts or snapshots with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class SecureBucketArgs:
    purpose: str  # what it holds, for the description tag: "model artifacts", "index snapshots"
    kms_key_arn: pulumi.Input[str]
    force_destroy: bool
    noncurrent_version_days: int = 90  # how long overwritten or deleted versions are kept
    # Objects expire this many days after they were written (then kept noncurrent_version_days as a version);
    # None: kept until deleted. For logs with personal data: keep no longer than needed.
    expire_days: int | None = None
    # Object lock (set at creation, never removable): versions can be put under legal hold or retention and then
    # cannot be deleted or overwritten by anyone until released. For evidence, such as quarantined personal data.
    object_lock: bool = False


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })


class SecureBucket(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:data:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(name, force_destroy=args.force_destroy and not args.object_lock,
                               object_lock_enabled=args.object_lock or None, tags={"llmops.io/holds": args.purpose},
                               opts=child)
        access = aws.s3.BucketPublicAccessBlock(name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
                                                ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(name, bucket=bucket.id, rules=[{
            "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": args.kms_key_arn},
            "bucket_key_enabled": True,
        }], opts=child)
        versioning = aws.s3.BucketVersioning(name, bucket=bucket.id,
                                             versioning_configuration={"status": "Enabled"}, opts=child)
        rules: list[dict] = [
            {"id": "expire-old-versions", "status": "Enabled", "filter": {},
             "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days}},
            {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
             "abort_incomplete_multipart_upload": {"days_after_initiation": 7}},
        ]
        if args.expire_days is not None:
            rules.append({"id": "expire-objects", "status": "Enabled", "filter": {},
                          "expiration": {"days": args.expire_days}})
        aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=rules,
                                            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        aws.s3.BucketPolicy(name, bucket=bucket.id, policy=bucket.arn.apply(tls_only_policy),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[access]))
        self.bucket = bucket
        self.name = bucket.bucket
        self.arn = bucket.arn
        self.register_outputs({"name": self.name, "arn": self.arn})
