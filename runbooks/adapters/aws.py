"""AWS-backed engine services: a DynamoDB lock, SNS notifications and S3 record stores (boto3)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from runbooks.engine import LockHeld
from runbooks.engine.services import held_message


def client(service: str, *, region: str, endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


class DynamoDbLock:
    """One item per lock key, taken with a conditional write: free, expired, or already ours."""

    def __init__(self, table: str, dynamodb: Any) -> None:
        self.table, self.dynamodb = table, dynamodb

    def acquire(self, key: str, *, holder: str, run_id: str, ttl_seconds: int) -> None:
        from botocore.exceptions import ClientError

        now = int(time.time())
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={"lock_key": {"S": key}, "holder": {"S": holder}, "run_id": {"S": run_id},
                      "expires_at": {"N": str(now + ttl_seconds)}},
                ConditionExpression="attribute_not_exists(lock_key) OR expires_at < :now OR run_id = :run",
                ExpressionAttributeValues={":now": {"N": str(now)}, ":run": {"S": run_id}})
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = self.dynamodb.get_item(TableName=self.table, Key={"lock_key": {"S": key}}, ConsistentRead=True).get("Item", {})
            raise LockHeld(held_message(key, {k: list(v.values())[0] for k, v in item.items()})) from None

    def refresh(self, key: str, *, run_id: str, ttl_seconds: int) -> None:
        from botocore.exceptions import ClientError

        try:
            self.dynamodb.update_item(
                TableName=self.table, Key={"lock_key": {"S": key}}, UpdateExpression="SET expires_at = :until",
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":until": {"N": str(int(time.time()) + ttl_seconds)}, ":run": {"S": run_id}})
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LockHeld(f"{key}: this run ({run_id}) no longer holds the lock") from None
            raise

    def release(self, key: str, *, run_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.dynamodb.delete_item(TableName=self.table, Key={"lock_key": {"S": key}},
                                      ConditionExpression="run_id = :run", ExpressionAttributeValues={":run": {"S": run_id}})
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise


class SnsNotifier:
    def __init__(self, topic_arn: str, sns: Any) -> None:
        self.topic_arn, self.sns = topic_arn, sns

    def publish(self, *, subject: str, message: Mapping[str, Any], dedup_id: str) -> None:
        extra: dict[str, Any] = {}
        if self.topic_arn.endswith(".fifo"):  # FIFO topics drop a repeat of the same event
            extra = {"MessageGroupId": "llmops-runbooks", "MessageDeduplicationId": dedup_id}
        self.sns.publish(TopicArn=self.topic_arn, Subject=subject[:100], Message=json.dumps(message, default=str),
                         MessageAttributes={"event": {"DataType": "String", "StringValue": str(message.get("event"))}},
                         **extra)


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
            self.s3.put_object(Bucket=self.bucket, Key=self._key(key), IfNoneMatch="*",
                               Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
                               ContentType="application/json", **extra)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def get(self, key: str) -> Mapping[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
