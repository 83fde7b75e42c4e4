"""Stack-level policies: prod spans two regions with health-checked failover, and data stays resident."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs, StackValidationPolicy

from policies.common import CONTEXT_SCHEMA, config


def region_of(resource: Any) -> str | None:
    """Where a regional AWS resource lives: its own `region` input, else its provider's."""
    if not resource.resource_type.startswith("aws:"):
        return None
    if resource.props.get("region"):
        return str(resource.props["region"])
    provider = resource.provider
    if provider is not None and provider.props.get("region"):
        return str(provider.props["region"])
    return None


GLOBAL_TYPES = ("aws:iam/", "aws:route53/", "aws:cloudfront/", "aws:organizations/")


def _regions(args: StackValidationArgs) -> set[str]:
    return {str(r.props["region"]) for r in args.resources
            if r.resource_type == "pulumi:providers:aws" and r.props.get("region")}


def _prod_failover(args: StackValidationArgs, report: ReportViolation) -> None:
    if config(args).get("environment") != "prod":
        return
    regions = _regions(args)
    if len(regions) < 2:
        report(f"prod runs in {len(regions)} region(s) ({', '.join(sorted(regions)) or 'none'}); add a secondary "
               "region so a regional outage is not a product outage.", None)
    checks = [r for r in args.resources if r.resource_type == "aws:route53/healthCheck:HealthCheck"]
    records = [r for r in args.resources if r.resource_type == "aws:route53/record:Record"
               and (r.props.get("failoverRoutingPolicies") or r.props.get("latencyRoutingPolicies"))]
    for region in sorted(regions):
        has_check = any(region in str((c.props.get("tags") or {}).get("llmops.io/region", "")) for c in checks)
        has_record = any(r.props.get("setIdentifier") == region and r.props.get("healthCheckId") for r in records)
        if not has_check:
            report(f"region {region} has no Route53 health check (tagged llmops.io/region={region}); add one on its "
                   "inference endpoint.", None)
        if not has_record:
            report(f"region {region} has no failover or latency record (setIdentifier {region}) evaluating a health "
                   "check; add one so DNS can route around it.", None)


def _residency(args: StackValidationArgs, report: ReportViolation) -> None:
    allowed = config(args).get("allowedRegions")
    if not allowed:
        return
    for resource in args.resources:
        if resource.resource_type.startswith(GLOBAL_TYPES):
            continue
        region = region_of(resource)
        if region is not None and region not in allowed:
            report(f"{resource.resource_type.rsplit(':', 1)[-1]} {resource.name} is in {region}, outside the "
                   f"allowed regions ({', '.join(allowed)}); data must stay in them.", resource.urn)


POLICIES = [
    StackValidationPolicy(name="prod-multi-region-failover",
                          description="prod has at least two regions, each with a health check and a failover record.",
                          validate=_prod_failover, config_schema=CONTEXT_SCHEMA),
    StackValidationPolicy(name="data-residency",
                          description="Every regional resource is in a region the environment allows.",
                          validate=_residency, config_schema=CONTEXT_SCHEMA),
]
