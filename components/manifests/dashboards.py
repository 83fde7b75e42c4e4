"""Grafana dashboards for on-call, built with Grafana's own SDK (grafana-foundation-sdk), from the same SLIs and the
same metric catalog as the alert rules: a service overview per model, the vLLM engine, the GPUs (DCGM exporter) and
operations (runbook runs, release-controller decisions, drift, PII scans, index freshness).

Each dashboard becomes a ConfigMap labelled for Grafana's dashboard sidecar (kube-prometheus-stack: label
`grafana_dashboard: "1"`, folder from the `grafana_folder` annotation) and, with `llmops preview --render`, a plain
JSON file Grafana imports. Queries use fixed windows (no `$__rate_interval`) so that every one of them is plain
PromQL: `dashboard_problems` parses each with the parser the rule lint uses and refuses a metric the catalog
(metrics.yaml) does not list, naming the dashboard and the panel. Plain Python, no Pulumi.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    Threshold,
    ThresholdsMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from components.manifests.alert_rules import WINDOWS, RuleContext, SloSpec, request_rate, runbook_url
from components.manifests.labels import standard_labels
from components.manifests.route import canary_backend, stable_backend

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["llmops"]
# What Grafana's sidecar looks for (kube-prometheus-stack's defaults: sidecar.dashboards.label/labelValue and
# folderAnnotation).
DEFAULT_SIDECAR_LABEL, DEFAULT_SIDECAR_LABEL_VALUE = "grafana_dashboard", "1"
FOLDER_ANNOTATION, DEFAULT_FOLDER = "grafana_folder", "LLMOps"
REGION_ANNOTATION = "llmops.io/region"  # where `llmops preview --render` files the dashboard's JSON
RATE_WINDOW = "5m"
# Runbooks and release changes: a series that appeared within this window marks the moment on every graph.
ANNOTATION_WINDOW = "1m"


@dataclass(frozen=True)
class DashboardContext:
    rules: RuleContext  # runbook base URL, environment, region, namespaces: the alerts' own
    models: tuple[SloSpec, ...]


@dataclass(frozen=True)
class Dashboard:
    name: str  # file and ConfigMap name part: service-<model>, vllm, gpu, operations
    model: dict[str, Any]  # the dashboard JSON, as Grafana reads it

    @property
    def title(self) -> str:
        return str(self.model["title"])


# --- building blocks ---------------------------------------------------------------------------------------

def _query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query.range()


_P = TypeVar("_P", timeseries.Panel, stat.Panel, table.Panel)


def _targets(panel: _P, queries: Sequence[tuple[str, str]], instant: bool = False) -> _P:
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index), instant))
    return panel


def _series(title: str, unit: str, queries: Sequence[tuple[str, str]], *, description: str = "", width: int = 12,
            maximum: float | None = None) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(8)
    if description:
        panel = panel.description(description)
    if maximum is not None:
        panel = panel.min(0).max(maximum)
    return _targets(panel, queries)


def _stat(title: str, unit: str, queries: Sequence[tuple[str, str]], *, description: str = "",
          width: int = 6, steps: Sequence[tuple[float | None, str]] = ()) -> stat.Panel:
    """A stat panel; `steps` its thresholds, (from value, colour) with None for the base, the tile coloured by them.
    Without steps the value is drawn in the text colour: Grafana's default thresholds (red from 80) would paint a
    request rate of 100 req/s as an alarm."""
    panel = stat.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(5)
    if description:
        panel = panel.description(description)
    mode = BigValueColorMode.BACKGROUND if steps else BigValueColorMode.VALUE
    panel = panel.thresholds(db.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=color) for value, color in (steps or [(None, "text")])])).color_mode(mode)
    return _targets(panel, queries, instant=True)


def _table(title: str, queries: Sequence[tuple[str, str]], columns: Mapping[str, str | None], *,
           description: str = "", width: int = 12, unit: str = "") -> table.Panel:
    """An instant query as a table: one row per series, its labels as columns named for people (`columns`: label or
    `Value` -> header, None hides it; the timestamp is always hidden), in that order."""
    panel = table.Panel().title(title).datasource(DATASOURCE).span(width).height(6)
    if description:
        panel = panel.description(description)
    if unit:
        panel = panel.unit(unit)
    shown = [name for name, header in columns.items() if header is not None]
    panel = panel.with_transformation(DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True, **{name: True for name, header in columns.items() if header is None}},
        "indexByName": {name: index for index, name in enumerate(shown)},
        "renameByName": {name: header for name, header in columns.items() if header is not None}}))
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index), True).format(PromQueryFormat.TABLE))
    return panel


def _annotation(name: str, expr: str, color: str) -> db.AnnotationQuery:
    return db.AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).icon_color(color).expr(expr)


def _runbook_links(context: RuleContext, runbooks: Iterable[str]) -> list[db.DashboardLink]:
    return [db.DashboardLink(f"Runbook: {name}").type(DashboardLinkType.LINK).url(runbook_url(context, name)).target_blank(True)
            .tooltip(f"The {name} runbook, as the alerts link it") for name in runbooks]


def _dashboard(uid: str, title: str, description: str, context: RuleContext) -> db.Dashboard:
    datasource = (db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    return (db.Dashboard(title).uid(uid).description(description).tags([*TAGS, context.environment, context.region])
            .time("now-6h", "now").refresh("30s").timezone("browser").with_variable(datasource)
            .link(db.DashboardLink("LLMOps dashboards").type(DashboardLinkType.DASHBOARDS).tags(TAGS).as_dropdown(True)))


def _uid(context: RuleContext, name: str) -> str:
    return f"llmops-{context.environment}-{context.region}-{name}"[:40]  # Grafana caps uids at 40 characters


def annotation_queries(context: RuleContext) -> list[db.AnnotationQuery]:
    """Runbook runs (each run's pushed series appears once, grouped by run id) and release changes (a new release id
    on a Deployment; a release-controller action): marked on every graph, so a rollback shows where it happened."""
    env, ns, w = context.environment, context.serving_namespace, ANNOTATION_WINDOW
    runs = f'llmops_runbook_runs_total{{environment="{env}"}}'
    releases = f'kube_deployment_labels{{namespace="{ns}"}}'
    decisions = f'llmops_release_decisions_total{{namespace="{ns}",action!~"hold|idle"}}'
    return [
        _annotation("Runbook runs", f"count by (runbook, outcome) ({runs} unless {runs} offset {w})", "orange"),
        _annotation("Releases", f"count by (deployment, label_llmops_io_release) ({releases} unless {releases} "
                                f"offset {w})", "blue"),
        _annotation("Release-controller actions",  # an action's first decision (a new series) or a later one
                    f"count by (model, action) ({decisions} unless {decisions} offset {w})"
                    f" or sum by (model, action) (changes({decisions}[{w}])) > 0", "purple"),
    ]


def _with_annotations(board: db.Dashboard, context: RuleContext) -> db.Dashboard:
    for annotation in annotation_queries(context):
        board = board.annotation(annotation)
    return board


# --- dashboards ---------------------------------------------------------------------------------------------

def service_overview(spec: SloSpec, context: RuleContext) -> db.Dashboard:
    model, ns, w = spec.model, context.serving_namespace, RATE_WINDOW
    tracks = f"{stable_backend(model)}|{canary_backend(model)}"
    http = f'http_requests_total{{namespace="{ns}",service=~"{tracks}",handler=~"/v1/.+"'
    by_track = f"sum by (service) (rate({http}}}[{w}]))"
    errors_by_track = f'sum by (service) (rate({http},status="5xx"}}[{w}]))'
    ttft = f'vllm:time_to_first_token_seconds_bucket{{namespace="{ns}",model_name="{model}"}}'
    availability = f'{{model="{model}",slo="availability"}}'
    latency = f'{{model="{model}",slo="latency"}}'
    budgets = {"availability": round(1 - spec.availability_objective / 100, 10),
               "latency": round(1 - spec.ttft_objective / 100, 10)}
    board = _dashboard(_uid(context, f"service-{model}"), f"{model}: service overview ({context.region})",
                       f"Requests, errors and first-token latency of {model} against its SLOs "
                       f"({spec.availability_objective:g}% available, {spec.ttft_objective:g}% of first tokens within "
                       f"{spec.ttft_threshold_seconds:g}s, over {spec.window_days} days), stable and canary side by "
                       "side.", context)
    board = board.with_row(db.Row("Now"))
    board = board.with_panel(_stat("Request rate", "reqps", [(request_rate(model, ns, w), "requests/s")],
                                   description="Stable and canary together, as users see them."))
    board = board.with_panel(_stat("Error ratio (5m)", "percentunit",
                                   [(f"llmops:slo_errors:ratio_rate5m{availability}", "errors")],
                                   steps=[(None, "green"), (budgets["availability"], "red")],
                                   description=f"Red above the SLO's error budget ({budgets['availability']:g})."))
    for slo in ("availability", "latency"):
        selector = availability if slo == "availability" else latency
        board = board.with_panel(_stat(
            f"Error budget remaining ({slo}, {spec.window_days}d)", "percentunit",
            [(f"1 - avg_over_time(llmops:slo_errors:ratio_rate5m{selector}[{spec.window_days}d]) / {budgets[slo]:g}",
              "remaining")],
            width=6, steps=[(None, "red"), (0, "orange"), (0.25, "green")],
            description=f"1 - the {slo} error ratio over the SLO window / the budget ({budgets[slo]:g}). Red: spent; "
                        "orange: less than a quarter left."))
    board = board.with_panel(_table(
        "Current release", [(f'max by (deployment, label_llmops_io_track, label_llmops_io_release) '
                             f'(kube_deployment_labels{{namespace="{ns}",deployment=~"{tracks}"}})', "")],
        {"deployment": "Deployment", "label_llmops_io_track": "Track", "label_llmops_io_release": "Release id",
         "Value": None}, width=24, description="The release id each track's Deployment carries (label llmops.io/release; "
                              "kube-state-metrics with --metric-labels-allowlist=deployments=[llmops.io/release,"
                              "llmops.io/track])."))
    board = board.with_row(db.Row("Stable vs canary"))
    board = board.with_panel(_series("Request rate by track", "reqps", [(by_track, "{{service}}")]))
    board = board.with_panel(_series(
        "Error ratio by track vs SLO", "percentunit",
        [(f"({errors_by_track} or {by_track} * 0) / {by_track}", "{{service}}"),
         (f"vector({budgets['availability']:g})", "error budget (SLO)")]))
    board = board.with_panel(_series(
        "Time to first token p95 by track vs SLO threshold", "s",
        [(f"histogram_quantile(0.95, sum by (le, service) (rate({ttft}[{w}])))", "p95 {{service}}"),
         (f"vector({spec.ttft_threshold_seconds:g})", "SLO threshold")]))
    board = board.with_panel(_series(
        "First tokens within the threshold vs objective", "percentunit",
        [(f"1 - llmops:slo_errors:ratio_rate5m{latency}", "within threshold"),
         (f"vector({spec.ttft_objective / 100:g})", "objective")], maximum=1))
    board = board.with_row(db.Row("Error budget burn"))
    for slo, selector in (("availability", availability), ("latency", latency)):
        board = board.with_panel(_series(
            f"Burn rate per window ({slo})", "x",
            [(f"llmops:slo_errors:ratio_rate{window}{selector} / {budgets[slo]:g}", window) for window in WINDOWS],
            description="1 spends the budget exactly over the SLO window; the page tiers fire at 14.4 (1h and 5m) "
                        "and 6 (6h and 30m), the tickets at 3 (1d and 2h) and 1 (3d and 6h)."))
    board = _with_annotations(board, context)
    for link in _runbook_links(context, ["rollback", "failover"]):
        board = board.link(link)
    return board


def vllm_engine(context: RuleContext) -> db.Dashboard:
    ns, w = context.serving_namespace, RATE_WINDOW
    sel = f'{{namespace="{ns}"}}'
    board = _dashboard(_uid(context, "vllm"), f"vLLM engine ({context.region})",
                       "The vLLM servers' own metrics (v1 engine names): queue, KV cache, preemptions, per-token "
                       "latency, tokens per second.", context)
    board = board.with_panel(_series("Requests running", "short",
                                     [(f"sum by (model_name) (vllm:num_requests_running{sel})", "{{model_name}}")]))
    board = board.with_panel(_series("Requests waiting", "short",
                                     [(f"sum by (model_name) (vllm:num_requests_waiting{sel})", "{{model_name}}")],
                                     description="The autoscaler scales on this (> 5 per replica)."))
    board = board.with_panel(_series("KV cache usage", "percentunit",
                                     [(f"max by (model_name, pod) (vllm:kv_cache_usage_perc{sel})",
                                       "{{model_name}} {{pod}}")], maximum=1))
    board = board.with_panel(_series("Preemptions", "ops",
                                     [(f"sum by (model_name) (rate(vllm:num_preemptions_total{sel}[{w}]))",
                                       "{{model_name}}")]))
    board = board.with_panel(_series(
        "Time per output token p50 / p95", "s",
        [(f"histogram_quantile({q}, sum by (le, model_name) (rate(vllm:inter_token_latency_seconds_bucket{sel}[{w}])))",
          f"p{int(q * 100)} {{{{model_name}}}}") for q in (0.5, 0.95)]))
    board = board.with_panel(_series(
        "Tokens per second in / out", "short",
        [(f"sum by (model_name) (rate(vllm:prompt_tokens_total{sel}[{w}]))", "in {{model_name}}"),
         (f"sum by (model_name) (rate(vllm:generation_tokens_total{sel}[{w}]))", "out {{model_name}}")]))
    return _with_annotations(board, context).link(_runbook_links(context, ["rollback"])[0])


# DCGM's `Hostname` is the node; the pool comes from the node's llmops.io/pool label (kube-state-metrics with
# --metric-labels-allowlist=nodes=[llmops.io/pool]).
_POOL = ('* on (Hostname) group_left (label_llmops_io_pool) '
         'max by (Hostname, label_llmops_io_pool) (label_replace(kube_node_labels, "Hostname", "$1", "node", "(.*)"))')


def gpu(context: RuleContext) -> db.Dashboard:
    def per_gpu(expr: str) -> str:
        return f"max by (Hostname, gpu) ({expr}) {_POOL}"

    legend = "{{label_llmops_io_pool}} {{Hostname}} gpu {{gpu}}"
    board = _dashboard(_uid(context, "gpu"), f"GPUs ({context.region})",
                       "NVIDIA DCGM exporter, per GPU, node and pool.", context)
    board = board.with_panel(_series("GPU utilisation", "percent", [(per_gpu("DCGM_FI_DEV_GPU_UTIL"), legend)]))
    board = board.with_panel(_series("GPU memory used", "percentunit",
                                     [(per_gpu("DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)"),
                                       legend)], maximum=1,
                                     description="vLLM reserves about 90% by design; the alert is at 98%."))
    board = board.with_panel(_series("GPU temperature", "celsius", [(per_gpu("DCGM_FI_DEV_GPU_TEMP"), legend)]))
    board = board.with_panel(_series("XID errors (last error code)", "short",
                                     [(per_gpu("DCGM_FI_DEV_XID_ERRORS"), legend)],
                                     description="Non-zero: the driver reported an XID error; GpuXidErrors pages."))
    board = board.with_panel(_table("GPUs per pool", [(
        'count by (label_llmops_io_pool) (max by (Hostname, gpu) (DCGM_FI_DEV_GPU_TEMP) ' + _POOL + ')', "")],
        {"label_llmops_io_pool": "Pool", "Value": "GPUs"}))
    return _with_annotations(board, context).link(_runbook_links(context, ["failover"])[0])


def operations(context: RuleContext) -> db.Dashboard:
    env, ns = context.environment, context.serving_namespace
    runs = f'llmops_runbook_runs_total{{environment="{env}"}}'
    board = _dashboard(_uid(context, "operations"), f"Operations ({context.region})",
                       "Runbook runs and outcomes, release-controller decisions, drift, PII scans and index freshness.",
                       context)
    board = board.with_row(db.Row("Runbooks"))
    board = board.with_panel(_table("Runbook runs by outcome", [(f"sum by (runbook, outcome) ({runs})", "")],
                                    {"runbook": "Runbook", "outcome": "Outcome", "Value": "Runs"},
                                    description="Every run the engine pushed to the Pushgateway (one series per run)."))
    board = board.with_panel(_table(
        "Since each runbook last succeeded", [(f"time() - max by (runbook) "
                                               f'(llmops_runbook_last_success_timestamp_seconds{{environment="{env}"}})',
                                               "")],
        {"runbook": "Runbook", "Value": "Since its last success"}, unit="s"))
    board = board.with_row(db.Row("Releases and drift"))
    board = board.with_panel(_series(
        "Release-controller decisions (per hour)", "short",
        [(f'sum by (model, action) (increase(llmops_release_decisions_total{{namespace="{ns}"}}[1h]))',
          "{{model}} {{action}}")]))
    board = board.with_panel(_stat(
        "Since the last release decision", "s",
        [(f'time() - max by (model) (llmops_release_last_decision_timestamp_seconds{{namespace="{ns}"}})',
          "{{model}}")]))
    board = board.with_panel(_stat(
        "Drift status (0 stable, 1 watch, 2 drift)", "short",
        [(f'max by (model) (llmops_drift_status{{namespace="{context.drift_namespace}"}})', "{{model}}")]))
    board = board.with_row(db.Row("Data"))
    board = board.with_panel(_stat("Since the last PII scan", "s",
                                   [("time() - max by (source) (llmops_pii_scan_last_success_timestamp_seconds)",
                                     "{{source}}")], description="PiiScanStale opens a ticket after two hours."))
    board = board.with_panel(_table("PII findings (24h)", [
        ("sum by (source, entity_type) (increase(llmops_pii_findings_total[1d]))", "")],
        {"source": "Source", "entity_type": "Entity type", "Value": "Findings"}))
    board = board.with_panel(_stat("Index age", "s", [("max by (index) (llmops_index_age_seconds)", "{{index}}")]))
    board = board.with_panel(_stat("Index stale fraction", "percentunit",
                                   [("max by (index) (llmops_index_stale_fraction)", "{{index}}")]))
    board = _with_annotations(board, context)
    for link in _runbook_links(context, ["rollback", "release-controller", "drift-review", "pii-incident", "reindex"]):
        board = board.link(link)
    return board


def dashboards(context: DashboardContext) -> list[Dashboard]:
    """Every dashboard of a region, as Grafana JSON."""
    built = [(f"service-{spec.model}", service_overview(spec, context.rules)) for spec in context.models]
    built += [("vllm", vllm_engine(context.rules)), ("gpu", gpu(context.rules)), ("operations", operations(context.rules))]
    return [Dashboard(name, json.loads(json.dumps(board.build(), cls=JSONEncoder))) for name, board in built]


def dashboard_json(dashboard: Dashboard) -> str:
    return json.dumps(dashboard.model, indent=2, sort_keys=True) + "\n"


def config_map(dashboard: Dashboard, *, region: str, namespace: str, folder: str, sidecar_label: str,
               sidecar_label_value: str, tags: Mapping[str, str]) -> dict[str, Any]:
    """The dashboard as a ConfigMap Grafana's sidecar loads (kube-prometheus-stack convention)."""
    name = f"llmops-dashboard-{dashboard.name}"
    labels = {**standard_labels(name, "dashboards", tags), sidecar_label: sidecar_label_value}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels,
                         "annotations": {FOLDER_ANNOTATION: folder, REGION_ANNOTATION: region}},
            "data": {f"{dashboard.name}.json": dashboard_json(dashboard)}}


def dashboards_in(obj: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(region, name, dashboard JSON) of each dashboard a rendered ConfigMap of ours holds; none for other objects."""
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if obj.get("kind") != "ConfigMap" or REGION_ANNOTATION not in annotations \
            or not str(metadata.get("name", "")).startswith("llmops-dashboard-"):
        return []
    return [(str(annotations[REGION_ANNOTATION]), key.removesuffix(".json"), json.loads(text))
            for key, text in sorted((obj.get("data") or {}).items()) if key.endswith(".json")]


# --- checks -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # its title
    panel: str  # the panel's title, or "annotation <name>"
    expr: str


def panel_queries(model: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """Every PromQL expression of a dashboard's JSON: its panels' targets and its annotations."""
    title = str(model.get("title"))
    for panel in model.get("panels") or []:
        for inner in [panel, *(panel.get("panels") or [])]:  # a collapsed row holds its panels
            for target in inner.get("targets") or []:
                if target.get("expr"):
                    yield PanelQuery(title, str(inner.get("title")), target["expr"])
    for annotation in (model.get("annotations") or {}).get("list") or []:
        if annotation.get("expr"):
            yield PanelQuery(title, f"annotation {annotation.get('name')}", annotation["expr"])


def dashboard_problems(models: Iterable[Mapping[str, Any]], *, known_metrics: Iterable[str]) -> list[str]:
    """Every query that does not parse or reads a metric the catalog does not list, naming dashboard and panel."""
    from components.manifests.rule_lint import metric_names

    known = set(known_metrics)
    problems = []
    for model in models:
        for query in panel_queries(model):
            where = f"dashboard {query.dashboard!r}, panel {query.panel!r}"
            try:
                unknown = sorted(metric_names(query.expr) - known)
            except Exception as error:  # noqa: BLE001 - a parse error is a finding, with the parser's words
                problems.append(f"{where}: query does not parse: {error}")
                continue
            if unknown:
                problems.append(f"{where}: uses metrics not in the metric catalog: {', '.join(unknown)}")
    return list(dict.fromkeys(problems))  # a panel reading one wrong name in several queries: said once
