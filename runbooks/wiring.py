"""Build the engine's services (lock, notifier, audit, evidence) from an environment's targets."""

from __future__ import annotations

from pathlib import Path

from runbooks.engine.records import AuditLog
from runbooks.engine.runner import Services
from runbooks.engine.services import FileLock, FileRecordStore, Lock, Notifier, PrintNotifier, RecordStore
from runbooks.targets import Records, Targets


def record_store(records: Records, targets: Targets) -> RecordStore:
    if records.uri.startswith("s3://"):
        from runbooks.adapters.aws import S3RecordStore, client

        bucket, _, prefix = records.uri[len("s3://"):].partition("/")
        return S3RecordStore(bucket, prefix, client("s3", region=targets.aws.region, endpoint_url=targets.aws.endpoint_url),
                             records.kms_key_id)
    return FileRecordStore(records.uri)


def notifier_for(targets: Targets) -> Notifier:
    if targets.notifications.topic_arn:
        from runbooks.adapters.aws import SnsNotifier, client

        return SnsNotifier(targets.notifications.topic_arn, client("sns", region=targets.aws.region,
                                                                   endpoint_url=targets.aws.endpoint_url))
    return PrintNotifier()


def services_for(targets: Targets) -> Services:
    state_dir = Path(targets.state_dir).expanduser()
    lock: Lock
    if targets.lock.table:
        from runbooks.adapters.aws import DynamoDbLock, client

        lock = DynamoDbLock(targets.lock.table, client("dynamodb", region=targets.aws.region,
                                                       endpoint_url=targets.aws.endpoint_url))
    else:
        lock = FileLock(state_dir / "locks")
    notifier = notifier_for(targets)
    audit_uri = targets.audit.uri
    audit = AuditLog(store=record_store(targets.audit, targets)) if audit_uri.startswith("s3://") else \
        AuditLog(path=Path(audit_uri).expanduser() / "audit.jsonl")
    return Services(lock=lock, notifier=notifier, audit=audit, evidence=record_store(targets.evidence, targets),
                    state_dir=state_dir, lock_ttl_seconds=targets.lock.ttl_seconds, pushgateway=targets.pushgateway)
