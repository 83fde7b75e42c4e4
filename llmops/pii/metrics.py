"""What a scheduled scan tells Prometheus (through a Pushgateway), for the PiiDetectedInLogs and
PiiScanStale alerts: findings per entity type as a counter that only grows across runs, when the
last scan succeeded, and how much it read. Counts only, never a value.

A Pushgateway keeps the last push per group, so the counter is continued from what the group holds
now: one scheduled scanner per source (the group's `source` label), as a CronJob would be.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway

from llmops.pii.detectors import ENTITY_TYPES

JOB = "llmops_pii_scan"
FINDINGS = "llmops_pii_findings_total"


def _base(url: str) -> str:
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def current_findings(url: str, source: str, timeout: float = 10) -> dict[str, float]:
    """The findings counter the Pushgateway holds for this source now, by entity type."""
    with urllib.request.urlopen(f"{_base(url).rstrip('/')}/api/v1/metrics", timeout=timeout) as response:
        groups = json.load(response).get("data", [])
    for group in groups:
        if group.get("labels", {}).get("job") == JOB and group["labels"].get("source") == source:
            family = group.get(FINDINGS, {})
            return {m["labels"]["entity_type"]: float(m["value"]) for m in family.get("metrics", [])}
    return {}


def push_scan(url: str, source: str, counts: Mapping[str, int], scanned_bytes: int, timeout: float = 10) -> None:
    registry = CollectorRegistry()
    findings = Counter("llmops_pii_findings", "Personal data found by the scheduled scan, by entity type",
                       ["source", "entity_type"], registry=registry)
    previous = current_findings(url, source, timeout)
    for entity_type in ENTITY_TYPES:
        findings.labels(source, entity_type).inc(previous.get(entity_type, 0) + counts.get(entity_type, 0))
    Gauge("llmops_pii_scan_last_success_timestamp_seconds", "When the PII scan last completed", ["source"],
          registry=registry).labels(source).set(time.time())
    Gauge("llmops_pii_scan_bytes", "Bytes read by the last PII scan", ["source"],
          registry=registry).labels(source).set(scanned_bytes)
    push_to_gateway(_base(url), job=JOB, grouping_key={"source": source}, registry=registry, timeout=timeout)
