"""The rules under Prometheus's own tools: `promtool check rules` on every stack, and `promtool test rules`
showing each alert silent just before its `for` edge, firing just after it with exact labels and
annotations, and silent on healthy traffic and on no traffic (and, for SLOs, below the traffic floor)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from components.manifests.alert_rules import RuleContext, SloSpec, rule_groups
from llmops.offline.render import render

BASE = "https://runbooks.example.com/llmops"
CONTEXT = RuleContext(runbook_base_url=BASE, environment="prod", region="us-east-1")
SLO = SloSpec(model="chat", availability_objective=99.9, ttft_objective=95.0, ttft_threshold_seconds=1.0,
              window_days=30, min_request_rate=0.5)
GROUPS = rule_groups([SLO], CONTEXT)
RULES = {rule["alert"]: rule for group in GROUPS for rule in group["rules"] if "alert" in rule}


def minutes(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"m": 1, "h": 60}[unit]


# Counters at N per second, scraped every minute: 'start+increment x samples'.
def per_second(rate: float, samples: int = 200) -> str:
    return f"0+{rate * 60:g}x{samples}"


def flat(value: float, samples: int = 200) -> str:
    return f"{value:g}x{samples}"


def http(status: str, rate: float, samples: int = 200) -> dict:
    labels = f'namespace="serving",service="chat",handler="/v1/chat/completions",method="POST",status="{status}"'
    return {"series": f"http_requests_total{{{labels}}}", "values": per_second(rate, samples)}


def ttft(le: str | None, rate: float) -> dict:
    name = "vllm:time_to_first_token_seconds_count" if le is None else "vllm:time_to_first_token_seconds_bucket"
    bucket = f',le="{le}"' if le else ""
    return {"series": f'{name}{{namespace="serving",model_name="chat",engine="0"{bucket}}}', "values": per_second(rate)}


def gauge(series: str, value: float, samples: int = 200) -> dict:
    return {"series": series, "values": flat(value, samples)}


UNRELATED = [gauge('up{job="kubelet"}', 1)]  # promtool wants at least one series


@dataclass(frozen=True)
class Scenario:
    alert: str
    firing: list[dict]  # input series that trip the alert from the start
    active_from: int  # minute at which the expression first holds (counters need two samples)
    labels: dict[str, str]  # labels the expression yields (templates can read only these); the rule adds its own
    healthy: list[dict]
    idle: list[dict]  # no traffic at all
    low_traffic: list[dict] | None = None  # as bad as `firing`, but below the SLO's request-rate floor
    extra: dict[str, list[dict]] = field(default_factory=dict)


SLO_LABELS = {"model": "chat"}
SCENARIOS = [
    *[Scenario(
        alert=f"SLOAvailability{speed}Burn",
        # 10% errors against a 0.1% budget. Series start at 0, so a window's rate is r x t / window until the
        # window fills; at 1000 req/s every window clears the 0.5 req/s floor from the first evaluation.
        firing=[http("2xx", 900), http("5xx", 100)],
        active_from=1, labels={**SLO_LABELS, "slo": "availability"},
        healthy=[http("2xx", 10), http("4xx", 1)],  # client errors do not burn the budget
        idle=[http("2xx", 0), http("5xx", 0)],  # 0/0 is NaN: no page on no traffic
        low_traffic=[http("2xx", 0.2), http("5xx", 0.2)],  # 50% errors, but 0.4 req/s < 0.5 floor
    ) for speed in ("Fast", "Slow")],
    *[Scenario(
        alert=f"SLOLatency{speed}Burn",
        firing=[http("2xx", 1000), ttft("1.0", 50), ttft(None, 1000)],  # 95% of first tokens slower than 1s
        active_from=1, labels={**SLO_LABELS, "slo": "latency"},
        healthy=[http("2xx", 10), ttft("1.0", 9.9), ttft(None, 10)],
        idle=[http("2xx", 0), ttft("1.0", 0), ttft(None, 0)],
        low_traffic=[http("2xx", 0.2), ttft("1.0", 0), ttft(None, 0.2)],
    ) for speed in ("Fast", "Slow")],
    Scenario("VllmMetricsAbsent", firing=UNRELATED, active_from=0,
             labels={"namespace": "serving", "model_name": "chat"},
             healthy=[gauge('vllm:num_requests_running{namespace="serving",model_name="chat",engine="0"}', 3)],
             idle=[gauge('vllm:num_requests_running{namespace="serving",model_name="chat",engine="0"}', 0)]),
    Scenario("VllmRequestQueueBacklog",
             firing=[gauge('vllm:num_requests_waiting{namespace="serving",model_name="chat",pod="chat-1"}', 30)],
             active_from=0, labels={"namespace": "serving", "model_name": "chat"},
             healthy=[gauge('vllm:num_requests_waiting{namespace="serving",model_name="chat",pod="chat-1"}', 3)],
             idle=[gauge('vllm:num_requests_waiting{namespace="serving",model_name="chat",pod="chat-1"}', 0)]),
    Scenario("VllmKvCacheSaturated",
             firing=[gauge('vllm:kv_cache_usage_perc{namespace="serving",model_name="chat",pod="chat-1"}', 0.99)],
             active_from=0, labels={"namespace": "serving", "model_name": "chat", "pod": "chat-1"},
             healthy=[gauge('vllm:kv_cache_usage_perc{namespace="serving",model_name="chat",pod="chat-1"}', 0.6)],
             idle=[gauge('vllm:kv_cache_usage_perc{namespace="serving",model_name="chat",pod="chat-1"}', 0)]),
    Scenario("VllmPreemptionsSustained",
             firing=[{"series": 'vllm:num_preemptions_total{namespace="serving",model_name="chat",pod="chat-1"}',
                      "values": per_second(5)}],
             active_from=1, labels={"namespace": "serving", "model_name": "chat"},
             healthy=[{"series": 'vllm:num_preemptions_total{namespace="serving",model_name="chat",pod="chat-1"}',
                       "values": per_second(0.01)}],
             idle=[{"series": 'vllm:num_preemptions_total{namespace="serving",model_name="chat",pod="chat-1"}',
                    "values": per_second(0)}]),
    Scenario("GpuPodsUnschedulable",
             firing=[gauge('kube_pod_status_unschedulable{namespace="serving",pod="chat-7f9c"}', 1)],
             active_from=0, labels={"namespace": "serving", "pod": "chat-7f9c"},
             healthy=[gauge('kube_pod_status_unschedulable{namespace="serving",pod="chat-7f9c"}', 0)],
             idle=UNRELATED),
    Scenario("GpuXidErrors",
             firing=[gauge('DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-60-1-7",gpu="3",modelName="NVIDIA H100"}', 79)],
             active_from=0, labels={"Hostname": "ip-10-60-1-7", "gpu": "3"},
             healthy=[gauge('DCGM_FI_DEV_XID_ERRORS{Hostname="ip-10-60-1-7",gpu="3",modelName="NVIDIA H100"}', 0)],
             idle=UNRELATED),
    Scenario("GpuMemoryExhausted",
             firing=[gauge('DCGM_FI_DEV_FB_USED{Hostname="ip-10-60-1-7",gpu="3"}', 80500),
                     gauge('DCGM_FI_DEV_FB_FREE{Hostname="ip-10-60-1-7",gpu="3"}', 500)],
             active_from=0, labels={"Hostname": "ip-10-60-1-7", "gpu": "3"},
             healthy=[gauge('DCGM_FI_DEV_FB_USED{Hostname="ip-10-60-1-7",gpu="3"}', 72900),  # vLLM's 90%
                      gauge('DCGM_FI_DEV_FB_FREE{Hostname="ip-10-60-1-7",gpu="3"}', 8100)],
             idle=[gauge('DCGM_FI_DEV_FB_USED{Hostname="ip-10-60-1-7",gpu="3"}', 0),
                   gauge('DCGM_FI_DEV_FB_FREE{Hostname="ip-10-60-1-7",gpu="3"}', 81000)]),
    Scenario("GpuTemperatureHigh",
             firing=[gauge('DCGM_FI_DEV_GPU_TEMP{Hostname="ip-10-60-1-7",gpu="3"}', 91)],
             active_from=0, labels={"Hostname": "ip-10-60-1-7", "gpu": "3"},
             healthy=[gauge('DCGM_FI_DEV_GPU_TEMP{Hostname="ip-10-60-1-7",gpu="3"}', 71)],
             idle=[gauge('DCGM_FI_DEV_GPU_TEMP{Hostname="ip-10-60-1-7",gpu="3"}', 35)]),
    *[Scenario(alert,
               firing=[gauge(f'{metric}{{namespace="{ns}",{kind}="{name}"}}', 0)], active_from=0, labels={},
               healthy=[gauge(f'{metric}{{namespace="{ns}",{kind}="{name}"}}', 2)],
               idle=[gauge(f'{metric}{{namespace="{ns}",{kind}="{name}"}}', 1)])
      for alert, metric, ns, kind, name in (
          ("ModelRegistryDown", "kube_deployment_status_replicas_available", "registry", "deployment", "mlflow"),
          ("FeatureStoreDown", "kube_deployment_status_replicas_available", "features", "deployment", "feast"),
          ("RetrievalIndexDown", "kube_statefulset_status_replicas_ready", "retrieval", "statefulset", "qdrant"))],
    Scenario("PiiDetectedInLogs",
             firing=[{"series": 'llmops_pii_findings_total{source="s3://logs/inference",entity_type="EMAIL_ADDRESS"}',
                      "values": "0x4 3x60"}],
             active_from=5, labels={"source": "s3://logs/inference", "entity_type": "EMAIL_ADDRESS"},
             healthy=[{"series": 'llmops_pii_findings_total{source="s3://logs/inference",entity_type="EMAIL_ADDRESS"}',
                       "values": "0x60"}],
             idle=UNRELATED),
    Scenario("PiiScanStale",
             firing=[gauge('llmops_pii_scan_last_success_timestamp_seconds{source="s3://logs/inference"}', 0)],
             active_from=121, labels={"source": "s3://logs/inference"},  # 7200 s after the last success
             healthy=[{"series": 'llmops_pii_scan_last_success_timestamp_seconds{source="s3://logs/inference"}',
                       "values": "0+60x200"}],  # a scan every minute
             idle=[{"series": 'llmops_pii_scan_last_success_timestamp_seconds{source="s3://logs/inference"}',
                    "values": "0+60x200"}],
             extra={"absent": UNRELATED}),
    Scenario("RetrievalIndexStale", firing=[gauge('llmops_index_stale_fraction{index="docs"}', 0.2)], active_from=0,
             labels={"index": "docs"}, healthy=[gauge('llmops_index_stale_fraction{index="docs"}', 0.01)],
             idle=[gauge('llmops_index_stale_fraction{index="docs"}', 0)]),
    Scenario("RetrievalIndexBehindCorpus",
             firing=[gauge('llmops_index_age_seconds{index="docs"}', 90000),
                     gauge('llmops_index_corpus_newer_objects{index="docs"}', 12)],
             active_from=0, labels={"index": "docs"},
             healthy=[gauge('llmops_index_age_seconds{index="docs"}', 90000),
                      gauge('llmops_index_corpus_newer_objects{index="docs"}', 0)],
             idle=[gauge('llmops_index_age_seconds{index="docs"}', 600),
                   gauge('llmops_index_corpus_newer_objects{index="docs"}', 0)]),
    Scenario("RetrievalIndexConfigMismatch", firing=[gauge('llmops_index_config_mismatch{index="docs"}', 1)],
             active_from=0, labels={"index": "docs"}, healthy=[gauge('llmops_index_config_mismatch{index="docs"}', 0)],
             idle=[gauge('llmops_index_config_mismatch{index="docs"}', 0)]),
    Scenario("RetrievalFreshnessUnknown", firing=UNRELATED, active_from=0, labels={},
             healthy=[gauge('llmops_index_age_seconds{index="docs"}', 600)],
             idle=[gauge('llmops_index_age_seconds{index="docs"}', 0)]),
]


def test_every_alert_has_a_scenario():
    assert sorted(s.alert for s in SCENARIOS) == sorted(RULES)


def rendered(template: str, labels: dict[str, str]) -> str:
    """What Prometheus renders for an annotation that uses only {{ $labels.x }}; an unknown label fails."""
    def label(match: re.Match) -> str:
        name = match.group(1)
        assert name in labels, f"annotation uses {{{{ $labels.{name} }}}}, which the alert does not carry"
        return labels[name]
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", label, template)


def expectation(rule: dict, scenario_labels: dict[str, str]) -> dict:
    series_labels = dict(scenario_labels)
    labels = {**series_labels, **rule["labels"]}
    return {"exp_labels": labels,
            "exp_annotations": {k: rendered(v, series_labels) for k, v in rule["annotations"].items()}}


def unit_tests(scenario: Scenario) -> list[dict]:
    rule = RULES[scenario.alert]
    edge = scenario.active_from + minutes(rule["for"])
    name = scenario.alert

    def case(series: list[dict], checks: list[tuple[int, list[dict]]]) -> dict:
        return {"interval": "1m", "input_series": series,
                "alert_rule_test": [{"eval_time": f"{t}m", "alertname": name, "exp_alerts": alerts} for t, alerts in checks]}

    later = edge + 5
    tests = [
        case(scenario.firing, [(edge - 1, []), (edge, [expectation(rule, scenario.labels)])]),
        case(scenario.healthy, [(edge, []), (later, [])]),
        case(scenario.idle, [(edge, []), (later, [])]),
    ]
    if scenario.low_traffic is not None:
        tests.append(case(scenario.low_traffic, [(edge, []), (later, [])]))
    if "absent" in scenario.extra:  # the metric missing altogether also fires, from the start
        absent_edge = minutes(rule["for"])
        tests.append(case(scenario.extra["absent"], [(absent_edge - 1, []), (absent_edge, [expectation(rule, {})])]))
    return tests


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": GROUPS}, sort_keys=False))
    return path


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.alert)
def test_alert_fires_at_its_edge_and_stays_quiet_otherwise(promtool, rules_file, tmp_path, scenario):
    test_file = tmp_path / f"{scenario.alert}.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m",
                                         "tests": unit_tests(scenario)}, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{scenario.alert}:\n{result.stdout}\n{result.stderr}"


def test_a_broken_expectation_fails_promtool(promtool, rules_file, tmp_path):
    """The harness can fail: claiming the alert fires a minute early is caught."""
    scenario = next(s for s in SCENARIOS if s.alert == "GpuTemperatureHigh")
    tests = unit_tests(scenario)
    tests[0]["alert_rule_test"][0]["exp_alerts"] = tests[0]["alert_rule_test"][1]["exp_alerts"]
    test_file = tmp_path / "broken.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "GpuTemperatureHigh" in result.stdout + result.stderr


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_promtool_checks_every_stacks_rendered_rule_files(promtool, plans, stack, tmp_path):
    files = [p for p in render(plans[stack], tmp_path) if p.name.endswith(".rules.yml")]
    assert len(files) == len(plans[stack].by_type("llmops:infra:Region"))
    for path in files:
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{path}:\n{result.stdout}\n{result.stderr}"
        assert "SUCCESS" in result.stdout
