"""The drift alerts under `promtool test rules`: each one silent just before its edge and firing just after it with
exact labels and annotations (runbook_url included), and silent on healthy, quiet or idle series. The group is the
one `rule_groups` builds for a drift monitor, evaluated at its own interval."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest
import yaml

from components.manifests.alert_rules import DriftAlertSpec, DriftRules, RuleContext, SloSpec, rule_groups
from components.manifests.rule_lint import lint_groups, metric_catalog
from runbooks.catalog import load_catalog
from tests.alerting.test_promtool import rendered

BASE = "https://runbooks.example.com/llmops"
CONTEXT = RuleContext(runbook_base_url=BASE, environment="prod", region="us-east-1")
DRIFT = DriftRules(interval_seconds=5, models=(
    DriftAlertSpec(model="chat", severity="page", consecutive_windows=3, window_seconds=10, min_samples=100,
                   sample_percent=100, retraining_volume=5000),
    DriftAlertSpec(model="chat-small", severity="ticket", consecutive_windows=3, window_seconds=10, min_samples=100,
                   sample_percent=50),
))
SLOS = [SloSpec("chat", 99.9, 95.0, 1.0, 30, 0.5), SloSpec("chat-small", 99.9, 95.0, 0.5, 30, 0.5)]
(GROUP,) = [g for g in rule_groups(SLOS, CONTEXT, drift=DRIFT) if g["name"] == "llmops-drift"]
MONITOR = 'namespace="drift",job="drift-monitor",service="drift-monitor",pod="drift-monitor-7d9f",instance="10.0.1.7:8080"'
UNRELATED = [{"series": 'up{job="kubelet"}', "values": "1x120"}]


def rule(alert: str, model: str | None = None) -> dict:
    (found,) = [r for r in GROUP["rules"] if r["alert"] == alert and r["labels"].get("model") == model]
    return found


def status(model: str, signal: str, values: str) -> dict:
    return {"series": f'llmops_drift_status{{{MONITOR},model="{model}",signal="{signal}"}}', "values": values}


def series(name: str, labels: str, values: str) -> dict:
    return {"series": f"{name}{{{labels}}}", "values": values}


def minutes(duration: str | None) -> int:
    return int(duration[:-1]) if duration else 0


@dataclass(frozen=True)
class Scenario:
    name: str
    alert: str
    model: str | None
    firing: list[dict]
    active_from: int  # the minute from which the expression holds
    labels: dict[str, str]  # what the expression yields; the rule adds its own
    quiet: dict[str, list[dict]]  # cases that must never fire


TRAFFIC = series("llmops:slo_requests:rate30m", 'model="chat-small"', "1x120")  # 1 req/s: 900 samples at 50%
SCENARIOS = [
    Scenario("drift pages for chat", "Drift", "chat", [status("chat", "embedding", "0x4 2x60")], 5,
             {"model": "chat", "signal": "embedding"},
             {"watch": [status("chat", "embedding", "1x60")], "stable": [status("chat", "embedding", "0x60")],
              "another model": [status("chat-small", "embedding", "2x60")]}),
    Scenario("drift tickets for chat-small", "Drift", "chat-small",
             [status("chat-small", "prompt_tokens", "0x4 2x60")], 5, {"model": "chat-small", "signal": "prompt_tokens"},
             {"stable": [status("chat-small", "prompt_tokens", "0x60")]}),
    Scenario("a sustained watch", "DriftWatch", "chat", [status("chat", "retrieval_top_score", "0x4 1x60")], 5,
             {"model": "chat", "signal": "retrieval_top_score"},
             {"drift": [status("chat", "retrieval_top_score", "2x60")],
              "watch, then stable": [status("chat", "retrieval_top_score", "1x10 0x50")]}),
    Scenario("a field gone from the request log", "DriftSchemaChanged", None,
             [series("llmops_drift_schema_changes", f'{MONITOR},model="chat",field="retrieval_top_score",'
                     'change="missing"', "0x4 1x60")], 5,
             {"model": "chat", "field": "retrieval_top_score", "change": "missing"},
             {"unchanged": [series("llmops_drift_schema_changes",
                                   f'{MONITOR},model="chat",field="retrieval_top_score",change="missing"', "0x60")]}),
    Scenario("retraining due by volume", "DriftRetrainingVolume", "chat",
             [series("llmops_drift_samples_since_reference", f'{MONITOR},model="chat"', "0+100x120")], 50,
             {"model": "chat"},
             {"below the volume": [series("llmops_drift_samples_since_reference", f'{MONITOR},model="chat"',
                                          "4999x60")]}),
    Scenario("a model without a reference", "DriftReferenceMissing", None,
             [series("llmops_drift_reference_version", f'{MONITOR},model="chat"', "0x60")], 0, {"model": "chat"},
             {"a reference": [series("llmops_drift_reference_version", f'{MONITOR},model="chat"', "3x60")]}),
    Scenario("the monitor's target down", "DriftMonitorDown", None, [series("up", MONITOR, "1x4 0x60")], 5,
             {"namespace": "drift", "job": "drift-monitor"},
             {"up": [series("up", MONITOR, "1x60")]}),
    Scenario("the monitor not scraped at all", "DriftMonitorDown", None, UNRELATED, 0,
             {"namespace": "drift", "job": "drift-monitor"}, {}),
    # Samples stop at minute 10: from minute 40 the last 30 minutes hold none, though traffic went on.
    Scenario("samples stop while chat-small serves", "DriftMonitorDown", "chat-small",
             [TRAFFIC, series("llmops_drift_samples_total", f'{MONITOR},model="chat-small"', "0+60x10 600x110")], 40,
             {"model": "chat-small"},
             {"samples flow": [TRAFFIC, series("llmops_drift_samples_total", f'{MONITOR},model="chat-small"',
                                               "0+60x120")],
              "too little traffic to expect minSamples": [
                  series("llmops:slo_requests:rate30m", 'model="chat-small"', "0.1x120"), *UNRELATED],
              "no traffic": [series("llmops:slo_requests:rate30m", 'model="chat-small"', "0x120"), *UNRELATED]}),
    Scenario("no samples of chat-small ever, while it serves", "DriftMonitorDown", "chat-small", [TRAFFIC], 0,
             {"model": "chat-small"}, {}),
]


def test_every_drift_alert_rule_has_a_scenario():
    covered = {(s.alert, s.model) for s in SCENARIOS}
    # The same rules as another model's, differing only in the model they select.
    alike = {("DriftWatch", "chat-small"), ("DriftMonitorDown", "chat")}
    assert covered == {(r["alert"], r["labels"].get("model")) for r in GROUP["rules"]} - alike
    assert GROUP["interval"] == "5s"


def test_the_drift_group_passes_the_rule_lint():
    assert lint_groups([GROUP], known_metrics=metric_catalog(), runbooks=load_catalog(), runbook_base_url=BASE) == []


def expected(found: dict, labels: dict[str, str]) -> list[dict]:
    return [{"exp_labels": {**labels, **found["labels"]},
             "exp_annotations": {k: rendered(v, labels) for k, v in found["annotations"].items()}}]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_drift_alert_fires_at_its_edge_with_exact_labels_and_annotations(promtool, tmp_path, scenario):
    found = rule(scenario.alert, scenario.model)
    edge = scenario.active_from + minutes(found.get("for"))
    name = scenario.alert
    checks = [(edge, expected(found, scenario.labels))]
    if edge > 0:
        checks.insert(0, (edge - 1, []))
    tests = [{"interval": "1m", "input_series": scenario.firing,
              "alert_rule_test": [{"eval_time": f"{t}m", "alertname": name, "exp_alerts": alerts}
                                  for t, alerts in checks]}]
    # Quiet cases: no alert of this rule at the firing case's edge nor later (other rules of the name may fire).
    for quiet in scenario.quiet.values():
        tests.append({"interval": "1m", "input_series": quiet,
                      "alert_rule_test": [{"eval_time": f"{t}m", "alertname": name, "exp_alerts": []}
                                          for t in (edge, edge + 10)]})
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{**GROUP, "rules": [found]}]}, sort_keys=False))
    test_file = tmp_path / "drift.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests},
                                        sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{scenario.name}:\n{result.stdout}\n{result.stderr}"


def test_the_drift_harness_can_fail(promtool, tmp_path):
    """Claiming that Drift waits a minute (as a `for` would) is caught: it fires at once."""
    found = rule("Drift", "chat")
    tests = [{"interval": "1m", "input_series": [status("chat", "embedding", "0x4 2x60")],
              "alert_rule_test": [{"eval_time": "5m", "alertname": "Drift", "exp_alerts": []}]}]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{**GROUP, "rules": [found]}]}))
    test_file = tmp_path / "broken.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Drift" in result.stdout + result.stderr


def test_drift_annotations_name_what_moved_and_hold_no_values():
    for found in GROUP["rules"]:
        annotations = found["annotations"]
        assert annotations["runbook_url"] == f"{BASE}/drift-review.md"
        assert "$value" not in str(annotations)
    assert "{{ $labels.signal }}" in rule("Drift", "chat")["annotations"]["summary"]
    assert "{{ $labels.field }}" in rule("DriftSchemaChanged")["annotations"]["summary"]
    assert rule("Drift", "chat")["labels"]["severity"] == "page"
    assert {r["labels"]["severity"] for r in GROUP["rules"] if r is not rule("Drift", "chat")} == {"ticket"}
