"""Alerting policy: every alert carries a severity and a runbook_url naming a catalogued runbook page.

The catalogue's names come from the policy config (`runbooks`), as the environment and the runbook base URL do:
the pack runs from a copy of this folder alone, where the project's runbooks/catalog.yaml is not.
"""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies.common import CONTEXT_SCHEMA, config
from policies.runbook_links import alert_problems


def _alerts_link_runbooks(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "kubernetes:monitoring.coreos.com/v1:PrometheusRule":
        return
    settings = config(args)
    for group in (args.props.get("spec") or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule:
                # No names (or an empty list, which the schema refuses): check the link's shape only.
                for problem in alert_problems(group.get("name", "?"), rule, runbooks=settings.get("runbooks") or None,
                                              runbook_base_url=settings.get("runbookBaseUrl")):
                    report(f"PrometheusRule {args.name}, {problem}", None)


POLICIES = [
    ResourceValidationPolicy(name="alert-runbooks",
                             description="Every alert has a severity and a runbook_url naming a catalogued runbook.",
                             validate=_alerts_link_runbooks, config_schema=CONTEXT_SCHEMA),
]
