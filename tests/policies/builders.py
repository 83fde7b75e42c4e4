"""Minimal plans for policy tests: a few resources with the links the engine would record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from llmops.offline.plan import Plan, PlannedResource

STACK = "test"


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::policy-tests::{type_}::{name}"


@dataclass
class PlanBuilder:
    resources: list[PlannedResource] = field(default_factory=list)

    def add(self, type_: str, name: str, inputs: dict, *, provider: str = "", depends: dict[str, str] | None = None,
            custom: bool = True) -> str:
        """Add a resource; `depends` maps an input name to the name of the resource its value came from."""
        by_name = {r.name: r.urn for r in self.resources}
        property_dependencies = {key: (by_name[other],) for key, other in (depends or {}).items()}
        resource = PlannedResource(urn=urn(type_, name), type=type_, name=name, parent="", provider=provider,
                                   inputs=inputs, dependencies=tuple(u for (u,) in property_dependencies.values()),
                                   custom=custom, property_dependencies=property_dependencies)
        self.resources.append(resource)
        return resource.urn

    def aws_provider(self, name: str, region: str) -> str:
        return self.add("pulumi:providers:aws", name, {"region": region})

    def k8s_provider(self, name: str, cluster: str) -> str:
        return self.add("pulumi:providers:kubernetes", name, {"kubeconfig": json.dumps({"current-context": cluster})})

    def plan(self) -> Plan:
        return Plan(stack=STACK, project="policy-tests", resources=list(self.resources))
