"""Roll back a canary: all traffic to the stable release, the canary's version marked bad, the stack pinned.

What the release controller runs when a canary breaches a `rollback` limit (and what on-call runs by hand when a
canary misbehaves): production is not touched -- the stable release keeps serving, as it did. The steps mark the
canary's registry version rolled back (tag `llmops.rolled_back`, with the run's id and the reason), so neither a
rollback nor a promotion ever chooses it again; set the canary's weight on the serving route to 0 (a JSON patch
guarded by tests of the backends the plan saw); verify on Prometheus that the canary takes no more traffic and the
stable release is within its SLOs; and pin canary weight 0 in the stack file so the next `pulumi up` keeps it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from components import config as stack_config
from components.manifests.alert_rules import availability_error_ratio
from components.manifests.route import canary_backend, canary_weight, route_weights, weights_patch, weights_with_canary
from runbooks.engine import (
    Change,
    InputError,
    Param,
    PreconditionFailed,
    Preparing,
    Runbook,
    RunContext,
    Step,
    StepFailed,
    TransientError,
    WorldChanged,
    always_run,
)
from runbooks.engine.records import operator
from runbooks.ports import Cluster, Registry, Signals
from runbooks.rollback import ROLLED_BACK_TAG
from runbooks.serving_release import percent
from runbooks.stack_file import canary_weight_edit, edit_stack_file
from runbooks.targets import Targets, require


@dataclass
class Backends:
    targets: Targets
    registry: Registry
    cluster: Cluster
    signals: Signals


@dataclass
class Facts:
    service: str
    registered_model: str
    namespace: str
    canary_version: str
    stable_version: str
    reason: str
    route_weights: dict[str, int]  # backend -> weight, as the plan saw them
    availability: float  # the SLO objective, percent


Ctx = RunContext[Facts, Backends]


def connect(targets: Targets) -> Backends:
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster
    from runbooks.adapters.mlflow_registry import MlflowRegistry
    from runbooks.adapters.prometheus import Prometheus

    require(targets, "rollback-canary", "registry", "kubernetes", "prometheus")
    assert targets.registry and targets.kubernetes and targets.prometheus
    k8s = targets.kubernetes
    return Backends(targets=targets, registry=MlflowRegistry(targets.registry.tracking_uri),
                    cluster=KubernetesCluster(host=k8s.host, context=k8s.context, kubeconfig=k8s.kubeconfig,
                                                      in_cluster=k8s.in_cluster),
                    signals=Prometheus(targets.prometheus.url))


def prepare(ctx: Preparing[Backends]) -> Facts:
    service = ctx.params["service"]
    targets = ctx.backends.targets
    try:
        stack = stack_config.load_file(targets.stack_path())
    except stack_config.ConfigError as error:
        raise InputError(str(error)) from None
    models = {m.name: m for m in stack.models}
    if service not in models:
        raise InputError(f"--service {service!r}: no such model in {ctx.environment}; models: {', '.join(models)}")
    model = models[service]
    if model.canary is None:
        raise InputError(f"{service} has no canary in {targets.stack_path().name}; nothing to roll back "
                         "(to roll back the stable release, run the rollback runbook)")
    assert targets.kubernetes is not None
    namespace, b = targets.kubernetes.namespace, ctx.backends
    try:
        route = b.cluster.route(namespace, service)
        if route is None:
            raise InputError(f"no HTTPRoute {namespace}/{service} in {ctx.environment}'s cluster")
        b.signals.vector("vector(1)")  # Prometheus must answer before anything changes
        b.registry.version(model.registry.model, model.canary.release.version)
    except TransientError as error:
        raise PreconditionFailed(f"{error}; nothing was changed") from None
    return Facts(service=service, registered_model=model.registry.model, namespace=namespace,
                 canary_version=model.canary.release.version, stable_version=model.release.version,
                 reason=ctx.params.get("reason") or "rolled back by hand", route_weights=route_weights(route),
                 availability=model.slo.availability.objective)


def _marker(ctx: Ctx) -> dict[str, Any] | None:
    f = ctx.facts
    found = ctx.backends.registry.version(f.registered_model, f.canary_version)
    raw = (found or {}).get("tags", {}).get(ROLLED_BACK_TAG)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return {"run_id": "?"}
    return value if isinstance(value, dict) else None


def _marked(ctx: Ctx) -> bool:
    return _marker(ctx) is not None


def _mark(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    marker = {"run_id": ctx.run_id, "to": f.stable_version, "at": time.time(), "by": operator(), "canary": True,
              "reason": f.reason}
    ctx.backends.registry.set_version_tag(f.registered_model, f.canary_version, ROLLED_BACK_TAG,
                                          json.dumps(marker, sort_keys=True))
    return {"version": f.canary_version}


def _route(ctx: Ctx) -> dict[str, Any] | None:
    return ctx.backends.cluster.route(ctx.facts.namespace, ctx.facts.service)


def _canary_zero(ctx: Ctx) -> bool:
    route = _route(ctx)
    return route is None or canary_weight(route) == 0


def _zero(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    route = _route(ctx)
    if route is None or list(route_weights(route)) != list(f.route_weights):
        raise WorldChanged(f"the route of {f.service} no longer has the backends the plan saw "
                           f"({', '.join(f.route_weights)}); re-plan")
    ctx.backends.cluster.patch_route(f.namespace, f.service,
                                     weights_patch(route, weights_with_canary(f.route_weights, f.service, 0)))
    return {"weights": route_weights(_route(ctx) or {}), "zeroed_at": time.time()}


def _canary_requests(ctx: Ctx, window: str) -> float | None:
    f = ctx.facts
    return ctx.backends.signals.scalar(
        f'sum(increase(http_requests_total{{namespace="{f.namespace}",service="{canary_backend(f.service)}",'
        f'handler=~"/v1/.+"}}[{window}]))')


def _verify(ctx: Ctx) -> dict[str, Any]:
    """Until a full window after the route change shows the canary taking no traffic and the stable release
    within its availability SLO."""
    f = ctx.facts
    verification = ctx.backends.targets.verification
    window = f"{verification.window_seconds}s"
    zeroed = float(ctx.outputs.get("zero-canary-weight", {}).get("zeroed_at", time.time()))
    deadline = min(ctx.deadline, time.monotonic() + verification.timeout_seconds)
    budget = round(1 - f.availability / 100, 6)
    while True:
        canary = _canary_requests(ctx, window) or 0.0
        errors = ctx.backends.signals.scalar(availability_error_ratio(f.service, f.namespace, window))
        current = {"window": window, "canary_requests": round(canary, 3), "availability_error_ratio": errors,
                   "availability_budget": budget}
        if time.time() >= zeroed + verification.window_seconds and canary < 1 and errors is not None \
                and errors <= budget:
            return {"verified_at": time.time(), **current}
        if time.monotonic() + verification.poll_seconds > deadline:
            raise StepFailed(f"{f.service}: the canary still takes traffic or the stable release is outside its SLO: "
                             f"{json.dumps(current)}")
        ctx.progress(f"  verify-stable: canary requests {canary:.0f} in {window}, errors {percent(errors)} "
                     f"(limit {percent(budget)})")
        time.sleep(verification.poll_seconds)


def _pinned(ctx: Ctx) -> bool:
    stack = stack_config.load_file(ctx.backends.targets.stack_path())
    model = next(m for m in stack.models if m.name == ctx.facts.service)
    return model.canary is None or model.canary.weight == 0


def _pin(ctx: Ctx) -> dict[str, Any]:
    path = ctx.backends.targets.stack_path()
    edit_stack_file(path, canary_weight_edit(ctx.facts.service, 0))
    return {"file": str(path)}


def signals(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    window = f"{ctx.backends.targets.verification.window_seconds}s"
    try:
        return {"canary_requests": _canary_requests(ctx, window),
                "availability_error_ratio": ctx.backends.signals.scalar(
                    availability_error_ratio(f.service, f.namespace, window))}
    except (TransientError, PreconditionFailed) as error:
        return {"error": str(error)}


def _reason(value: str) -> str:
    if not re.fullmatch(r"[ -~]{1,300}", value):
        raise ValueError("expected one line of printable ASCII, at most 300 characters")
    return value


ROLLBACK_CANARY: Runbook[Facts, Backends] = Runbook(
    name="rollback-canary",
    title="Roll back a canary",
    summary=__doc__.split("\n\n")[1].replace("\n", " "),
    params=(
        Param("service", "the model whose canary to roll back, as named in the stack config (e.g. chat)"),
        Param("reason", "why, in one line (recorded on the version's marker and in the audit trail)", parse=_reason,
              required=False),
    ),
    facts_type=Facts,
    prepare=prepare,
    lock_target=lambda ctx: f"serving/{ctx.facts.service}",  # the same lock as rollback and promote
    lock_scope="<env>/serving/<service>",
    signals=signals,
    connect=connect,
    steps=(
        Step("mark-canary-rolled-back", f"Mark the canary's version in the registry (tag `{ROLLED_BACK_TAG}` with "
             "this run's id and the reason), so no rollback or promotion chooses it again.",
             plan=lambda ctx: None if _marked(ctx) else Change(
                 f"mark {ctx.facts.registered_model} version {ctx.facts.canary_version} rolled back",
                 None, {"reason": ctx.facts.reason}),
             check=_marked, action=_mark, verify=_marked, timeout_seconds=60),
        Step("zero-canary-weight", "Send all traffic to the stable release: the canary's weight on the route to 0.",
             plan=lambda ctx: None if _canary_zero(ctx) else Change(
                 f"route all of {ctx.facts.service}'s traffic to the stable release (canary weight -> 0)",
                 ctx.facts.route_weights, weights_with_canary(ctx.facts.route_weights, ctx.facts.service, 0)),
             check=_canary_zero, action=_zero, verify=_canary_zero, timeout_seconds=60),
        Step("verify-stable", "Verify on Prometheus, over a full window after the route change, that the canary takes "
             "no traffic and the stable release is within its availability SLO.",
             plan=lambda ctx: Change("verify on Prometheus: no canary traffic, stable within its SLO"),
             check=always_run, action=_verify, verify=lambda ctx: True, timeout_seconds=3600, retries=0,
             needs_approval=False),
        Step("pin-canary-weight", "Pin canary weight 0 in the environment's stack file (a change to commit), so the "
             "next `pulumi up` does not send traffic to the canary again.",
             plan=lambda ctx: None if _pinned(ctx) else Change(
                 f"pin {ctx.facts.service}'s canary weight 0 in {ctx.backends.targets.stack_path().name}"),
             check=_pinned, action=_pin, verify=_pinned, timeout_seconds=60),
    ),
)
