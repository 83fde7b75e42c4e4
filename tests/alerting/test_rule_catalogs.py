"""Every rule reads only catalogued metrics; every alert links a catalogued runbook; every runbook is reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from components.manifests.alert_rules import RUNBOOKS, RuleContext, SloSpec, rule_groups
from components.manifests.rule_lint import lint_groups, metric_catalog, metric_names
from llmops.policy.runner import check_plan
from policies.runbook_links import linked_runbook
from runbooks.catalog import load_catalog
from runbooks.definitions import RUNBOOKS as EXECUTABLE
from tests.conftest import objects_of
from tests.policies.builders import PlanBuilder

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "vllm_metrics.prom"
BASE = "https://github.com/example-org/llmops/blob/main/runbooks/pages"
STACKS = ["dev", "staging", "prod"]


def stack_groups(plan):
    rules = objects_of(plan, "PrometheusRule")
    assert rules, f"stack {plan.stack} has no PrometheusRule"
    return [group for rule in rules for group in rule["spec"]["groups"]]


def alerts(groups):
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stacks_rules_pass_the_lint(plans, stack):
    problems = lint_groups(stack_groups(plans[stack]), known_metrics=metric_catalog(), runbooks=load_catalog(),
                           runbook_base_url=BASE)
    assert problems == []


def alerted(catalog):
    """The runbooks alerts send on-call to; the others (promote) are run on purpose."""
    return {name for name, entry in catalog.items() if entry.alerts}


def test_runbook_names_in_the_rules_are_the_catalog():
    catalog = load_catalog()
    assert set(RUNBOOKS) == alerted(catalog)
    assert set(catalog) - alerted(catalog) <= set(EXECUTABLE), "a runbook no alert leads to is run on purpose: executable"


def reached(plan) -> dict[str, set[str]]:
    """Runbook name -> the alerts of this plan that link it."""
    found: dict[str, set[str]] = {}
    for rule in alerts(stack_groups(plan)):
        found.setdefault(linked_runbook(rule["annotations"]["runbook_url"], BASE), set()).add(rule["alert"])
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_every_alert_links_a_catalogued_runbook_that_lists_it(plans, stack):
    catalog = load_catalog()
    for name, linked in reached(plans[stack]).items():
        assert name in catalog, f"alerts {sorted(linked)} link {name}, which runbooks/catalog.yaml does not list"
        assert linked <= set(catalog[name].alerts), f"runbooks/catalog.yaml's alerts for {name} drifted from the rules"


def test_every_catalogued_runbook_is_reached_and_the_catalog_lists_exactly_its_alerts(plans):
    """Across the stacks: an alert exists only where what it watches runs (the release controller: not in dev)."""
    linked: dict[str, set[str]] = {}
    for stack in STACKS:
        for name, names in reached(plans[stack]).items():
            linked.setdefault(name, set()).update(names)
    catalog = load_catalog()
    assert set(linked) == alerted(catalog), "every catalogued runbook that lists alerts is linked from them"
    for name in alerted(catalog):
        assert set(catalog[name].alerts) == linked[name], f"runbooks/catalog.yaml's alerts for {name} drifted from the rules"


@pytest.mark.parametrize("stack", STACKS)
def test_every_alert_carries_severity_summary_description_and_runbook(plans, stack):
    for rule in alerts(stack_groups(plans[stack])):
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["labels"]["environment"] == stack
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        assert "$value" not in str(rule["annotations"]), f"{rule['alert']}: annotations must be testable exactly"


def _context():
    return RuleContext(runbook_base_url=BASE, environment="prod", region="us-east-1")


def _groups():
    return rule_groups([SloSpec("chat", 99.9, 95.0, 1.0, 30, 0.5)], _context())


def _broken_groups(alert_name, change):
    groups = _groups()
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == alert_name:
                change(rule)
    return groups


def _broken(alert_name, change):
    groups = _broken_groups(alert_name, change)
    return lint_groups(groups, known_metrics=metric_catalog(), runbooks=load_catalog(), runbook_base_url=BASE)


def test_a_wrong_metric_name_fails_naming_the_alert():
    problems = _broken("VllmKvCacheSaturated",
                       lambda r: r.update(expr=r["expr"].replace("kv_cache_usage_perc", "gpu_cache_usage_perc")))
    assert problems == ["group llmops-serving, alert VllmKvCacheSaturated: uses metrics not in the metric catalog: "
                        "vllm:gpu_cache_usage_perc"]


def test_a_missing_runbook_url_fails_naming_the_alert():
    problems = _broken("GpuXidErrors", lambda r: r["annotations"].pop("runbook_url"))
    assert problems == ["group llmops-gpu, alert GpuXidErrors: no runbook_url annotation; link the runbook on-call "
                        "should follow."]


def test_a_runbook_link_to_nothing_fails_naming_the_alert():
    problems = _broken("RetrievalIndexStale", lambda r: r["annotations"].update(runbook_url=f"{BASE}/reindx.md"))
    assert problems == [f"group llmops-data, alert RetrievalIndexStale: runbook_url {BASE}/reindx.md names no "
                        f"catalogued runbook page; use {BASE}/<{'|'.join(sorted(load_catalog()))}>.md."]


def test_a_missing_severity_fails_naming_the_alert():
    problems = _broken("PiiDetectedInLogs", lambda r: r["labels"].pop("severity"))
    assert problems == ["group llmops-data, alert PiiDetectedInLogs: no severity label; add labels.severity "
                        "(page or ticket)."]


def test_the_lint_and_the_policy_pack_report_a_bad_alert_in_the_same_words():
    def unlinked(rule):
        rule["labels"].pop("severity")
        rule["annotations"]["runbook_url"] = f"{BASE}/reindx.md"

    groups = _broken_groups("RetrievalIndexStale", unlinked)
    lint = lint_groups(groups, known_metrics=metric_catalog(), runbooks=load_catalog(), runbook_base_url=BASE)
    plan = PlanBuilder()
    plan.add("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "alerts",
             {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "spec": {"groups": groups}})
    config = {"alert-runbooks": {"runbookBaseUrl": BASE, "runbooks": sorted(load_catalog())}}
    pack = [v.message for v in check_plan(plan.plan(), config) if v.policy == "alert-runbooks"]
    assert len(lint) == 2 and pack == [f"PrometheusRule alerts, {problem}" for problem in lint]


def test_rules_never_read_metrics_vllm_removed():
    used = {name for group in _groups() for rule in group["rules"] for name in metric_names(rule["expr"])}
    assert not used & {"vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds_bucket",
                       "vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"}


def sample_series() -> set[str]:
    names = set()
    for family in text_string_to_metric_families(SAMPLE.read_text()):
        names.update(sample.name for sample in family.samples)
    return names


def test_every_catalogued_vllm_metric_is_in_a_current_vllm_exposition():
    exposed = sample_series()
    vllm = [name for name, entry in metric_catalog().items() if entry["source"] == "vllm"]
    assert vllm
    assert [name for name in vllm if name not in exposed] == []


def test_the_ttft_threshold_bucket_the_rules_select_exists_in_the_exposition():
    text = SAMPLE.read_text()
    rule = next(r for g in _groups() for r in g["rules"] if r.get("record") == "llmops:slo_errors:ratio_rate5m"
                and r["labels"]["slo"] == "latency")
    assert 'le="1.0"' in rule["expr"] and 'le="1.0"' in text
