"""`AlertRules`: the stack's SLOs and operational alerts as PrometheusRule objects, per region, and the Grafana
dashboards on-call opens after a page (ConfigMaps for Grafana's sidecar), built from the same SLOs.

Rules are built by `components/manifests/alert_rules.py` from the typed config; the same
groups are written as plain Prometheus rule files by `llmops preview --render`, which is
what `promtool check rules` and the promtool unit tests read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from components.config import Alerting, Model
from components.config.dashboards import Dashboards
from components.kubernetes import kubernetes_objects
from components.manifests.alert_rules import DriftRules, RuleContext, SloSpec, prometheus_rule, rule_groups
from components.manifests.dashboards import DashboardContext, config_map, dashboards

RULE_NAME = "llmops-alerts"


def slo_spec(model: Model) -> SloSpec:
    slo = model.slo
    return SloSpec(model=model.name, availability_objective=slo.availability.objective,
                   ttft_objective=slo.time_to_first_token.objective,
                   ttft_threshold_seconds=slo.time_to_first_token.threshold_seconds,
                   window_days=slo.window_days, min_request_rate=slo.min_request_rate)


@dataclass(frozen=True)
class AlertRulesArgs:
    alerting: Alerting
    models: Sequence[Model]
    environment: str
    region: str
    tags: Mapping[str, str]
    # With a release controller in the region: alert when it has made no decision for this long.
    release_stalled_after_seconds: int | None = None
    # With a drift monitor in the region: the models' drift alerts and the monitor's health.
    drift: DriftRules | None = None
    # Where the dashboards' ConfigMaps go and how the sidecar finds them (llmops:dashboards).
    dashboards: Dashboards = Dashboards()


class AlertRules(pulumi.ComponentResource):
    def __init__(self, name: str, args: AlertRulesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:monitoring:AlertRules", name, None, opts)
        context = RuleContext(runbook_base_url=args.alerting.runbook_base_url, environment=args.environment,
                              region=args.region)
        groups = rule_groups([slo_spec(m) for m in args.models], context, args.release_stalled_after_seconds,
                             args.drift)
        rule = prometheus_rule(name=RULE_NAME, namespace=args.alerting.rule_namespace, groups=groups, tags=args.tags,
                               selector_labels=args.alerting.rule_selector_labels)
        kubernetes_objects(name, [rule], self)
        boards = dashboards(DashboardContext(context, tuple(slo_spec(m) for m in args.models))) \
            if args.dashboards.enabled else []
        settings = args.dashboards
        kubernetes_objects(name, [config_map(board, region=args.region, namespace=settings.namespace, folder=settings.folder,
                                             sidecar_label=settings.sidecar_label,
                                             sidecar_label_value=settings.sidecar_label_value, tags=args.tags)
                                  for board in boards], self)
        self.register_outputs({"groups": [g["name"] for g in groups],
                               "alerts": sorted({r["alert"] for g in groups for r in g["rules"] if "alert" in r}),
                               "dashboards": [board.name for board in boards]})
