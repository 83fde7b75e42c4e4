"""The dashboards: every query parses and reads only catalogued metrics (a wrong name fails naming the panel), the
rendered ConfigMaps validate strictly and carry the sidecar's label and folder, and `llmops preview --render` writes
each dashboard's JSON."""

from __future__ import annotations

import copy
import json

import pytest

from components.manifests.alert_rules import RuleContext, SloSpec
from components.manifests.dashboards import (
    DashboardContext,
    dashboard_problems,
    dashboards,
    dashboards_in,
    panel_queries,
)
from components.manifests.rule_lint import metric_catalog
from llmops.offline.render import render
from llmops.offline.validate import validate_object, validate_plan

CONTEXT = DashboardContext(RuleContext("https://example.org/runbooks/pages", "staging", "us-east-1"),
                           (SloSpec("chat-small", 99.5, 95.0, 2.5, 30, 0.1),))


def test_every_query_parses_and_reads_catalogued_metrics():
    boards = dashboards(CONTEXT)
    assert [b.name for b in boards] == ["service-chat-small", "vllm", "gpu", "operations"]
    assert all(len(list(panel_queries(b.model))) >= 5 for b in boards)
    assert dashboard_problems([b.model for b in boards], known_metrics=metric_catalog()) == []


def test_a_wrong_metric_name_fails_naming_the_dashboard_and_panel():
    board = copy.deepcopy(next(b for b in dashboards(CONTEXT) if b.name == "vllm").model)
    panel = next(p for p in board["panels"] if p.get("title") == "KV cache usage")
    panel["targets"][0]["expr"] = "max(vllm:gpu_cache_usage_perc)"  # the name vLLM removed
    problems = dashboard_problems([board], known_metrics=metric_catalog())
    assert problems == ["dashboard 'vLLM engine (us-east-1)', panel 'KV cache usage': uses metrics not in the metric "
                        "catalog: vllm:gpu_cache_usage_perc"]
    panel["targets"][0]["expr"] = "max(vllm:kv_cache_usage_perc"
    assert "panel 'KV cache usage': query does not parse" in dashboard_problems([board], known_metrics=metric_catalog())[0]


def test_dashboards_link_the_runbook_pages_like_the_alerts():
    for board in dashboards(CONTEXT):
        urls = [link["url"] for link in board.model["links"] if link.get("url")]
        assert urls and all(u.startswith("https://example.org/runbooks/pages/") and u.endswith(".md") for u in urls)
        assert {a["name"] for a in board.model["annotations"]["list"]} >= {"Runbook runs", "Releases"}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_rendered_config_maps_validate_strictly_with_the_sidecar_label_and_folder(plans, stack, tmp_path):
    plan = plans[stack]
    maps = [r.inputs for r in plan.kubernetes_objects() if dashboards_in(r.inputs)]
    regions = {r for m in maps for r, _, _ in dashboards_in(m)}
    assert maps and regions
    for obj in maps:
        assert obj["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert obj["metadata"]["annotations"]["grafana_folder"] == "LLMOps"
        assert obj["metadata"]["namespace"] == "monitoring"
        assert validate_object(obj, "1.33") == []
    assert validate_plan(plan) == []  # schemas and the dashboards' metric check, as llmops preview --validate
    written = render(plan, tmp_path)
    boards = [p for p in written if p.suffix == ".json"]
    assert {p.relative_to(tmp_path / stack).parts[:2] for p in boards} == {("dashboards", r) for r in regions}
    for path in boards:
        assert json.loads(path.read_text())["panels"]


def test_the_offline_plan_reports_a_dashboard_reading_an_unknown_metric(plans):
    from llmops.offline.validate import dashboard_violations

    obj = copy.deepcopy(next(r.inputs for r in plans["staging"].kubernetes_objects()
                             if r.inputs["metadata"]["name"] == "llmops-dashboard-operations"))
    (key, text), = obj["data"].items()
    obj["data"][key] = text.replace("llmops_index_age_seconds", "llmops_index_age")
    assert [str(v) for v in dashboard_violations(obj)] == [
        "ConfigMap/monitoring/llmops-dashboard-operations: dashboard 'Operations (us-east-1)', panel 'Index age': "
        "uses metrics not in the metric catalog: llmops_index_age"]


def test_the_stack_files_dashboards_section_sets_label_folder_and_namespace(tmp_path):
    """llmops:dashboards in a stack file reaches the rendered ConfigMaps (and `enabled: false` renders none)."""
    import yaml

    from components.paths import PROJECT_ROOT, STACKS_DIR
    from llmops.offline.engine import run_program
    from llmops.offline.project import load_project, load_stack_file

    project = load_project(PROJECT_ROOT)
    document = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    document["config"]["llmops:dashboards"] = {"sidecarLabel": "grafana.example.org/dashboard",
                                               "sidecarLabelValue": "on-call", "folder": "On call", "namespace": "grafana"}
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    maps = [r.inputs for r in run_program(project, load_stack_file(project, "dev", path)).kubernetes_objects()
            if dashboards_in(r.inputs)]
    assert maps
    for obj in maps:
        assert obj["metadata"]["labels"]["grafana.example.org/dashboard"] == "on-call"
        assert obj["metadata"]["annotations"]["grafana_folder"] == "On call"
        assert obj["metadata"]["namespace"] == "grafana" and validate_object(obj, "1.33") == []
    document["config"]["llmops:dashboards"] = {"enabled": False}
    path.write_text(yaml.safe_dump(document))
    assert not [r for r in run_program(project, load_stack_file(project, "dev", path)).kubernetes_objects()
                if dashboards_in(r.inputs)]


def test_stat_tiles_say_when_a_budget_is_spent_and_never_alarm_by_grafanas_default():
    """Every stat panel states its thresholds: the error ratio turns red above the SLO's budget, a spent error budget
    red and under a quarter orange; a tile without meaning in colour (request rate) stays in the text colour, not
    Grafana's default red from 80."""
    for board in dashboards(CONTEXT):
        for panel in (p for p in board.model["panels"] if p.get("type") == "stat"):
            thresholds = panel["fieldConfig"]["defaults"]["thresholds"]
            assert thresholds["mode"] == "absolute" and thresholds["steps"][0]["value"] is None, panel["title"]
    service = next(b for b in dashboards(CONTEXT) if b.name == "service-chat-small").model
    steps = {p["title"]: [(s["value"], s["color"]) for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
             for p in service["panels"] if p.get("type") == "stat"}
    assert steps["Error ratio (5m)"] == [(None, "green"), (0.005, "red")]  # 99.5 % available: a 0.5 % budget
    assert steps["Error budget remaining (availability, 30d)"] == [(None, "red"), (0, "orange"), (0.25, "green")]
    assert steps["Request rate"] == [(None, "text")]


def _grouping(node) -> set[str]:
    """The labels an instant query's rows carry: its outermost `by (...)` (through arithmetic with scalars)."""
    import promql_parser

    if isinstance(node, promql_parser.AggregateExpr):
        return set(node.modifier.labels) if node.modifier is not None else set()
    if isinstance(node, promql_parser.BinaryExpr):
        return _grouping(node.lhs) | _grouping(node.rhs)
    return set()


def test_every_table_names_each_label_of_its_rows_for_people_and_hides_the_timestamp():
    """A table shows one row per series: every label its query keeps is a column with a header of its own (no
    `label_llmops_io_release` in front of on-call), the value is named or hidden, and the timestamp is hidden."""
    import promql_parser

    tables = 0
    for board in dashboards(CONTEXT):
        for panel in (p for p in board.model["panels"] if p.get("type") == "table"):
            tables += 1
            (organize,) = [t["options"] for t in panel["transformations"] if t["id"] == "organize"]
            assert organize["excludeByName"]["Time"] is True, panel["title"]
            for target in panel["targets"]:
                assert target["format"] == "table" and target["instant"] is True, panel["title"]
                labels = _grouping(promql_parser.parse(target["expr"]))
                assert labels and labels <= set(organize["renameByName"]), (panel["title"], labels)
            assert "Value" in organize["renameByName"] or organize["excludeByName"].get("Value"), panel["title"]
            assert all(header and header[0].isupper() for header in organize["renameByName"].values()), panel["title"]
    assert tables == 5
