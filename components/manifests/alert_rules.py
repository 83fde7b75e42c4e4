"""Alert and recording rules: SLO burn rates per model, and operational alerts, as Prometheus rule groups.

Burn-rate alerts follow the multi-window, multi-burn-rate pattern: an alert fires when both
the long and the short window burn faster than factor x (1 - SLO), with factor =
budget-spent x SLO-period / long-window (14.4, 6, 3, 1 for a 30-day SLO). Error ratios with
no traffic are NaN, and a comparison with NaN is false, so an idle model never pages; a
request-rate floor keeps a handful of failures at low traffic from paging either.

Every alert carries `severity`, `summary`, `description` and a `runbook_url` naming a
catalogued runbook. Annotations use labels only (never `$value`), so promtool unit tests can
assert them exactly. Plain data, no Pulumi: the same groups become a `PrometheusRule` and a
plain Prometheus rule file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.utils import floatToGoString

from components.manifests.drift_monitor import NAME as DRIFT_MONITOR
from components.manifests.drift_monitor import NAMESPACE as DRIFT_NAMESPACE
from components.manifests.labels import standard_labels
from components.manifests.route import canary_backend, stable_backend

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
_HOURS = {"5m": 5 / 60, "30m": 0.5, "1h": 1, "2h": 2, "6h": 6, "1d": 24, "3d": 72}
RUNBOOKS = ("rollback", "failover", "reindex", "pii-incident", "release-controller", "drift-review")


@dataclass(frozen=True)
class BurnTier:
    severity: str
    speed: str  # "Fast" or "Slow", part of the alert name
    for_: str
    windows: tuple[tuple[str, str, float], ...]  # (long, short, share of the budget spent in the long window)


# The SRE workbook's tiers: 2% of the budget in 1h or 5% in 6h pages; 10% in 1d or 3d opens a ticket.
BURN_TIERS = (
    BurnTier("page", "Fast", "2m", (("1h", "5m", 0.02), ("6h", "30m", 0.05))),
    BurnTier("ticket", "Slow", "15m", (("1d", "2h", 0.10), ("3d", "6h", 0.10))),
)


@dataclass(frozen=True)
class SloSpec:
    model: str
    availability_objective: float  # percent of requests that must not fail
    ttft_objective: float  # percent of requests whose first token must arrive within the threshold
    ttft_threshold_seconds: float  # a bucket bound of vllm:time_to_first_token_seconds
    window_days: int
    min_request_rate: float  # requests per second below which burn-rate alerts stay silent


@dataclass(frozen=True)
class RuleContext:
    runbook_base_url: str
    environment: str
    region: str
    serving_namespace: str = "serving"
    registry_namespace: str = "registry"
    features_namespace: str = "features"
    retrieval_namespace: str = "retrieval"
    drift_namespace: str = DRIFT_NAMESPACE


def runbook_url(context: RuleContext, runbook: str) -> str:
    if runbook not in RUNBOOKS:
        raise ValueError(f"no runbook {runbook!r}; the catalog has {', '.join(RUNBOOKS)}")
    return f"{context.runbook_base_url.rstrip('/')}/{runbook}.md"  # the rendered page, runbooks/pages/<name>.md


def burn_factor(spent: float, window_days: int, long_window: str) -> float:
    return round(spent * window_days * 24 / _HOURS[long_window], 6)


def alert(context: RuleContext, name: str, expr: str, *, for_: str | None, severity: str, runbook: str, summary: str,
          description: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An alerting rule; `for_` None fires at the first evaluation that finds the condition (it is already sustained)."""
    return {
        "alert": name, "expr": expr, **({"for": for_} if for_ is not None else {}),
        "labels": {"severity": severity, "environment": context.environment, "region": context.region, **(labels or {})},
        "annotations": {"summary": summary, "description": description, "runbook_url": runbook_url(context, runbook)},
    }


# --- SLOs ---------------------------------------------------------------------------------------------------

# The SLIs, as PromQL. The recording rules and the runbooks' verification use the same expressions.

def request_rate(model: str, namespace: str, window: str, status: str | None = None) -> str:
    services = f"{stable_backend(model)}|{canary_backend(model)}"  # users see stable and canary alike
    matchers = f'namespace="{namespace}",service=~"{services}",handler=~"/v1/.+"'
    if status:
        matchers += f',status="{status}"'
    return f"sum(rate(http_requests_total{{{matchers}}}[{window}]))"


def availability_error_ratio(model: str, namespace: str, window: str) -> str:
    # No 5xx series at all means no errors (0), not no data; no requests at all stays NaN.
    return f"({request_rate(model, namespace, window, '5xx')} or vector(0)) / {request_rate(model, namespace, window)}"


def latency_error_ratio(model: str, namespace: str, window: str, threshold_seconds: float) -> str:
    """The share of first tokens slower than the threshold (a bucket bound of vLLM's histogram)."""
    matchers = f'namespace="{namespace}",model_name="{model}"'
    le: str = floatToGoString(threshold_seconds)  # type: ignore[no-untyped-call]  # as prometheus_client writes it
    fast = f'sum(rate(vllm:time_to_first_token_seconds_bucket{{{matchers},le="{le}"}}[{window}]))'
    total = f"sum(rate(vllm:time_to_first_token_seconds_count{{{matchers}}}[{window}]))"
    return f"1 - ({fast} / {total})"


def slo_recording_rules(spec: SloSpec, context: RuleContext) -> list[dict[str, Any]]:
    rules = []
    ns = context.serving_namespace
    for window in WINDOWS:
        rules.append({"record": f"llmops:slo_requests:rate{window}", "expr": request_rate(spec.model, ns, window),
                      "labels": {"model": spec.model}})
        rules.append({"record": f"llmops:slo_errors:ratio_rate{window}",
                      "expr": availability_error_ratio(spec.model, ns, window),
                      "labels": {"model": spec.model, "slo": "availability"}})
        rules.append({"record": f"llmops:slo_errors:ratio_rate{window}",
                      "expr": latency_error_ratio(spec.model, ns, window, spec.ttft_threshold_seconds),
                      "labels": {"model": spec.model, "slo": "latency"}})
    return rules


def _burn_expr(spec: SloSpec, slo: str, objective: float, tier: BurnTier) -> str:
    budget = round(1 - objective / 100, 10)
    clauses = []
    for long, short, spent in tier.windows:
        threshold = round(burn_factor(spent, spec.window_days, long) * budget, 10)
        errors = f'{{model="{spec.model}",slo="{slo}"}}'
        clauses.append(
            f"(llmops:slo_errors:ratio_rate{long}{errors} > {threshold:g}"
            f" and llmops:slo_errors:ratio_rate{short}{errors} > {threshold:g}"
            f' and on(model) llmops:slo_requests:rate{long}{{model="{spec.model}"}} >= {spec.min_request_rate:g})')
    return "\n or ".join(clauses)


def slo_alerts(spec: SloSpec, context: RuleContext) -> list[dict[str, Any]]:
    alerts = []
    slos = (("Availability", "availability", spec.availability_objective,
             f"{spec.availability_objective:g}% of requests succeed"),
            ("Latency", "latency", spec.ttft_objective,
             f"{spec.ttft_objective:g}% of first tokens within {spec.ttft_threshold_seconds:g}s"))
    for title, slo, objective, promise in slos:
        for tier in BURN_TIERS:
            speed = "fast enough to page" if tier.severity == "page" else "steadily"
            alerts.append(alert(
                context, f"SLO{title}{tier.speed}Burn", _burn_expr(spec, slo, objective, tier),
                for_=tier.for_, severity=tier.severity, runbook="rollback", labels={"model": spec.model},
                summary=f"{{{{ $labels.model }}}} is burning its {slo} error budget {speed}",
                description=(f"The {slo} SLO of {{{{ $labels.model }}}} ({promise} over {spec.window_days} days) is "
                             f"burning budget in {context.region}. If it started with a release, roll it back."),
            ))
    return alerts


def slo_group(spec: SloSpec, context: RuleContext) -> dict[str, Any]:
    # Recording rules first: within one group they are evaluated before the alerts that read them.
    return {"name": f"llmops-slo-{spec.model}", "rules": slo_recording_rules(spec, context) + slo_alerts(spec, context)}


# --- operational -------------------------------------------------------------------------------------------

def serving_alerts(models: Sequence[str], context: RuleContext) -> list[dict[str, Any]]:
    ns = context.serving_namespace
    per_model = [alert(
        context, "VllmMetricsAbsent", f'absent(vllm:num_requests_running{{namespace="{ns}",model_name="{model}"}})',
        for_="10m", severity="page", runbook="rollback", labels={"model": model},
        summary="{{ $labels.model_name }} exports no vLLM metrics",
        description=f"No vLLM server of {{{{ $labels.model_name }}}} in {context.region} has reported for 10 minutes: "
                    "the pods are down, crash-looping or not scraped. If a release just rolled out, roll it back.")
        for model in models]
    return per_model + [
        alert(context, "VllmRequestQueueBacklog",
              f'avg by (namespace, model_name) (vllm:num_requests_waiting{{namespace="{ns}"}}) > 20',
              for_="10m", severity="ticket", runbook="failover",
              summary="{{ $labels.model_name }} has a sustained request backlog",
              description="More than 20 requests per replica have waited for 10 minutes: autoscaling cannot keep "
                          "up (no GPUs to add?). Add capacity or shift traffic to another region."),
        alert(context, "VllmKvCacheSaturated",
              f'max by (namespace, model_name, pod) (vllm:kv_cache_usage_perc{{namespace="{ns}"}}) > 0.95',
              for_="15m", severity="ticket", runbook="rollback",
              summary="{{ $labels.pod }} has had its KV cache above 95% for 15 minutes",
              description="A full KV cache precedes preemptions and a throughput cliff. A release that raised "
                          "max-model-len or lowered GPU memory utilisation is the usual cause."),
        alert(context, "VllmPreemptionsSustained",
              f'sum by (namespace, model_name) (rate(vllm:num_preemptions_total{{namespace="{ns}"}}[5m])) > 0.1',
              for_="15m", severity="ticket", runbook="rollback",
              summary="{{ $labels.model_name }} keeps preempting requests",
              description="vLLM has preempted requests for 15 minutes: GPU memory is oversubscribed and work is "
                          "recomputed. Check the latest release's serving args."),
        alert(context, "GpuPodsUnschedulable",
              f'sum by (namespace, pod) (kube_pod_status_unschedulable{{namespace="{ns}"}}) > 0',
              for_="15m", severity="ticket", runbook="failover",
              summary="{{ $labels.pod }} has waited 15 minutes for a GPU node",
              description="No GPU node can take this serving pod: the pool is at its maximum or the region has no "
                          "GPU capacity. Raise the pool maximum or serve from another region."),
    ]


def gpu_alerts(context: RuleContext) -> list[dict[str, Any]]:
    return [
        alert(context, "GpuXidErrors", "max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS) > 0",
              for_="1m", severity="page", runbook="failover",
              summary="GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reports an XID error",
              description="The driver reported an XID error: the GPU may be failing. Cordon and replace the node; "
                          "if several nodes are affected, fail over the region."),
        alert(context, "GpuMemoryExhausted",
              "max by (Hostname, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)) > 0.98",
              for_="15m", severity="ticket", runbook="rollback",
              summary="GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is out of memory",
              description="More than 98% of the GPU's memory has been in use for 15 minutes (vLLM reserves about "
                          "90% by design): something else is on the GPU, or a release raised its memory use."),
        alert(context, "GpuTemperatureHigh", "max by (Hostname, gpu) (DCGM_FI_DEV_GPU_TEMP) > 85",
              for_="10m", severity="ticket", runbook="failover",
              summary="GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is above 85 C",
              description="A hot GPU throttles and then fails. Replace the node; if the region is affected, fail over."),
    ]


def data_alerts(context: RuleContext) -> list[dict[str, Any]]:
    def down(name: str, what: str, metric: str, namespace: str, kind: str, workload: str) -> dict[str, Any]:
        return alert(context, name, f'sum({metric}{{namespace="{namespace}",{kind}="{workload}"}}) < 1',
                     for_="5m", severity="page", runbook="failover",
                     summary=f"The {what} in {context.region} has no ready replica",
                     description=f"{workload} in {namespace} has had no ready replica for 5 minutes. Serving in this "
                                 "region degrades; if it cannot be restored quickly, fail over.")
    return [
        down("ModelRegistryDown", "model registry", "kube_deployment_status_replicas_available",
             context.registry_namespace, "deployment", "mlflow"),
        down("FeatureStoreDown", "feature store", "kube_deployment_status_replicas_available",
             context.features_namespace, "deployment", "feast"),
        down("RetrievalIndexDown", "retrieval index", "kube_statefulset_status_replicas_ready",
             context.retrieval_namespace, "statefulset", "qdrant"),
    ]


def pii_alerts(context: RuleContext) -> list[dict[str, Any]]:
    return [
        alert(context, "PiiDetectedInLogs",
              "sum by (source, entity_type) (increase(llmops_pii_findings_total[15m])) > 0",
              for_="1m", severity="page", runbook="pii-incident",
              summary="Personal data ({{ $labels.entity_type }}) found in {{ $labels.source }}",
              description="The PII scanner found {{ $labels.entity_type }} values where none may be. Contain it "
                          "with the pii-incident runbook; do not copy the data anywhere."),
        alert(context, "PiiScanStale",
              "time() - max by (source) (llmops_pii_scan_last_success_timestamp_seconds) > 7200"
              " or absent(llmops_pii_scan_last_success_timestamp_seconds)",
              for_="15m", severity="ticket", runbook="pii-incident",
              summary="The PII scan of inference logs has not succeeded for two hours",
              description="Without a recent scan, personal data in logs would go unnoticed. Restore the scanner."),
    ]


def index_alerts(context: RuleContext) -> list[dict[str, Any]]:
    return [
        alert(context, "RetrievalIndexStale", "max by (index) (llmops_index_stale_fraction) > 0.05",
              for_="30m", severity="ticket", runbook="reindex",
              summary="Index {{ $labels.index }} serves stale documents",
              description="More than 5% of the documents of {{ $labels.index }} changed in the corpus since it was "
                          "built: answers use outdated context. Reindex."),
        alert(context, "RetrievalIndexBehindCorpus",
              "max by (index) (llmops_index_age_seconds) > 86400"
              " and on(index) max by (index) (llmops_index_corpus_newer_objects) > 0",
              for_="1h", severity="ticket", runbook="reindex",
              summary="Index {{ $labels.index }} is over a day behind its corpus",
              description="The corpus has objects newer than {{ $labels.index }}, which is more than a day old. Reindex."),
        alert(context, "RetrievalIndexConfigMismatch", "max by (index) (llmops_index_config_mismatch) > 0",
              for_="5m", severity="page", runbook="reindex",
              summary="Index {{ $labels.index }} was built with a different retrieval config than serving uses",
              description="The embedding model, chunker or normalisation that built {{ $labels.index }} differs from "
                          "the serving config: retrieval quality degrades silently. Reindex with the serving config."),
        alert(context, "RetrievalFreshnessUnknown", "absent(llmops_index_age_seconds)",
              for_="1h", severity="ticket", runbook="reindex",
              summary="No index freshness metrics for an hour",
              description="The freshness exporter is not reporting, so a stale index would go unnoticed. Restore it."),
    ]


def release_controller_alerts(context: RuleContext, stalled_after_seconds: int) -> list[dict[str, Any]]:
    """The controller records a decision -- hold included -- for every model with a rollout policy at each interval.
    None for `stalled_after_seconds` (stalledIntervals x the slowest policy's interval) means its loop is stuck; no
    series at all means it is not running or not scraped.

    A ticket, not a page: a stalled controller changes nothing by itself. Canaries stay at their weight (it cannot
    promote them), and the SLO burn alerts still page on the errors and latency users see from stable and canary
    alike. What is lost is the automatic judgement of the canary's share, which a person can take over by day."""
    last = f'llmops_release_last_decision_timestamp_seconds{{namespace="{context.serving_namespace}"}}'
    return [alert(
        context, "LlmopsReleaseControllerStalled",
        f"time() - max by (model) ({last}) > {stalled_after_seconds}\n or absent({last})",
        for_="2m", severity="ticket", runbook="release-controller",
        summary=f"The release controller in {context.region} has stopped deciding",
        description=(f"No canary decision for more than {stalled_after_seconds}s, or no decisions exported at all: "
                     "canaries stay at their current weight, unjudged (quality limits are not enforced on their "
                     "traffic) and nothing is promoted or rolled back automatically. Restore the controller; if "
                     "that takes long, set the canary weight to 0."),
    )]


# --- drift -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriftAlertSpec:
    """One model's drift policy, as far as its alerts need it (models[].drift)."""
    model: str
    severity: str  # the Drift alert's: page or ticket (DriftWatch is always a ticket)
    consecutive_windows: int
    window_seconds: int
    min_samples: int
    sample_percent: float  # of the model's request log the shipper forwards
    retraining_volume: int | None = None  # samples since the reference that make a retraining due


@dataclass(frozen=True)
class DriftRules:
    interval_seconds: int  # driftMonitor.ruleIntervalSeconds: the group's evaluation interval
    models: tuple[DriftAlertSpec, ...]


# Sustained watch before a ticket: a signal between its watch and drift limits for this long is worth a look.
DRIFT_WATCH_FOR = "15m"
# Long enough that a window of odd records does not open a ticket; the monitor reports each window.
DRIFT_SCHEMA_FOR = "5m"
DRIFT_MONITOR_DOWN_FOR = "5m"
DRIFT_REFERENCE_MISSING_FOR = "15m"  # a new model's first reference is built after its first traffic
DRIFT_SILENT_WINDOW = "30m"
_SILENT_SECONDS = 1800


def drift_alerts(rules: DriftRules, context: RuleContext) -> list[dict[str, Any]]:
    """The monitor's verdicts (`llmops_drift_status`: 0 stable or too few samples, 1 watch, 2 drift) and its health.

    `Drift` has no `for`: the monitor reports drift only after `consecutiveWindows` windows in a row past the limit,
    so waiting again would only add delay (the issue's budget: 18 s from the shift to the alert's condition). Every
    annotation reads labels only -- model, signal, field: numbers and names, never a prompt."""
    ns, region = context.drift_namespace, context.region
    review = ("Review it with the drift-review runbook: it collects which signals moved, redacted sample prompts and "
              "the topics that grew, and ends in one decision a person approves -- accept a new reference, request a "
              "reindex, or request retraining.")

    def drift_alert(name: str, expr: str, *, for_: str | None, summary: str, description: str,
                    severity: str = "ticket", model: str | None = None) -> dict[str, Any]:
        return alert(context, name, expr, for_=for_, severity=severity, runbook="drift-review",
                     labels={"model": model} if model else None, summary=summary, description=description)

    alerts = []
    for spec in rules.models:
        model = spec.model
        status = f'llmops_drift_status{{namespace="{ns}",model="{model}"}}'
        judged = (f"{spec.consecutive_windows} consecutive windows of at least {spec.min_samples} samples "
                  f"({spec.window_seconds}s or longer)")
        alerts += [
            drift_alert("Drift", f"max by (model, signal) ({status}) >= 2", for_=None, severity=spec.severity,
                        model=model, summary="{{ $labels.signal }} of {{ $labels.model }} has drifted from its reference",
                        description=(f"In {region}, {{{{ $labels.model }}}}'s {{{{ $labels.signal }}}} has been past "
                                     f"its drift limit for {judged}: what users send no longer looks like what this "
                                     f"release was validated on. {review}")),
            drift_alert("DriftWatch", f"max by (model, signal) ({status}) == 1", for_=DRIFT_WATCH_FOR, model=model,
                        summary="{{ $labels.signal }} of {{ $labels.model }} is moving away from its reference",
                        description=(f"In {region}, {{{{ $labels.model }}}}'s {{{{ $labels.signal }}}} has been "
                                     f"between its watch and drift limits for {DRIFT_WATCH_FOR}. Not a drift yet; "
                                     f"{review}")),
        ]
        if spec.retraining_volume is not None:
            alerts.append(drift_alert(
                "DriftRetrainingVolume",
                f'max by (model) (llmops_drift_samples_since_reference{{namespace="{ns}",model="{model}"}}) '
                f">= {spec.retraining_volume}", for_=None, model=model,
                summary="{{ $labels.model }} has reached its retraining volume since its reference",
                description=(f"In {region}, {{{{ $labels.model }}}} has served about {spec.retraining_volume} "
                             "requests since its current reference (the monitor's samples scaled by samplePercent; "
                             f"retraining.volume): a retraining is due by volume. {review}")))
        # Traffic that should have brought minSamples to the monitor within the window at samplePercent, yet none
        # came: the shipper is not forwarding, or the request log is not written.
        floor = spec.min_samples / (_SILENT_SECONDS * spec.sample_percent / 100)
        alerts.append(drift_alert(
            "DriftMonitorDown",
            f'sum by (model) (llmops:slo_requests:rate{DRIFT_SILENT_WINDOW}{{model="{model}"}}) >= {floor:g}\n'
            f" unless on(model) sum by (model) (increase(llmops_drift_samples_total"
            f'{{namespace="{ns}",model="{model}"}}[{DRIFT_SILENT_WINDOW}])) > 0',
            for_=DRIFT_MONITOR_DOWN_FOR, model=model,
            summary="The drift monitor receives no samples of {{ $labels.model }}",
            description=(f"{{{{ $labels.model }}}} served requests in {region} for {DRIFT_SILENT_WINDOW}, enough for "
                         f"{spec.min_samples} samples at {spec.sample_percent:g}%, yet the drift monitor received "
                         "none: the log shipper is not forwarding them (Fluent Bit's drift.conf not included?), or "
                         "the request log is not written. Drift of this model goes unnoticed until it is restored.")))
    up = f'up{{namespace="{ns}",job="{DRIFT_MONITOR}"}}'
    alerts += [
        drift_alert("DriftReferenceMissing",
                    f'max by (model) (llmops_drift_reference_version{{namespace="{ns}"}}) == 0',
                    for_=DRIFT_REFERENCE_MISSING_FOR,
                    summary="{{ $labels.model }} has no drift reference: its drift is not judged",
                    description=(f"In {region}, the drift monitor has no reference for {{{{ $labels.model }}}}, so "
                                 "it judges nothing of its requests (their samples are counted as dropped). Build "
                                 "one from a window of its request logs: llmops drift reference --env "
                                 f"{context.environment} --model {{{{ $labels.model }}}} --from s3://<logs>/<prefix>; "
                                 "the monitor follows it within a minute.")),
        drift_alert("DriftSchemaChanged",
                    f'max by (model, field, change) (llmops_drift_schema_changes{{namespace="{ns}"}}) > 0',
                    for_=DRIFT_SCHEMA_FOR,
                    summary="{{ $labels.model }}'s request log: field {{ $labels.field }} is missing or changed type",
                    description=(f"In {region}, the field {{{{ $labels.field }}}} of {{{{ $labels.model }}}}'s "
                                 f"request log has differed from its reference ({{{{ $labels.change }}}}) for "
                                 f"{DRIFT_SCHEMA_FOR}: the signals that read it are not judged, and a schema change "
                                 f"is a retraining trigger. {review}")),
        drift_alert("DriftMonitorDown", f"max by (namespace, job) ({up}) < 1\n or absent({up})",
                    for_=DRIFT_MONITOR_DOWN_FOR, summary=f"The drift monitor in {region} is down or not scraped",
                    description=(f"Prometheus has not scraped {DRIFT_MONITOR} in {ns} for {DRIFT_MONITOR_DOWN_FOR}: "
                                 "no drift is judged in this region, and none would alert. Serving is unaffected. "
                                 "Restore the monitor (its pod, its settings, its references' bucket).")),
    ]
    return alerts


def drift_group(rules: DriftRules, context: RuleContext) -> dict[str, Any]:
    return {"name": "llmops-drift", "interval": f"{rules.interval_seconds}s", "rules": drift_alerts(rules, context)}


def rule_groups(slos: Sequence[SloSpec], context: RuleContext, release_stalled_after_seconds: int | None = None,
                drift: DriftRules | None = None) -> list[dict[str, Any]]:
    """Every group; with a release controller (`release_stalled_after_seconds`) or a drift monitor (`drift`), theirs
    too."""
    groups = [slo_group(spec, context) for spec in slos] + [
        {"name": "llmops-serving", "rules": serving_alerts([s.model for s in slos], context)},
        {"name": "llmops-gpu", "rules": gpu_alerts(context)},
        {"name": "llmops-data", "rules": data_alerts(context) + pii_alerts(context) + index_alerts(context)},
    ]
    if release_stalled_after_seconds is not None:
        groups.append({"name": "llmops-release",
                       "rules": release_controller_alerts(context, release_stalled_after_seconds)})
    if drift is not None and drift.models:
        groups.append(drift_group(drift, context))
    return groups


def prometheus_rule(*, name: str, namespace: str, groups: list[dict[str, Any]], tags: Mapping[str, str],
                    selector_labels: Mapping[str, str]) -> dict[str, Any]:
    labels = {**standard_labels(name, "alert-rules", tags), **selector_labels}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": {"groups": groups}}
