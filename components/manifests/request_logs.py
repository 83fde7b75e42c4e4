"""The serving request logs' durable copy, as Kubernetes objects: the Fluent Bit configuration that ships every
request-log record of every model and track (stable, canary, shadow) to the region's request-log bucket.

Why its own pipeline and ConfigMap beside the drift monitor's: the drift pipeline samples and drops the models it does
not watch; this one keeps every record, and exists in every region whether or not a drift monitor runs (the PII
scanner and `llmops release compare` read it). Mounted and included like the drift monitor's (README: Drift
monitoring in the cluster), by the platform team's Fluent Bit in `logging`, whose service account assumes the write
role (IRSA: annotate it with the role ARN the stack exports).

Objects land as `s3://<bucket>/requests/<yyyy>/<mm>/<dd>/<HH>/<uuid>.jsonl.gz`: gzip, one request-log record per
line exactly as the serving container wrote it ({"ts", "model", "track", "release", "request_id", "prompt", ...}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.manifests.drift_monitor import FLUENT_BIT_NAMESPACE, REQUEST_LOG_FIELD, fluent_bit_section
from components.manifests.labels import standard_labels
from components.manifests.workload import config_map

PREFIX = "requests"  # the only prefix Fluent Bit may write
OBJECT_KEY_FORMAT = f"/{PREFIX}/%Y/%m/%d/%H/$UUID.jsonl.gz"
FLUENT_BIT_CONFIG_MAP = "llmops-request-logs-fluent-bit"
FLUENT_BIT_DIR = "/fluent-bit/etc/llmops-request-logs"
FLUENT_BIT_CONF = "request-logs.conf"
FLUENT_BIT_TAG = "llmops.requests.*"
# Fields every record carries (the serving container's request logger; REQUEST_LOG_ENV in vllm.py sets the last three).
RECORD_FIELDS = ("ts", "model", "track", "release", "request_id", "prompt", "prompt_tokens", "completion_tokens",
                 "latency_ms")


@dataclass(frozen=True)
class RequestLogSink:
    environment: str
    region: str
    bucket: str  # the region's request-log bucket (a deploy-time value)
    log_path: str  # what Fluent Bit tails: the serving pods' container logs
    tags: dict[str, str]


def request_logs_uri(bucket: str) -> str:
    """Where a region's request logs are: the prefix the PII scanner and `llmops release compare` read."""
    return f"s3://{bucket}/{PREFIX}/"


def iam_statements(*, region: str, bucket_arn: str, key_arn: str) -> list[dict[str, Any]]:
    """Write new request-log objects under the prefix, nothing else: no read, no delete, no listing, no other prefix;
    the bucket's key only through S3 in this region."""
    return [
        {"Sid": "WriteRequestLogs", "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{bucket_arn}/{PREFIX}/*"},
        {"Sid": "RequestLogsKey", "Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    ]


def fluent_bit_conf(sink: RequestLogSink) -> str:
    """Tail the serving containers' logs, keep request-log records (all of them), upload them to S3 as gzipped JSON
    lines (the record's own line: `log_key log`, no date key added). Its own tag: the drift pipeline is untouched."""
    return "\n".join([
        "# Rendered by components/manifests/request_logs.py. Mount this ConfigMap at " + FLUENT_BIT_DIR,
        f"# and add `@INCLUDE {FLUENT_BIT_DIR}/{FLUENT_BIT_CONF}` to Fluent Bit's main config; annotate Fluent Bit's",
        "# service account with the stack's requestLogs roleArn (eks.amazonaws.com/role-arn).",
        fluent_bit_section("INPUT", [
            ("Name", "tail"),
            ("Alias", "llmops_request_logs_serving"),
            ("Tag", FLUENT_BIT_TAG),
            ("Path", sink.log_path),
            ("multiline.parser", "docker, cri"),
            ("Buffer_Chunk_Size", "64k"),
            ("Buffer_Max_Size", "1M"),
            ("Skip_Long_Lines", "On"),
            ("Mem_Buf_Limit", "64MB"),
            ("Refresh_Interval", "5"),
        ]),
        fluent_bit_section("FILTER", [
            ("Name", "grep"),
            ("Alias", "llmops_request_logs_only"),
            ("Match", FLUENT_BIT_TAG),
            ("Regex", f'log "{REQUEST_LOG_FIELD}"'),
        ]),
        fluent_bit_section("OUTPUT", [
            ("Name", "s3"),
            ("Alias", "llmops_request_logs_s3"),
            ("Match", FLUENT_BIT_TAG),
            ("bucket", sink.bucket),
            ("region", sink.region),
            ("s3_key_format", OBJECT_KEY_FORMAT),
            ("use_put_object", "On"),  # PutObject only: what the role allows
            ("compression", "gzip"),
            ("log_key", "log"),  # the request-log line itself, one per line
            ("json_date_key", "false"),
            ("total_file_size", "50M"),
            ("upload_timeout", "5m"),
            ("store_dir_limit_size", "1G"),  # buffered on disk while S3 is unreachable
            ("Retry_Limit", "no_limits"),  # the durable copy: retry, never drop
        ]),
    ])


def fluent_bit_config_map(sink: RequestLogSink) -> dict[str, Any]:
    labels = standard_labels(FLUENT_BIT_CONFIG_MAP, "log-shipper", sink.tags)
    return config_map(FLUENT_BIT_CONFIG_MAP, FLUENT_BIT_NAMESPACE, labels, {FLUENT_BIT_CONF: fluent_bit_conf(sink)})
