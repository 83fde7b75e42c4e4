"""Drive the pack's own analyzer servicer with a captured plan, as the Pulumi engine would.

The engine talks to a policy pack over gRPC: `Configure` with each policy's enforcement level
and properties, `Analyze` for every resource, `AnalyzeStack` once with all of them (parents,
dependencies and property dependencies resolved). We call the same servicer methods
in-process, so enforcement levels, not-applicable results and the message format are the
pack's own. The servicer is private API of pulumi-policy (pinned in pyproject.toml).
Config merging is ours, as the CLI's is: schema defaults < the pack's levels < the given config; and
as the CLI does, each policy's settings are checked against its config schema before any policy runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi_policy.policy
from google.protobuf import json_format, struct_pb2
from jsonschema import Draft7Validator
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from llmops.offline.plan import Plan, PlannedResource
from policies.pack import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES, POLICY_NAMES

LEVELS = {level.value: level for level in EnforcementLevel}
_PROTO_LEVEL = {proto.ADVISORY: "advisory", proto.MANDATORY: "mandatory", proto.REMEDIATE: "remediate",
                proto.DISABLED: "disabled"}
PACK_VERSION = "0.1.0"


class PolicyConfigError(ValueError):
    """The policy config names an unknown policy or level, or a setting of the wrong shape; the message says which."""


@dataclass(frozen=True)
class Violation:
    stack: str
    policy: str
    enforcement: str
    urn: str
    name: str
    message: str


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(values))
    return struct


def resolve_config(pack_config: Mapping[str, Any],
                   source: str = "policy config") -> dict[str, tuple[EnforcementLevel, dict]]:
    """Each policy's enforcement level and properties from a CLI-format policy pack config:
    {"all": LEVEL, "<policy>": LEVEL | {"enforcementLevel": LEVEL, <property>: value, ...}}."""
    unknown = sorted(set(pack_config) - set(POLICY_NAMES) - {"all"})
    if unknown:
        raise PolicyConfigError(f"{source}: no policy named {', '.join(unknown)}; policies: {', '.join(POLICY_NAMES)}")

    def level(value: Any, key: str) -> EnforcementLevel:
        if value not in LEVELS:
            raise PolicyConfigError(f"{source}: {key} = {value!r}: expected one of {', '.join(LEVELS)}")
        return LEVELS[value]

    everything = pack_config.get("all")
    if everything is not None and not isinstance(everything, (str, dict)):
        raise PolicyConfigError(f"{source}: all = {everything!r}: expected a level ({', '.join(LEVELS)}) or an object")
    default_level = level(everything, "all") if isinstance(everything, str) else None
    shared = {k: v for k, v in everything.items() if k != "enforcementLevel"} if isinstance(everything, dict) else {}
    if isinstance(everything, dict) and "enforcementLevel" in everything:
        default_level = level(everything["enforcementLevel"], "all.enforcementLevel")
    resolved = {}
    for policy in POLICIES:
        entry = pack_config.get(policy.name)
        chosen = default_level or policy.enforcement_level or DEFAULT_ENFORCEMENT
        schemas = policy.config_schema.properties if policy.config_schema else {}
        properties = {key: schema["default"] for key, schema in schemas.items() if "default" in schema}
        properties.update(shared)
        if isinstance(entry, str):
            chosen = level(entry, policy.name)
        elif isinstance(entry, dict):
            if "enforcementLevel" in entry:
                chosen = level(entry["enforcementLevel"], f"{policy.name}.enforcementLevel")
            properties.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
        elif entry is not None:
            raise PolicyConfigError(f"{source}: {policy.name} = {entry!r}: expected a level ({', '.join(LEVELS)}) "
                                    "or an object")
        _check_settings(policy, properties, entry if isinstance(entry, dict) else {}, source)
        resolved[policy.name] = (chosen, properties)
    return resolved


def _check_settings(policy: Any, properties: Mapping[str, Any], own: Mapping[str, Any], source: str) -> None:
    """Refuse settings their policy's schema does not allow, naming the key where it was given (the policy's
    entry, or `all`): a policy must never run on a value of the wrong shape."""
    schema = policy.config_schema
    if schema is None:
        return
    validator = Draft7Validator({"type": "object", "properties": schema.properties, "required": schema.required or []})
    errors = sorted(validator.iter_errors(dict(properties)), key=lambda e: [str(part) for part in e.absolute_path])
    if errors:
        path = [str(part) for part in errors[0].absolute_path]
        owner = policy.name if not path or path[0] in own else "all"
        raise PolicyConfigError(f"{source}: {owner}.{'.'.join(path) or 'settings'}: {errors[0].message}")


def _options(resource: PlannedResource) -> proto.AnalyzerResourceOptions:
    return proto.AnalyzerResourceOptions(parent=resource.parent)


def _provider(plan_index: Mapping[str, PlannedResource],
              resource: PlannedResource) -> proto.AnalyzerProviderResource | None:
    provider = plan_index.get(resource.provider)
    if provider is None:
        return None
    return proto.AnalyzerProviderResource(type=provider.type, properties=_struct(provider.inputs), urn=provider.urn,
                                          name=provider.name)


# The servicer converts a resource's properties from protobuf to a dict once per policy -- 25 times per resource,
# and once more per stack policy -- which was 40% of a check. The same message converts to the same dict, so while a
# check runs each message is converted once; the servicer still deserializes that dict afresh for each policy, so
# no policy sees another's objects. Outside `check_plan`, and for any other caller of the servicer, nothing changes.
_CONVERTED: contextvars.ContextVar[dict[int, tuple[Any, Any]] | None] = contextvars.ContextVar("converted", default=None)


def _message_to_dict(message: Any, *args: Any, **kwargs: Any) -> Any:
    cache = _CONVERTED.get()
    if cache is None or args or kwargs:
        return json_format.MessageToDict(message, *args, **kwargs)
    hit = cache.get(id(message))
    if hit is not None and hit[0] is message:
        return hit[1]
    converted = json_format.MessageToDict(message)
    cache[id(message)] = (message, converted)  # holding the message keeps its id from being reused meanwhile
    return converted


_json_format = types.ModuleType("json_format")
_json_format.__dict__.update(json_format.__dict__)
_json_format.MessageToDict = _message_to_dict  # type: ignore[attr-defined]
pulumi_policy.policy.json_format = _json_format


@contextlib.contextmanager
def _converting_once() -> Iterator[None]:
    token = _CONVERTED.set({})
    try:
        yield
    finally:
        _CONVERTED.reset(token)


def check_plan(plan: Plan, pack_config: Mapping[str, Any], source: str = "policy config") -> list[Violation]:
    """Every violation the pack reports on the plan, in a stable order."""
    with _converting_once():
        return _check_plan(plan, pack_config, source)


def _check_plan(plan: Plan, pack_config: Mapping[str, Any], source: str) -> list[Violation]:
    resolved = resolve_config(pack_config, source)
    servicer = _PolicyAnalyzerServicer(PACK_NAME, PACK_VERSION, POLICIES, DEFAULT_ENFORCEMENT)
    servicer.Configure(proto.ConfigureAnalyzerRequest(policyConfig={
        name: proto.PolicyConfig(enforcementLevel=servicer._map_enforcement_level(level), properties=_struct(props))
        for name, (level, props) in resolved.items()}), None)

    index = {r.urn: r for r in plan.resources}
    diagnostics = []
    for resource in plan.resources:
        request = proto.AnalyzeRequest(type=resource.type, properties=_struct(resource.inputs), urn=resource.urn,
                                       name=resource.name, options=_options(resource))
        provider = _provider(index, resource)
        if provider is not None:
            request.provider.CopyFrom(provider)
        for diagnostic in servicer.Analyze(request, None).diagnostics:
            if not diagnostic.urn:
                diagnostic.urn = resource.urn  # the engine attributes a resource policy's finding to that resource
            diagnostics.append(diagnostic)

    stack_request = proto.AnalyzeStackRequest(resources=[
        proto.AnalyzerResource(
            type=r.type, properties=_struct(r.inputs), urn=r.urn, name=r.name, options=_options(r),
            provider=_provider(index, r), parent=r.parent, dependencies=list(r.dependencies),
            propertyDependencies={k: proto.AnalyzerPropertyDependencies(urns=list(v))
                                  for k, v in r.property_dependencies.items()})
        for r in plan.resources])
    diagnostics.extend(servicer.AnalyzeStack(stack_request, None).diagnostics)

    violations = []
    for diagnostic in diagnostics:
        message = diagnostic.message
        if message.startswith(diagnostic.description + "\n"):
            message = message[len(diagnostic.description) + 1:]
        flagged = index.get(diagnostic.urn)
        violations.append(Violation(stack=plan.stack, policy=diagnostic.policyName,
                                    enforcement=_PROTO_LEVEL[diagnostic.enforcementLevel], urn=diagnostic.urn,
                                    name=flagged.name if flagged else "", message=message))
    return sorted(violations, key=lambda v: (v.enforcement != "mandatory", v.policy, v.urn, v.message))
