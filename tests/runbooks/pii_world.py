"""A PII incident on moto's S3/SNS/SQS/STS server: a versioned log bucket with personal data in some
objects (one gzip-compressed, one only in an older version, one in the key itself), an object-locked
quarantine bucket, a data-protection topic delivering to a queue, and a targets file for the runbook."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import yaml

from llmops.pii.corpus import generate
from llmops.pii.detectors import detect
from tests.runbooks.world import RunbookWorld

ROOT = Path(__file__).resolve().parents[2]
ENV = "incident"
EXISTING_STATEMENT = {"Sid": "AllowAnalyticsRead", "Effect": "Allow",
                      "Principal": {"AWS": "arn:aws:iam::123456789012:role/analytics"},
                      "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{bucket}/*"}


def jsonl(lines: int, seed: int, density: float) -> bytes:
    return "".join(text + "\n" for text, _ in generate(lines, seed=seed, density=density, prose=1)).encode()


class PiiWorld(RunbookWorld):
    runbook, env = "pii-incident", ENV

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.endpoint, self.workdir = endpoint, workdir
        suffix = uuid.uuid4().hex[:8]
        self.bucket, self.quarantine = f"inference-logs-{suffix}", f"pii-quarantine-{suffix}"
        self.prefix = "inference/2026/11/22/"
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.sns = boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1")
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        self.originals: dict[str, dict[str, str]] = {}  # key -> version id -> sha256 of the bytes written
        self.values: set[str] = set()  # every PII value written, to look for in every output

    # --- the world ---------------------------------------------------------------------------------------

    def build(self, *, object_lock: bool = True, versioning: bool = True, containment: str = "deny-writes") -> PiiWorld:
        self.s3.create_bucket(Bucket=self.bucket)
        if versioning:
            self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        statement = json.loads(json.dumps(EXISTING_STATEMENT).replace("{bucket}", self.bucket))
        self.s3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps({"Version": "2012-10-17",
                                                                         "Statement": [statement]}))
        self.s3.create_bucket(Bucket=self.quarantine, ObjectLockEnabledForBucket=object_lock)
        topic = self.sns.create_topic(Name=f"data-protection-{self.bucket}")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName=f"dp-{self.bucket}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        self._put("part-0.jsonl", jsonl(200, 1, 0.3))  # personal data
        self._put("part-1.jsonl.gz", gzip.compress(jsonl(200, 2, 0.3)), gzipped=True)  # compressed, with data
        self._put("part-2.jsonl", jsonl(200, 3, 0.0))  # clean
        self._put("part-3.jsonl", jsonl(50, 4, 0.5))  # data in an older version only ...
        self._put("part-3.jsonl", jsonl(50, 5, 0.0))  # ... the current one is clean
        self._put("users/jane.doe@example.com/session.jsonl", jsonl(20, 6, 0.5))  # the key itself is personal data
        self.s3.put_object(Bucket=self.bucket, Key="elsewhere/other.jsonl", Body=jsonl(20, 7, 1.0))  # out of scope
        self.values.add("jane.doe@example.com")
        self.targets_dir = self.workdir / "targets"
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        pii = {"quarantine_bucket": self.quarantine, "quarantine_prefix": "incidents", "containment": containment,
               "data_protection_topic_arn": topic, "scan_workers": 3}
        (self.targets_dir / f"{ENV}.yaml").write_text(yaml.safe_dump({
            "environment": ENV, "stack_file": "stacks/Pulumi.prod.yaml",
            "aws": {"region": "us-east-1", "endpoint_url": self.endpoint},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"), "pii": pii}))
        return self

    def _put(self, name: str, body: bytes, gzipped: bool = False) -> None:
        key = self.prefix + name
        put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.originals.setdefault(key, {})[put.get("VersionId", "null")] = hashlib.sha256(body).hexdigest()
        text = (gzip.decompress(body) if gzipped else body).decode()
        self.values.update(text.encode()[m.start:m.end].decode() for m in detect(text))

    def environment(self) -> dict[str, str]:
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "LLMOPS_OPERATOR": "oncall@test"}

    @property
    def source(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def affected(self) -> set[str]:
        return {self.prefix + n for n in ("part-0.jsonl", "part-1.jsonl.gz", "part-3.jsonl",
                                          "users/jane.doe@example.com/session.jsonl")}

    # --- running it as on-call does -------------------------------------------------------------------------

    # --- what is there now ----------------------------------------------------------------------------------

    def versions(self, bucket: str, prefix: str = "") -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                found.setdefault(version["Key"], []).append(version)
        return found

    def body(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        data = self.s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data

    def policy_sids(self) -> list[str]:
        return [s["Sid"] for s in json.loads(self.s3.get_bucket_policy(Bucket=self.bucket)["Policy"])["Statement"]]

    def notifications(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]

    def records_text(self) -> str:
        """Everything the run left for people: audit log, evidence, and the incident record and report."""
        parts = [p.read_text() for p in (self.workdir / "audit").rglob("*") if p.is_file()]
        parts += [p.read_text() for p in (self.workdir / "evidence").rglob("*") if p.is_file()]
        for key in self.versions(self.quarantine, "incidents/"):
            if key.endswith(".json"):
                parts.append(self.body(self.quarantine, key).decode())
        return "\n".join(parts)
