"""Alerting policy: every alert carries a severity and a runbook_url naming a catalogued runbook."""

from __future__ import annotations

from pathlib import Path

import yaml
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies.common import CONTEXT_SCHEMA, config

CATALOG = Path(__file__).resolve().parent.parent / "runbooks" / "catalog.yaml"


def catalogued_runbooks() -> set[str]:
    return {entry["name"] for entry in yaml.safe_load(CATALOG.read_text())["runbooks"]}


def _alerts_link_runbooks(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "kubernetes:monitoring.coreos.com/v1:PrometheusRule":
        return
    runbooks = catalogued_runbooks()
    base = config(args).get("runbookBaseUrl")
    for group in (args.props.get("spec") or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" not in rule:
                continue
            where = f"PrometheusRule {args.name}, alert {rule['alert']}"
            if not (rule.get("labels") or {}).get("severity"):
                report(f"{where} has no severity label; add labels.severity (page or ticket).")
            url = (rule.get("annotations") or {}).get("runbook_url")
            if not url:
                report(f"{where} has no runbook_url annotation; link the runbook on-call should follow.")
                continue
            prefix, _, page = url.rstrip("/").rpartition("/")
            if not page.endswith(".md") or page.removesuffix(".md") not in runbooks or (base and prefix != base.rstrip("/")):
                report(f"{where}: runbook_url {url} names no catalogued runbook page; use "
                       f"{(base or '<runbookBaseUrl>').rstrip('/')}/<{'|'.join(sorted(runbooks))}>.md.")


POLICIES = [
    ResourceValidationPolicy(name="alert-runbooks",
                             description="Every alert has a severity and a runbook_url naming a catalogued runbook.",
                             validate=_alerts_link_runbooks, config_schema=CONTEXT_SCHEMA),
]
