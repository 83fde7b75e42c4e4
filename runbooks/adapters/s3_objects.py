"""Object storage for the PII-incident runbook (boto3): versions, streamed reads and checksums,
quarantine copies under legal hold, conditional writes, and the bucket policy that stops writers.

Transient failures (throttling, 5xx, timeouts) become TransientError so the engine retries them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, TypeVar
from urllib.parse import urlencode

from llmops.pii.sources import Source, s3_source
from llmops.retrieval.build import SnapshotEntry
from runbooks.adapters.aws import EVERY_CODE, aws_call, error_code
from runbooks.engine import PreconditionFailed

T = TypeVar("T")


def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """aws_call; the service errors that are not transient stay ClientErrors, for the caller to read."""
    return aws_call(f"S3 {getattr(function, '__name__', 'call')}", function, *args, passthrough=EVERY_CODE, **kwargs)


_code = error_code


class S3Objects:
    def __init__(self, s3: Any, sts: Any, kms_key_id: str | None = None) -> None:
        self.s3, self.sts, self.kms_key_id = s3, sts, kms_key_id

    # --- reading -------------------------------------------------------------------------------------------

    def versioning(self, bucket: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return _call(self.s3.get_bucket_versioning, Bucket=bucket).get("Status")
        except ClientError as error:
            if _code(error) in ("NoSuchBucket", "404"):
                raise PreconditionFailed(f"s3://{bucket}: no such bucket (or no access to it)") from None
            raise

    def object_lock_enabled(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            found = _call(self.s3.get_object_lock_configuration, Bucket=bucket)
        except ClientError as error:
            if _code(error) in ("ObjectLockConfigurationNotFoundError", "NoSuchBucket", "404"):
                return False
            raise
        return found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def versions(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Every version and delete marker under a prefix: key, version_id, latest, size, etag, modified (epoch)."""
        paginator = self.s3.get_paginator("list_object_versions")
        for page in _call(lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix))):
            for version in page.get("Versions", []):
                yield {"key": version["Key"], "version_id": version["VersionId"], "latest": version["IsLatest"],
                       "size": version["Size"], "etag": version["ETag"].strip('"'),
                       "modified": version["LastModified"].timestamp(), "delete_marker": False}
            for marker in page.get("DeleteMarkers", []):
                yield {"key": marker["Key"], "version_id": marker["VersionId"], "latest": marker["IsLatest"],
                       "size": 0, "etag": None, "modified": marker["LastModified"].timestamp(), "delete_marker": True}

    def key_versions(self, bucket: str, key: str) -> list[dict[str, Any]]:
        return [v for v in self.versions(bucket, key) if v["key"] == key]

    def source(self, bucket: str, key: str, version_id: str, size: int) -> Source:
        return s3_source(self.s3, bucket, key, size, version_id)

    def head(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        extra = {"VersionId": version_id} if version_id else {}
        try:
            return _call(self.s3.head_object, Bucket=bucket, Key=key, **extra)
        except ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NoSuchVersion", "405", "MethodNotAllowed"):
                return None
            raise

    def sha256(self, bucket: str, key: str, version_id: str | None = None) -> str:
        """SHA-256 of the stored bytes, streamed."""
        extra = {"VersionId": version_id} if version_id else {}
        body = _call(self.s3.get_object, Bucket=bucket, Key=key, **extra)["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def tags(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        extra = {"VersionId": version_id} if version_id else {}
        found = _call(self.s3.get_object_tagging, Bucket=bucket, Key=key, **extra)
        return {t["Key"]: t["Value"] for t in found.get("TagSet", [])}

    def legal_hold(self, bucket: str, key: str, version_id: str | None = None) -> bool:
        head = self.head(bucket, key, version_id)
        return head is not None and head.get("ObjectLockLegalHoldStatus") == "ON"

    def get_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return json.loads(_call(self.s3.get_object, Bucket=bucket, Key=key)["Body"].read())
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                return None
            raise

    # --- writing -------------------------------------------------------------------------------------------

    def _encryption(self) -> dict[str, str]:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}

    def copy(self, source_bucket: str, key: str, version_id: str, bucket: str, target_key: str,
             tags: Mapping[str, str], metadata: Mapping[str, str]) -> str:
        """Copy one version, tagged and with our metadata; returns the copy's version id. (Up to 5 GB: larger
        objects need a multipart copy.)"""
        copied = _call(self.s3.copy_object, Bucket=bucket, Key=target_key,
                       CopySource={"Bucket": source_bucket, "Key": key, "VersionId": version_id},
                       MetadataDirective="REPLACE", Metadata=dict(metadata), TaggingDirective="REPLACE",
                       Tagging=urlencode(dict(tags)), ChecksumAlgorithm="SHA256", **self._encryption())
        return copied.get("VersionId", "")

    def hold(self, bucket: str, key: str, version_id: str | None = None) -> None:
        """Put an object version under legal hold (object lock): it cannot be deleted until the hold is lifted."""
        extra = {"VersionId": version_id} if version_id else {}
        _call(self.s3.put_object_legal_hold, Bucket=bucket, Key=key, LegalHold={"Status": "ON"}, **extra)

    def put_stream(self, bucket: str, key: str, write: Callable[[IO[bytes]], None], metadata: Mapping[str, str],
                   content_type: str | None = None) -> str:
        """Write an object from a producer (spooled to disk past 64 MB); returns its version id."""
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
            write(spool)
            spool.seek(0)
            extra = {"ContentType": content_type} if content_type else {}
            put = _call(self.s3.put_object, Bucket=bucket, Key=key, Body=spool, Metadata=dict(metadata),
                        **extra, **self._encryption())
        return put.get("VersionId", "")

    def put_json_once(self, bucket: str, key: str, document: Mapping[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        try:
            _call(self.s3.put_object, Bucket=bucket, Key=key, IfNoneMatch="*", ContentType="application/json",
                  Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(), **self._encryption())
        except ClientError as error:
            if _code(error) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def delete_version(self, bucket: str, key: str, version_id: str) -> None:
        _call(self.s3.delete_object, Bucket=bucket, Key=key, VersionId=version_id)

    # --- the bucket policy ---------------------------------------------------------------------------------

    def policy(self, bucket: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return json.loads(_call(self.s3.get_bucket_policy, Bucket=bucket)["Policy"])
        except ClientError as error:
            if _code(error) in ("NoSuchBucketPolicy", "404"):
                return None
            raise

    def set_policy(self, bucket: str, policy: dict[str, Any] | None) -> None:
        if policy is None or not policy.get("Statement"):
            _call(self.s3.delete_bucket_policy, Bucket=bucket)
        else:
            _call(self.s3.put_bucket_policy, Bucket=bucket, Policy=json.dumps(policy))

    def caller_role_arn(self) -> str:
        """This runbook's principal, as a bucket policy condition names it (an assumed role's role ARN)."""
        arn = _call(self.sts.get_caller_identity)["Arn"]
        if ":assumed-role/" in arn:
            partition_account, _, rest = arn.partition(":assumed-role/")
            role = rest.split("/", 1)[0]
            return partition_account.replace(":sts:", ":iam:") + f":role/{role}"
        return arn


class SnsTopic:
    def __init__(self, sns: Any) -> None:
        self.sns = sns

    def publish(self, topic_arn: str, subject: str, message: Mapping[str, Any]) -> str:
        return _call(self.sns.publish, TopicArn=topic_arn, Subject=subject[:100],
                     Message=json.dumps(message, sort_keys=True, default=str))["MessageId"]


class S3Buckets:
    """A region's buckets as listings (key -> size and ETag) and replication status, for the failover runbook's
    replica check."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def listing(self, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = aws_call(f"list s3://{bucket}/{prefix}", lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix)))
        return {item["Key"]: (item["Size"], item["ETag"].strip('"')) for page in pages for item in page.get("Contents", [])}

    def replication_status(self, bucket: str, key: str) -> str | None:
        head = aws_call(f"head s3://{bucket}/{key}", self.s3.head_object, Bucket=bucket, Key=key)
        return head.get("ReplicationStatus")


class S3Corpus:
    """A retrieval corpus in S3: the snapshot of a prefix (every object's key, version and ETag) and each
    document read at exactly the snapshotted version."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def snapshot(self, bucket: str, prefix: str) -> list[SnapshotEntry]:
        from llmops.retrieval.build import s3_snapshot

        return aws_call(f"snapshot s3://{bucket}/{prefix}", s3_snapshot, self.s3, bucket, prefix)

    def read(self, bucket: str, entry: SnapshotEntry) -> str:
        version = {"VersionId": entry.version_id} if entry.version_id else {}
        body = aws_call(f"read s3://{bucket}/{entry.key}", self.s3.get_object, Bucket=bucket, Key=entry.key, **version)
        return str(body["Body"].read().decode("utf-8", "replace"))
