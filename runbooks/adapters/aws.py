"""AWS for runbooks (boto3): the one translation of AWS errors into the engine's, plus the engine services
backed by AWS -- a DynamoDB lock, SNS notifications and S3 record stores.

Every AWS call of every adapter goes through `aws_call`, so "transient" means the same everywhere (retried
by the engine), and missing credentials or an unreachable endpoint read "AWS ... unreachable; nothing was
changed" instead of a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from runbooks.engine import LockHeld, PreconditionFailed, RecordsUnavailable, TransientError
from runbooks.engine.services import held_message

T = TypeVar("T")

# Error codes AWS documents as worth retrying (throttling, a busy or failing service), across the services we call.
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "RequestThrottled", "RequestThrottledException", "SlowDown",
    "PriorRequestNotComplete", "RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure",
    "ServiceUnavailable", "ServiceUnavailableException", "500", "502", "503", "504"})


def aws_call(what: str, function: Callable[..., T], *args: Any, passthrough: Collection[str] = (), **kwargs: Any) -> T:
    """Call boto3, translating its errors: transient ones to TransientError, missing credentials and unreachable
    endpoints to PreconditionFailed (nothing was changed: the call did not reach AWS), and any other service
    error to PreconditionFailed naming the call -- except codes in `passthrough`, which the caller handles."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
        TokenRetrievalError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    try:
        return function(*args, **kwargs)
    except ClientError as error:
        code = error_code(error)
        if code in TRANSIENT_CODES:
            raise TransientError(f"{what}: AWS {code}") from None
        if code in passthrough:
            raise
        message = error.response.get("Error", {}).get("Message", "")
        raise PreconditionFailed(f"{what}: AWS {code}: {message}") from None
    except (NoCredentialsError, PartialCredentialsError, ProfileNotFound, TokenRetrievalError, NoRegionError) as error:
        raise PreconditionFailed(f"{what}: AWS unreachable: {error} (set AWS credentials, e.g. AWS_PROFILE, and "
                                 "the region); nothing was changed") from None
    except EndpointConnectionError as error:
        raise PreconditionFailed(f"{what}: AWS unreachable: {error}; nothing was changed") from None
    except (BotoConnectionError, ReadTimeoutError) as error:
        raise TransientError(f"{what}: AWS unreachable: {error}") from None


class _EveryCode:
    def __contains__(self, code: object) -> bool:
        return True


# For adapters that inspect every non-transient service error themselves (S3's NoSuchKey, NoSuchBucket, ...).
EVERY_CODE: Collection[str] = _EveryCode()  # type: ignore[assignment]


def error_code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def client(service: str, *, region: str, endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


_CONDITION = ("ConditionalCheckFailedException",)


class DynamoDbLock:
    """One item per lock key, taken with a conditional write: free, expired, or already ours."""

    def __init__(self, table: str, dynamodb: Any) -> None:
        self.table, self.dynamodb = table, dynamodb

    def acquire(self, key: str, *, holder: str, run_id: str, ttl_seconds: int) -> None:
        from botocore.exceptions import ClientError

        now = int(time.time())
        try:
            aws_call(f"take the lock {key} (DynamoDB {self.table})", self.dynamodb.put_item, passthrough=_CONDITION,
                     TableName=self.table,
                     Item={"lock_key": {"S": key}, "holder": {"S": holder}, "run_id": {"S": run_id},
                           "expires_at": {"N": str(now + ttl_seconds)}},
                     ConditionExpression="attribute_not_exists(lock_key) OR expires_at < :now OR run_id = :run",
                     ExpressionAttributeValues={":now": {"N": str(now)}, ":run": {"S": run_id}})
        except ClientError:
            item = aws_call(f"read the lock {key}", self.dynamodb.get_item, TableName=self.table,
                            Key={"lock_key": {"S": key}}, ConsistentRead=True).get("Item", {})
            raise LockHeld(held_message(key, {k: list(v.values())[0] for k, v in item.items()})) from None

    def refresh(self, key: str, *, run_id: str, ttl_seconds: int) -> None:
        from botocore.exceptions import ClientError

        try:
            aws_call(f"refresh the lock {key}", self.dynamodb.update_item, passthrough=_CONDITION,
                     TableName=self.table, Key={"lock_key": {"S": key}}, UpdateExpression="SET expires_at = :until",
                     ConditionExpression="run_id = :run",
                     ExpressionAttributeValues={":until": {"N": str(int(time.time()) + ttl_seconds)},
                                                ":run": {"S": run_id}})
        except ClientError:
            raise LockHeld(f"{key}: this run ({run_id}) no longer holds the lock") from None

    def release(self, key: str, *, run_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            aws_call(f"release the lock {key}", self.dynamodb.delete_item, passthrough=_CONDITION, TableName=self.table,
                     Key={"lock_key": {"S": key}}, ConditionExpression="run_id = :run",
                     ExpressionAttributeValues={":run": {"S": run_id}})
        except ClientError:
            pass  # no longer ours (expired and taken): nothing to release


class SnsNotifier:
    def __init__(self, topic_arn: str, sns: Any) -> None:
        self.topic_arn, self.sns = topic_arn, sns

    def publish(self, *, subject: str, message: Mapping[str, Any], dedup_id: str) -> None:
        extra: dict[str, Any] = {}
        if self.topic_arn.endswith(".fifo"):  # FIFO topics drop a repeat of the same event
            extra = {"MessageGroupId": "llmops-runbooks", "MessageDeduplicationId": dedup_id}
        aws_call(f"notify {self.topic_arn}", self.sns.publish, TopicArn=self.topic_arn, Subject=subject[:100],
                 Message=json.dumps(message, default=str),
                 MessageAttributes={"event": {"DataType": "String", "StringValue": str(message.get("event"))}}, **extra)


class S3RecordStore:
    """Write-once JSON objects under a prefix (use a bucket with versioning, ideally object lock)."""

    def __init__(self, bucket: str, prefix: str, s3: Any, kms_key_id: str | None = None) -> None:
        self.bucket, self.prefix, self.s3, self.kms_key_id = bucket, prefix.strip("/"), s3, kms_key_id

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}.json" if self.prefix else f"{key}.json"

    def put_once(self, key: str, document: Mapping[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}
        try:
            aws_call(f"write s3://{self.bucket}/{self._key(key)}", self.s3.put_object,
                     passthrough=("PreconditionFailed", "ConditionalRequestConflict"), Bucket=self.bucket,
                     Key=self._key(key), IfNoneMatch="*",
                     Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
                     ContentType="application/json", **extra)
        except ClientError:
            return False  # written before (a resumed run): write-once
        return True

    def get(self, key: str) -> Mapping[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            found = aws_call(f"read s3://{self.bucket}/{self._key(key)}", self.s3.get_object,
                             passthrough=("NoSuchKey", "404"), Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return None
        return json.loads(found["Body"].read())

    def check_writable(self, probe: str) -> None:
        """A small write-once probe object (`preflight/<run id>`): the only proof that writes are allowed."""
        try:
            self.put_once(f"preflight/{probe}", {"run_id": probe, "at": time.time()})
        except (TransientError, PreconditionFailed) as error:
            raise RecordsUnavailable(f"s3://{self.bucket}/{self.prefix} is not writable ({error}); "
                                     "nothing was changed") from None
