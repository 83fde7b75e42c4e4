"""A readable summary of a plan: per region (top-level component), per component, resources by type."""

from __future__ import annotations

from collections import Counter

from llmops.offline.plan import Plan, PlannedResource


def _short(type_: str) -> str:
    if type_.startswith("pulumi:providers:"):
        return f"Provider({type_.rsplit(':', 1)[-1]})"
    return type_.rsplit(":", 1)[-1]


def summarize(plan: Plan) -> str:
    by_urn = {r.urn: r for r in plan.resources}
    top = [r for r in plan.resources if r.parent not in by_urn]
    lines = [f"stack {plan.stack} ({plan.project}): {len(plan.resources)} resources"]
    for root in sorted(top, key=lambda r: (r.custom, r.name)):
        if root.custom:
            lines.append(f"  {root.name}  {root.type}")
            continue
        lines.append(f"  {root.name}  ({root.type})")
        for component in sorted(plan.children(root.urn), key=lambda r: (r.custom, r.type, r.name)):
            lines.append(_component_line(plan, component))
    failover = plan.outputs.get("failover")
    if isinstance(failover, dict) and failover.get("standby"):
        for region, standby in sorted(failover["standby"].items()):
            seconds = int(standby["expectedRecoverySeconds"])
            lines.append(f"  failover ({failover.get('routing')}): {region} is a {standby['mode']} standby; expected "
                         f"recovery {seconds // 60} min {seconds % 60} s")
    lines += _shadow_lines(plan)
    if plan.outputs:
        lines.append("  outputs: " + ", ".join(sorted(plan.outputs)))
    return "\n".join(lines)


def _component_line(plan: Plan, component: PlannedResource) -> str:
    if component.custom:
        return f"    {_short(component.type):<20} {component.name}"
    types = Counter(_short(r.type) for r in plan.descendants(component.urn) if r.custom)
    detail = ", ".join(f"{name} {count}" for name, count in sorted(types.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"    {_short(component.type):<20} {component.name}: {sum(types.values())} ({detail})"


def _shadow_lines(plan: Plan) -> list[str]:
    """What each shadow costs: the GPUs it holds for answers nobody sees (from the regions' `shadows` outputs)."""
    regions = plan.outputs.get("regions")
    lines = []
    for region, outputs in sorted(regions.items()) if isinstance(regions, dict) else []:
        shadows = outputs.get("shadows") if isinstance(outputs, dict) else None
        for model, shadow in sorted(shadows.items()) if isinstance(shadows, dict) else []:
            lines.append(f"  shadow: {model} in {region} mirrors {int(shadow['samplePercent'])}% of its requests to "
                         f"version {shadow['version']} (release {shadow['releaseId']}): {int(shadow['replicas'])} "
                         f"replica(s), {int(shadow['gpus'])} GPU(s) of pool {shadow['pool']}")
    return lines
