"""Check rendered Kubernetes objects with real schemas, for the cluster's Kubernetes version.

Grafana dashboards (our ConfigMaps) also have every panel query checked against the metric catalog.
Built-in kinds go through kubernetes-validate in strict mode (an unknown field is an
error, as the API server's strict field validation makes it). kubernetes-validate
knows nothing of custom resources, so those are checked against the JSON schemas of
their published CRDs, kept in `crds/` (see its README for provenance).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

from llmops.offline.plan import Plan, PlannedResource

CRD_SCHEMAS = Path(__file__).parent / "crds"

# kubernetes-validate re-reads its 5 MB definitions file and rebuilds a validator for every object
# it checks (2.6 s for our three stacks). We use its schema files and its version and path rules,
# but build one validator per (Kubernetes version, kind, apiVersion) and keep it, and read each
# version's definitions once.


@cache
def _builtin_validator(kubernetes_version: str, kind: str, api_version: str) -> jsonschema.Validator | None:
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    wanted = utils.major_minor(kubernetes_version)
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= wanted][-1]
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", kubernetes_version)
    except FileNotFoundError:
        return None
    registry = _definitions(directory, kubernetes_version) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@cache
def _definitions(directory: str, kubernetes_version: str) -> Any:
    from kubernetes_validate import utils
    from referencing import Resource

    return Resource.from_contents(utils.schema_contents(f"{directory}/_definitions.json", kubernetes_version))


@dataclass(frozen=True)
class Violation:
    object: str  # kind/namespace/name
    message: str

    def __str__(self) -> str:
        return f"{self.object}: {self.message}"


def describe(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{obj.get('kind')}/{where}{metadata.get('name')}"


@cache
def _crd_validator(group: str, kind: str, version: str) -> jsonschema.Draft7Validator | None:
    path = CRD_SCHEMAS / group / f"{kind.lower()}_{version}.json"
    if not path.is_file():
        return None
    return jsonschema.Draft7Validator(json.loads(path.read_text()))


def _is_custom(group: str) -> bool:
    # Gateway API lives under networking.k8s.io yet is a CRD; other *.k8s.io groups are built in.
    return bool(group) and ((CRD_SCHEMAS / group).is_dir() or ("." in group and not group.endswith(".k8s.io")))


def validate_object(obj: dict[str, Any], kubernetes_version: str) -> list[Violation]:
    """Every schema violation of one object; an empty list means it is valid."""
    name = describe(obj)
    api_version = obj.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    if _is_custom(group):
        validator = _crd_validator(group, obj.get("kind", ""), version)
        if validator is None:
            return [Violation(name, f"no schema for custom resource {api_version} {obj.get('kind')} in {CRD_SCHEMAS}")]
        return [Violation(name, f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
                for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]
    validator = _builtin_validator(kubernetes_version, obj.get("kind", ""), api_version)
    if validator is None:
        return [Violation(name, f"no Kubernetes {kubernetes_version} schema for {api_version} {obj.get('kind')}")]
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return []
    return [Violation(name, f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}")]


def kubernetes_version_for(plan: Plan, resource: PlannedResource, default: str) -> str:
    """The version of the EKS cluster the object's provider is built from (its kubeconfig depends on it)."""
    providers = {r.urn: r for r in plan.resources if r.type == "pulumi:providers:kubernetes"}
    clusters = {r.urn: r for r in plan.by_type("aws:eks/cluster:Cluster")}
    provider = providers.get(resource.provider)
    for dependency in provider.dependencies if provider else ():
        if dependency in clusters and clusters[dependency].inputs.get("version"):
            return str(clusters[dependency].inputs["version"])
    return default


def dashboard_violations(obj: dict[str, Any]) -> list[Violation]:
    """A Grafana dashboard's ConfigMap: every panel query must parse and read only catalogued metrics (the check the
    alert rules pass, components/manifests/metrics.yaml), each finding naming the dashboard and the panel."""
    from components.manifests.dashboards import dashboard_problems, dashboards_in

    boards = [board for _, _, board in dashboards_in(obj)]
    if not boards:
        return []
    return [Violation(describe(obj), problem) for problem in dashboard_problems(boards, known_metrics=_catalog())]


@cache
def _catalog() -> frozenset[str]:
    from components.manifests.rule_lint import metric_catalog

    return frozenset(metric_catalog())


def validate_plan(plan: Plan, default_version: str | None = None) -> list[Violation]:
    """Every violation in every Kubernetes object of the plan, and every dashboard query that reads an unknown metric."""
    default = default_version or kubernetes_validate.latest_version()
    violations = []
    for resource in sorted(plan.kubernetes_objects(), key=lambda r: r.urn):
        version = kubernetes_version_for(plan, resource, default)
        violations.extend(validate_object(resource.inputs, version))
        violations.extend(dashboard_violations(resource.inputs))
    return violations
