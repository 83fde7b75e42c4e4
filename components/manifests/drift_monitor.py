"""The drift monitor (`llmops drift watch`) in one region, as Kubernetes objects: its namespace's workload (one hardened
replica reading its settings from a ConfigMap), the Service the log shipper posts samples to and Prometheus scrapes,
and the Fluent Bit configuration that forwards a sample of the serving request logs to it.

Why one replica, `Recreate` and no second monitor: windows live in memory, so one monitor must see every sample of
its region -- two would each judge half the traffic. Why the shipper's config is only rendered, not deployed: the
cluster's Fluent Bit is the platform team's (README: Drift monitoring); we give it a file to include.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from components.manifests.labels import standard_labels
from components.manifests.workload import (
    cluster_ip_service,
    config_map,
    container_security_context,
    ingress_only_from,
    pod_disruption_budget,
    pod_security_context,
    resources,
    scratch_volume,
    service_account,
)
from components.release import fingerprint

NAME = "drift-monitor"
COMPONENT = "drift-monitor"
NAMESPACE = "drift"
PORT = 8080  # POST /v1/samples, GET /metrics, /healthz, /readyz
CONFIG_DIR = "/etc/llmops"
SETTINGS_FILE = "drift-monitor.json"
SETTINGS_CHECKSUM = "llmops.io/settings-checksum"
REFERENCES_PREFIX = "drift/references"  # in the region's model registry bucket
API_KEY_ENV = "LLMOPS_DRIFT_EMBEDDINGS_API_KEY"
API_KEY_SECRET_KEY = "api-key"

# The log shipper: the fluent-bit Helm chart, installed by the platform team in this namespace, with this ConfigMap
# mounted (extraVolumes/extraVolumeMounts) at FLUENT_BIT_DIR and `@INCLUDE <FLUENT_BIT_DIR>/drift.conf` in its
# config. A ConfigMap can be mounted only in its own namespace, hence it lives there and not with the monitor.
FLUENT_BIT_NAMESPACE = "logging"
FLUENT_BIT_CONFIG_MAP = "llmops-drift-fluent-bit"
FLUENT_BIT_DIR = "/fluent-bit/etc/llmops-drift"
FLUENT_BIT_CONF = "drift.conf"
FLUENT_BIT_LUA = "drift-sample.lua"
FLUENT_BIT_TAG = "llmops.drift.*"
LUA_FUNCTION = "llmops_drift_sample"
# Only the request log carries it: every other line of a serving container (vLLM's own logs) is dropped.
REQUEST_LOG_FIELD = "request_id"


@dataclass(frozen=True)
class WatchedModel:
    name: str
    drift: Mapping[str, Any]  # models[].drift as the stack file spells it (camelCase, JSON values)
    embedding_model: str | None  # the embeddingModel of the index drift.embedding names
    sample_percent: float  # of its request log the shipper forwards


@dataclass(frozen=True)
class Embeddings:
    url: str
    dimension: int
    api_key_secret: str | None  # a Kubernetes Secret in the monitor's namespace, key `api-key`


@dataclass(frozen=True)
class DriftMonitorSpec:
    environment: str
    region: str
    image: str
    role_arn: str  # the IRSA role (a deploy-time value)
    references: str  # s3://<bucket>/drift/references
    models: tuple[WatchedModel, ...]
    embeddings: Embeddings | None
    scrape_interval_seconds: int
    log_path: str  # what the shipper tails: the serving pods' container logs
    client_namespaces: tuple[str, ...]  # who may reach the monitor: the shipper's and Prometheus's namespaces
    tags: Mapping[str, str]
    namespace: str = NAMESPACE


def references_uri(bucket: str) -> str:
    return f"s3://{bucket}/{REFERENCES_PREFIX}"


def service_host(namespace: str = NAMESPACE) -> str:
    return f"{NAME}.{namespace}.svc.cluster.local"


def namespace_of_service(url: str) -> str | None:
    """The namespace of an in-cluster Service URL (`http://<service>.<namespace>.svc[...]:<port>`), else None."""
    parts = (urlsplit(url).hostname or "").split(".")
    return parts[1] if len(parts) >= 3 and parts[2] == "svc" else None


def settings_document(spec: DriftMonitorSpec) -> dict[str, Any]:
    """What `llmops drift watch --config` reads (llmops/drift/settings.py: MonitorSettings)."""
    document: dict[str, Any] = {
        "environment": spec.environment,
        "region": spec.region,
        "references": spec.references,
        "models": {model.name: {"drift": dict(model.drift), "embeddingModel": model.embedding_model}
                   for model in spec.models},
    }
    if spec.embeddings is not None:
        document["embeddings"] = {"url": spec.embeddings.url, "dimension": spec.embeddings.dimension,
                                  "apiKeyEnv": API_KEY_ENV if spec.embeddings.api_key_secret else None}
    return document


def settings_data(spec: DriftMonitorSpec) -> dict[str, str]:
    return {SETTINGS_FILE: json.dumps(settings_document(spec), indent=2, sort_keys=True)}


def _labels(spec: DriftMonitorSpec) -> dict[str, str]:
    return standard_labels(NAME, COMPONENT, spec.tags)


def _selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": COMPONENT}


def _container(spec: DriftMonitorSpec) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"}, {"name": "AWS_REGION", "value": spec.region},
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]
    if spec.embeddings is not None and spec.embeddings.api_key_secret:
        env.append({"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {
            "name": spec.embeddings.api_key_secret, "key": API_KEY_SECRET_KEY}}})
    probe = {"timeoutSeconds": 5, "periodSeconds": 10}
    return {
        "name": "monitor",
        "image": spec.image,
        "command": ["llmops", "drift", "watch", "--config", f"{CONFIG_DIR}/{SETTINGS_FILE}",
                    "--listen", f"0.0.0.0:{PORT}"],
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # Windows hold numbers and vectors only, bounded per model; the headroom is for request bodies in flight.
        "resources": resources("1", "1Gi"),
        # Ready once the references are loaded; alive as long as it answers.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, **probe, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, **probe, "failureThreshold": 6,
                          "initialDelaySeconds": 10},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "settings", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment(spec: DriftMonitorSpec) -> dict[str, Any]:
    labels = {**_labels(spec), **_selector()}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "Recreate"},  # never two monitors splitting the samples, not even during an upgrade
            "selector": {"matchLabels": _selector()},
            "template": {
                # New settings restart the monitor: it reads them once, at start.
                "metadata": {"labels": labels, "annotations": {SETTINGS_CHECKSUM: fingerprint(settings_data(spec))}},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [_container(spec)],
                    "volumes": [{"name": "settings", "configMap": {"name": f"{NAME}-settings"}},
                                scratch_volume("tmp", "256Mi")],
                },
            },
        },
    }


def service_monitor(spec: DriftMonitorSpec) -> dict[str, Any]:
    interval = spec.scrape_interval_seconds
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": NAME, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {"selector": {"matchLabels": _selector()}, "namespaceSelector": {"matchNames": [spec.namespace]},
                 # The drift alerts' delay is this interval plus the rules' (the budget is 18 s).
                 "endpoints": [{"port": "http", "path": "/metrics", "interval": f"{interval}s",
                                "scrapeTimeout": f"{min(interval, 10)}s"}]},
    }


def drift_monitor_objects(spec: DriftMonitorSpec) -> list[dict[str, Any]]:
    """Every object of one region's monitor, in its namespace (which the caller creates). It needs a model to watch."""
    if not spec.models:
        raise ValueError("a drift monitor without a model to watch: give a model drift monitoring, or deploy none")
    labels = _labels(spec)
    selector = {**_selector()}
    return [
        service_account(NAME, spec.namespace, labels, role_arn=spec.role_arn),
        config_map(f"{NAME}-settings", spec.namespace, labels, settings_data(spec)),
        deployment(spec),
        cluster_ip_service(NAME, spec.namespace, labels, selector, {"http": PORT}),
        service_monitor(spec),
        pod_disruption_budget(NAME, spec.namespace, labels, selector),
        # Samples from the shipper, scrapes from Prometheus; nothing else reaches it.
        ingress_only_from(NAME, spec.namespace, labels, selector, [PORT], list(spec.client_namespaces)),
        fluent_bit_config_map(spec),
    ]


# --- the log shipper ---------------------------------------------------------------------------------------

def sampling_lua(models: tuple[WatchedModel, ...]) -> str:
    """Fluent Bit has no sampling filter: this Lua filter keeps each watched model's samplePercent of its request-log
    records (at random, independently per record) and drops the records of any other model. Per model, so a busy
    model sampled at 1% and a quiet one at 100% share one shipper. Lua 5.1 (LuaJIT, as Fluent Bit embeds it)."""
    percents = "\n".join(f"  [{json.dumps(model.name)}] = {float(model.sample_percent)!r},"
                         for model in sorted(models, key=lambda m: m.name))
    return f"""\
-- Rendered by components/manifests/drift_monitor.py: the drift monitor's sample of the serving request logs.
-- Percent of each watched model's request-log records forwarded; other models' records are dropped.
local PERCENT = {{
{percents}
}}

math.randomseed(os.time())

-- The model of a record: a top-level field, or the one in the container line's JSON text (`log`). Escaped quotes
-- (a prompt that mentions "model") do not match the pattern.
local function model_of(record)
  local model = record["model"]
  if type(model) == "string" then
    return model
  end
  local line = record["log"]
  if type(line) ~= "string" then
    return nil
  end
  return string.match(line, '"model"%s*:%s*"([^"\\\\]*)"')
end

-- Fluent Bit's contract: return -1 to drop the record, 0 to keep it unchanged.
function {LUA_FUNCTION}(tag, timestamp, record)
  local percent = PERCENT[model_of(record) or ""]
  if percent == nil then
    return -1, timestamp, record
  end
  if percent < 100 and math.random() * 100 >= percent then
    return -1, timestamp, record
  end
  return 0, timestamp, record
end
"""


def fluent_bit_section(name: str, entries: list[tuple[str, str]]) -> str:
    """One classic-format section, values aligned."""
    width = max(len(key) for key, _ in entries)
    return f"[{name}]\n" + "".join(f"    {key.ljust(width)} {value}\n" for key, value in entries)


def fluent_bit_conf(spec: DriftMonitorSpec) -> str:
    """The classic-format sections: tail the serving containers' logs, keep request-log records, sample them, post
    them to the monitor as JSON lines. Its own tag, so the cluster's other pipelines are untouched."""
    tag_match = FLUENT_BIT_TAG
    return "\n".join([
        "# Rendered by components/manifests/drift_monitor.py. Mount this ConfigMap at " + FLUENT_BIT_DIR,
        f"# and add `@INCLUDE {FLUENT_BIT_DIR}/{FLUENT_BIT_CONF}` to Fluent Bit's main config (README: Drift monitoring).",
        fluent_bit_section("INPUT", [
            ("Name", "tail"),
            ("Alias", "llmops_drift_serving_logs"),
            ("Tag", FLUENT_BIT_TAG),
            ("Path", spec.log_path),
            ("multiline.parser", "docker, cri"),  # the container runtime's framing; long lines rejoined
            ("Buffer_Chunk_Size", "64k"),
            ("Buffer_Max_Size", "1M"),  # a long prompt is one long line; longer ones are skipped, not split
            ("Skip_Long_Lines", "On"),
            ("Mem_Buf_Limit", "32MB"),
            ("Refresh_Interval", "5"),
        ]),
        fluent_bit_section("FILTER", [
            ("Name", "grep"),
            ("Alias", "llmops_drift_request_logs"),
            ("Match", tag_match),
            ("Regex", f'log "{REQUEST_LOG_FIELD}"'),
        ]),
        fluent_bit_section("FILTER", [
            ("Name", "lua"),
            ("Alias", "llmops_drift_sample"),
            ("Match", tag_match),
            ("script", f"{FLUENT_BIT_DIR}/{FLUENT_BIT_LUA}"),
            ("call", LUA_FUNCTION),
        ]),
        fluent_bit_section("OUTPUT", [
            ("Name", "http"),
            ("Alias", "llmops_drift_monitor"),
            ("Match", tag_match),
            ("Host", service_host(spec.namespace)),
            ("Port", str(PORT)),
            ("URI", "/v1/samples"),
            ("Format", "json_lines"),
            ("json_date_key", "false"),
            ("Retry_Limit", "2"),  # a sample lost is a sample; never a backlog that delays the next window
        ]),
    ])


def fluent_bit_config_map(spec: DriftMonitorSpec) -> dict[str, Any]:
    labels = standard_labels(FLUENT_BIT_CONFIG_MAP, "log-shipper", spec.tags)
    return config_map(FLUENT_BIT_CONFIG_MAP, FLUENT_BIT_NAMESPACE, labels,
                      {FLUENT_BIT_CONF: fluent_bit_conf(spec), FLUENT_BIT_LUA: sampling_lua(spec.models)})
