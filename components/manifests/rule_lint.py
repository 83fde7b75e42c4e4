"""Checks every rule group we build must pass before it becomes a PrometheusRule (run by tests/alerting): known
metrics only, read with a real PromQL parser (promql-parser), not a regex; a summary and a description on every
alert; and the pack's own alert-runbooks check (policies/runbook_links.py), so both say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from policies.runbook_links import alert_problems

METRIC_CATALOG = Path(__file__).with_name("metrics.yaml")
# runbook_url, and the severity label, are the alert-runbooks policy's to check.
REQUIRED_ANNOTATIONS = ("summary", "description")


def metric_catalog(path: Path = METRIC_CATALOG) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in yaml.safe_load(path.read_text())["metrics"]}


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects, from its parse tree."""
    import promql_parser

    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:  # {__name__="..."} selects by matcher
                names.update(m.value for m in node.matchers.matchers if m.name == "__name__")
            return
        for attribute in ("lhs", "rhs", "expr", "args", "vector_selector", "param"):
            child = getattr(node, attribute, None)
            for item in child if isinstance(child, list) else [child]:
                if item is not None and not isinstance(item, (str, int, float)):
                    walk(item)

    walk(promql_parser.parse(expr))
    return names


def lint_groups(groups: Iterable[Mapping[str, Any]], *, known_metrics: Iterable[str], runbooks: Iterable[str],
                runbook_base_url: str) -> list[str]:
    """Every problem found, one line each, naming the group and the alert or recording rule."""
    known, catalogued = set(known_metrics), set(runbooks)
    problems = []
    for group in groups:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            where = f"group {group['name']}, {'alert' if 'alert' in rule else 'record'} {name}"
            try:
                unknown = sorted(metric_names(rule["expr"]) - known)
            except Exception as error:  # noqa: BLE001 - a parse error is a finding, with the parser's words
                problems.append(f"{where}: expression does not parse: {error}")
                continue
            if unknown:
                problems.append(f"{where}: uses metrics not in the metric catalog: {', '.join(unknown)}")
            if "alert" not in rule:
                continue
            problems += alert_problems(group["name"], rule, runbooks=catalogued, runbook_base_url=runbook_base_url)
            problems += [f"{where}: no {annotation} annotation" for annotation in REQUIRED_ANNOTATIONS
                         if not rule.get("annotations", {}).get(annotation)]
    return problems
