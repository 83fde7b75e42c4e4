"""What a scheduled scan tells Prometheus (through a Pushgateway), for the PiiDetectedInLogs and
PiiScanStale alerts: findings per entity type as a counter that only grows across runs, when the
last scan succeeded, and how much it read. Counts only, never a value.

A Pushgateway keeps the last push per group, so the counter is continued from what the group holds
now: one scheduled scanner per source (the group's `source` label), as a CronJob would be.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, pushadd_to_gateway

from llmops.pii.detectors import ENTITY_TYPES

JOB = "llmops_pii_scan"
FINDINGS = "llmops_pii_findings_total"


class PushFailed(RuntimeError):
    """The Pushgateway could not be reached or refused the push: the URL (password masked) and why."""


def gateway_url(url: str) -> str:
    """The Pushgateway's base URL (http:// when no scheme is given); ValueError if it cannot be one."""
    base = url if "://" in url else f"http://{url}"
    try:
        parts = urllib.parse.urlsplit(base)
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError as error:
        raise ValueError(f"not a URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected http(s)://host[:port]")
    return base


def shown_url(url: str) -> str:
    """The URL as messages name it: a password in it masked."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def current_findings(url: str, source: str, timeout: float = 10) -> dict[str, float]:
    """The findings counter the Pushgateway holds for this source now, by entity type."""
    with urllib.request.urlopen(f"{gateway_url(url).rstrip('/')}/api/v1/metrics", timeout=timeout) as response:
        groups = json.load(response).get("data", [])
    for group in groups:
        if group.get("labels", {}).get("job") == JOB and group["labels"].get("source") == source:
            family = group.get(FINDINGS, {})
            return {m["labels"]["entity_type"]: float(m["value"]) for m in family.get("metrics", [])}
    return {}


def push_scan(url: str, source: str, counts: Mapping[str, int], scanned_bytes: int, timeout: float = 10,
              complete: bool = True) -> None:
    """Push one scan's results. An incomplete scan (inputs it could not read) pushes its findings -- they
    are real -- but not a last success: the group's previous one is kept (a POST, not a PUT), so
    PiiScanStale fires if scans keep failing. PushFailed if the Pushgateway cannot take it."""
    try:
        registry = CollectorRegistry()
        findings = Counter("llmops_pii_findings", "Personal data found by the scheduled scan, by entity type",
                           ["source", "entity_type"], registry=registry)
        previous = current_findings(url, source, timeout)
        for entity_type in ENTITY_TYPES:
            findings.labels(source, entity_type).inc(previous.get(entity_type, 0) + counts.get(entity_type, 0))
        if complete:
            Gauge("llmops_pii_scan_last_success_timestamp_seconds", "When the PII scan last completed", ["source"],
                  registry=registry).labels(source).set(time.time())
        Gauge("llmops_pii_scan_bytes", "Bytes read by the last PII scan", ["source"],
              registry=registry).labels(source).set(scanned_bytes)
        push = push_to_gateway if complete else pushadd_to_gateway
        push(gateway_url(url), job=JOB, grouping_key={"source": source}, registry=registry, timeout=timeout)
    except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors; bad JSON a ValueError
        raise PushFailed(f"{shown_url(gateway_url(url))}: {_reason(error, timeout)}") from None


def _reason(error: Exception, timeout: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, Exception) else OSError(str(error.reason))
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, json.JSONDecodeError):
        return "its /api/v1/metrics answer is not JSON: is this a Pushgateway?"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)
