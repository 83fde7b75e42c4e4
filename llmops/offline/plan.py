"""The plan: every resource a stack program declared, with its inputs, as the engine would receive them.

Inputs keep the engine's wire names (`scalingConfig`, not `scaling_config`); secret
values are replaced by a mask when they are captured, so no plan, report or file made
from one can leak them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

SECRET_MASK = "[secret]"
UNKNOWN = "[unknown]"


@dataclass(frozen=True)
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str
    provider: str  # URN of the explicit provider, "" for the default one
    inputs: dict[str, Any]
    dependencies: tuple[str, ...] = ()
    custom: bool = True
    # input name -> URNs its value came from (how a BucketVersioning is known to belong to its Bucket)
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_kubernetes_object(self) -> bool:
        """A Kubernetes object the provider would apply as-is (not a Helm chart or YAML component)."""
        return self.custom and self.type.startswith("kubernetes:") and "apiVersion" in self.inputs and "kind" in self.inputs


@dataclass
class Plan:
    stack: str
    project: str
    resources: list[PlannedResource]
    outputs: dict[str, Any] = field(default_factory=dict)

    def by_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def get(self, type_: str, name: str) -> PlannedResource:
        """The one resource with this type and logical name (registration order is not stable)."""
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(found) != 1:
            names = sorted(r.name for r in self.by_type(type_))
            raise KeyError(f"{len(found)} resources of type {type_} named {name!r}; that type has: {names}")
        return found[0]

    def children(self, parent_urn: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.parent == parent_urn]

    def descendants(self, ancestor_urn: str) -> Iterator[PlannedResource]:
        for child in self.children(ancestor_urn):
            yield child
            yield from self.descendants(child.urn)

    def kubernetes_objects(self) -> list[PlannedResource]:
        return [r for r in self.resources if r.is_kubernetes_object]

    def counts(self) -> Counter[str]:
        return Counter(r.type for r in self.resources)

    def to_json(self) -> dict[str, Any]:
        resources = sorted(self.resources, key=lambda r: r.urn)
        return {
            "stack": self.stack,
            "resources": [
                # Not dataclasses.asdict: it deep-copies every input only to serialize it (a third of a dump).
                {"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "provider": r.provider,
                 "inputs": r.inputs}
                for r in resources
            ],
            "outputs": self.outputs,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, default=str)
