"""Promote a canary one step: more of a model's traffic to it, or (at 100%) its release becomes the stable one.

One promotion step of a canary release -- what the release controller runs when a canary has earned it, and what
on-call runs by hand. Below 100% the steps set the serving route's weights (a JSON patch guarded by tests of the
backends the plan saw) and pin the canary's weight in the stack file. At 100% they patch the stable Deployment to the
canary's release, move the registry's `production` alias to its version, wait for the rollout, route all traffic to
the stable Deployment (canary weight 0), verify the SLOs on Prometheus, and pin the release in the stack file (the
canary section removed: it is the stable release now) so the next `pulumi up` keeps it. `--expect-weight` refuses if
the canary's weight is not what the caller saw, so two controllers, or a controller and a person, never promote twice.

The runbook reads its backends through the ports (Registry, Cluster, Signals); the adapters in runbooks/adapters
implement them. It shares the stable Deployment's patch, the rollout wait and the SLO verification with rollback.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from components import config as stack_config
from components.config.releases import release_of, retrieval_fingerprints
from components.manifests.route import (
    TOTAL_WEIGHT,
    RouteError,
    canary_backend,
    canary_weight,
    route_weights,
    weights_patch,
    weights_with_canary,
)
from components.manifests.vllm import RELEASE_PARTS_ANNOTATION
from components.release import ReleaseParts
from runbooks.engine import (
    Change,
    InputError,
    Param,
    PreconditionFailed,
    Preparing,
    Runbook,
    RunContext,
    Step,
    TransientError,
    WorldChanged,
)
from runbooks.serving_release import (
    PRODUCTION,
    ROLLED_BACK_TAG,
    ServingBackends,
    connect_serving,
    deployed_release,
    image_with,
    patch_to_release,
    rolled_back,
    rollout_complete,
    slo_readings,
    verify_slo,
    wait_for_rollout,
)
from runbooks.stack_file import canary_removal_edit, canary_weight_edit, edit_stack_file, release_edit
from runbooks.targets import Targets

Backends = ServingBackends
PINNED = ("version", "prompt_version", "feature_view", "retrieval_index")  # a release section's fields, as pinned


class CanaryWeightMoved(InputError):
    """`--expect-weight` is not the canary's weight on the route: the world changed since the caller looked (another
    promotion, a rollback, a person). Nothing was changed (exit 2); look again before deciding."""


@dataclass
class Facts:
    """What prepare found, journaled at approval: a resumed run acts on these, not on a fresh look."""
    service: str
    registered_model: str
    namespace: str
    weight: int  # the canary weight this run sets; 100: the canary's release becomes the stable one
    current_weight: int  # the canary's weight on the route when the plan was made
    route_weights: dict[str, int]  # backend name -> weight on the serving route, as the plan saw them
    canary_version: str
    canary_release: dict[str, str | None]  # the stack's canary release section (PINNED fields)
    # The final step only (weight 100), else None: the release the stable Deployment is patched to.
    promoted_release: dict[str, Any] | None  # ReleaseParts as a dict
    promoted_release_id: str | None
    promoted_image: str | None
    production_version: str | None  # the production alias when the plan was made
    deployed_release_id: str | None  # the stable Deployment's release when the plan was made
    deployed_version: str | None
    slo: dict[str, float]  # availability, ttft_objective (percent), ttft_threshold (seconds)

    @property
    def final(self) -> bool:
        return self.weight == TOTAL_WEIGHT


Ctx = RunContext[Facts, Backends]


def connect(targets: Targets) -> Backends:
    return connect_serving(targets, "promote")


# --- prepare: read the world, refuse what must not be promoted --------------------------------------------------

def prepare(ctx: Preparing[Backends]) -> Facts:
    service, weight, expected = ctx.params["service"], ctx.params["weight"], ctx.params.get("expect_weight")
    targets = ctx.backends.targets
    path = targets.stack_path()
    try:
        stack = stack_config.load_file(path)
    except stack_config.ConfigError as error:
        raise InputError(str(error)) from None
    models = {m.name: m for m in stack.models}
    if service not in models:
        raise InputError(f"--service {service!r}: no such model in {ctx.environment}; models: {', '.join(models)}")
    model = models[service]
    if model.canary is None:
        raise InputError(f"{service} has no canary in {path.name}; there is nothing to promote")
    canary = model.canary
    if model.rollout is not None and weight not in model.rollout.steps:
        raise InputError(f"--weight {weight}: not a step of {service}'s rollout policy in {path.name}; allowed: "
                         f"{', '.join(map(str, model.rollout.steps))}")
    assert targets.kubernetes is not None
    registered, namespace, b = model.registry.model, targets.kubernetes.namespace, ctx.backends
    try:
        route = b.cluster.route(namespace, service)
        if route is None:
            raise InputError(f"no HTTPRoute {namespace}/{service} in {ctx.environment}'s cluster")
        weights = route_weights(route)
        if canary_backend(service) not in weights:
            raise InputError(f"HTTPRoute {namespace}/{service} has no backend {canary_backend(service)} "
                             f"(backends: {', '.join(weights)}): a canary serves once its weight in {path.name} is "
                             "above 0 and applied (`pulumi up`)")
        current = canary_weight(route)
        if expected is not None and expected != current:
            raise CanaryWeightMoved(f"--expect-weight {expected}: the canary of {service} takes {current}% of its "
                                    "traffic now; the world changed since that weight was seen (another promotion, "
                                    "a rollback or a person). Nothing was changed: look again before promoting")
        if weight <= current:
            raise InputError(f"--weight {weight}: the canary of {service} takes {current}% already; a promotion "
                             "only raises its weight. If a promote run stopped before it finished, resume it "
                             f"(llmops runbook run promote --env {ctx.environment} --resume RUN_ID)")
        version = b.registry.version(registered, canary.release.version)
        if version is None:
            raise InputError(f"{registered} has no version {canary.release.version} (the canary's) in the model "
                             "registry")
        marker = rolled_back(version)
        if marker is not None:
            raise InputError(f"{registered} version {canary.release.version} (the canary's) is marked rolled back "
                             f"(tag {ROLLED_BACK_TAG}: run {marker.get('run_id')}"
                             + (f", {marker['reason']}" if marker.get("reason") else "")
                             + "); a rolled-back release is never promoted")
        promoted = _final_facts(ctx, model, stack.retrieval, weight) if weight == TOTAL_WEIGHT else {}
    except TransientError as error:
        raise PreconditionFailed(f"{error}; nothing was changed") from None
    except RouteError as error:
        raise InputError(str(error)) from None
    return Facts(
        service=service, registered_model=registered, namespace=namespace, weight=weight, current_weight=current,
        route_weights=weights, canary_version=canary.release.version,
        canary_release={field: getattr(canary.release, field) for field in PINNED},
        promoted_release=promoted.get("release"), promoted_release_id=promoted.get("release_id"),
        promoted_image=promoted.get("image"), production_version=promoted.get("production_version"),
        deployed_release_id=promoted.get("deployed_release_id"), deployed_version=promoted.get("deployed_version"),
        slo={"availability": model.slo.availability.objective, "ttft_objective": model.slo.time_to_first_token.objective,
             "ttft_threshold": model.slo.time_to_first_token.threshold_seconds})


def _final_facts(ctx: Preparing[Backends], model: stack_config.Model, retrieval: stack_config.Retrieval,
                 weight: int) -> dict[str, Any]:
    """For the last step: the canary's release as the stack renders it (so the next `pulumi up` keeps what this run
    patches in), checked against the canary Deployment, and what serves now."""
    assert model.canary is not None and ctx.backends.targets.kubernetes is not None
    b, canary, service = ctx.backends, model.canary.release, model.name
    registered, namespace = model.registry.model, ctx.backends.targets.kubernetes.namespace
    dropped = [field for field in ("feature_view", "retrieval_index")
               if getattr(canary, field) is None and getattr(model.release, field) is not None]
    if dropped:
        raise InputError(f"{service}: the canary's release has no {' or '.join(dropped)} where the stable release has "
                         "one; the stack file pin cannot remove a key. Promote it by hand: edit the release, then "
                         "`pulumi up`")
    if not b.registry.artifacts_present(registered, canary.version):
        raise PreconditionFailed(f"{registered} version {canary.version} (the canary's) has no artifacts in the model "
                                 "registry; it cannot be served")
    deployment = b.cluster.deployment(namespace, service)
    if deployment is None:
        raise InputError(f"no Deployment {namespace}/{service} in {ctx.environment}'s cluster")
    parts = release_of(model, canary, retrieval_fingerprints(retrieval))
    canary_deployment = b.cluster.deployment(namespace, canary_backend(service))
    running = deployed_release(canary_deployment)
    if canary_deployment is not None and running != parts.release_id:
        raise PreconditionFailed(f"Deployment {namespace}/{canary_backend(service)} runs release {running}, not the "
                                 f"canary release the stack file names ({parts.release_id}): what was judged is not "
                                 "what would be promoted. Apply the stack (`pulumi up`) and let the canary be judged "
                                 "again")
    production = b.registry.alias_version(registered, PRODUCTION)
    b.signals.vector("vector(1)")  # Prometheus must answer before anything changes: the last step verifies on it
    deployed_parts = json.loads((deployment["metadata"].get("annotations") or {}).get(RELEASE_PARTS_ANNOTATION) or "{}")
    return {"release": parts.to_dict(), "release_id": parts.release_id,
            "image": image_with(deployment, parts.image_digest), "production_version": production,
            "deployed_release_id": deployed_release(deployment),
            "deployed_version": deployed_parts.get("model_version")}


# --- steps ----------------------------------------------------------------------------------------------------

def _alias_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if not f.final or f.production_version == f.canary_version:
        return None
    return Change(f"move alias {PRODUCTION} of {f.registered_model} from version {f.production_version} to "
                  f"{f.canary_version} (the canary's)", {PRODUCTION: f.production_version}, {PRODUCTION: f.canary_version})


def _alias_in_place(ctx: Ctx) -> bool:
    f = ctx.facts
    return not f.final or ctx.backends.registry.alias_version(f.registered_model, PRODUCTION) == f.canary_version


def _move_alias(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    ctx.backends.registry.set_alias(f.registered_model, PRODUCTION, f.canary_version)
    return {"alias": PRODUCTION, "version": f.canary_version}


def _deployment_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if not f.final or f.deployed_release_id == f.promoted_release_id:
        return None
    return Change(f"point Deployment {f.namespace}/{f.service} at the canary's release {f.promoted_release_id} "
                  f"(version {f.deployed_version} -> {f.canary_version})",
                  {"release": f.deployed_release_id, "version": f.deployed_version},
                  {"release": f.promoted_release_id, "version": f.canary_version})


def _on_promoted_release(ctx: Ctx) -> bool:
    f = ctx.facts
    return not f.final or deployed_release(ctx.backends.cluster.deployment(f.namespace, f.service)) == f.promoted_release_id


def _patch_deployment(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    assert f.promoted_release is not None and f.promoted_image is not None
    parts = ReleaseParts(**{**f.promoted_release, "serving_args": tuple(f.promoted_release["serving_args"])})
    return patch_to_release(ctx.backends.cluster, f.namespace, f.service, parts, f.promoted_image)


def _rollout_complete(ctx: Ctx) -> bool:
    f = ctx.facts
    return not f.final or rollout_complete(ctx.backends.cluster, f.namespace, f.service, str(f.promoted_release_id))


def _wait_rollout(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    return wait_for_rollout(ctx.backends.cluster, f.namespace, f.service, str(f.promoted_release_id),
                            timing=ctx.backends.targets.rollout, deadline=ctx.deadline, progress=ctx.progress,
                            what="the promoted release")


def _target_weights(ctx: Ctx) -> dict[str, int]:
    """Below 100: the canary at the weight, the stable the rest. At 100: all to the stable, which runs the release."""
    f = ctx.facts
    return weights_with_canary(f.route_weights, f.service, 0 if f.final else f.weight)


def _route_plan(ctx: Ctx) -> Change | None:
    f, target = ctx.facts, _target_weights(ctx)
    if target == f.route_weights:
        return None
    summary = (f"route all of {f.service}'s traffic to the stable Deployment, which now runs the canary's release "
               "(canary weight -> 0)") if f.final else \
        f"route {f.weight}% of {f.service}'s traffic to the canary (was {f.current_weight}%)"
    return Change(summary, f.route_weights, target)


def _live_route(ctx: Ctx) -> dict[str, Any] | None:
    return ctx.backends.cluster.route(ctx.facts.namespace, ctx.facts.service)


def _route_set(ctx: Ctx) -> bool:
    route = _live_route(ctx)
    return route is not None and route_weights(route) == _target_weights(ctx)


def _set_route(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    route = _live_route(ctx)
    if route is None or list(route_weights(route)) != list(f.route_weights):
        raise WorldChanged(f"the route of {f.service} no longer has the backends the plan saw "
                           f"({', '.join(f.route_weights)}); re-plan")
    if canary_weight(route) != f.current_weight:
        raise WorldChanged(f"the canary of {f.service} takes {canary_weight(route)}% now, not the {f.current_weight}% "
                           "the plan saw; re-plan")
    # Each weight is patched behind a `test` of its backend's name: a reordered route fails the patch, whole.
    ctx.backends.cluster.patch_route(f.namespace, f.service, weights_patch(route, _target_weights(ctx)))
    return {"weights": route_weights(_live_route(ctx) or {}), "set_at": time.time()}


def _verify_plan(ctx: Ctx) -> Change | None:
    if not ctx.facts.final:
        return None
    return Change("verify the SLOs on Prometheus over a full window after the rollout and the route change")


def _verify(ctx: Ctx) -> dict[str, Any]:
    """Until a full window after the last change (the rollout's end or the route's, whichever came later; now, for a
    change made before a crash) is within the SLOs and nothing pages."""
    f, verification = ctx.facts, ctx.backends.targets.verification
    now = time.time()
    changed = max(float(ctx.outputs.get(step, {}).get(key, now))
                  for step, key in (("wait-for-rollout", "completed_at"), ("set-route-weights", "set_at")))
    return verify_slo(ctx.backends.signals, f.service, f.namespace, f.slo, verification=verification,
                      ready_at=changed + verification.window_seconds, deadline=ctx.deadline, progress=ctx.progress,
                      failure=f"{f.service} is not within its SLOs on the promoted release")


def _stack_model(ctx: Ctx) -> stack_config.Model:
    stack = stack_config.load_file(ctx.backends.targets.stack_path())
    return next(m for m in stack.models if m.name == ctx.facts.service)


def _pinned(ctx: Ctx) -> bool:
    f, model = ctx.facts, _stack_model(ctx)
    if not f.final:
        return model.canary is not None and model.canary.weight == f.weight
    return {field: getattr(model.release, field) for field in PINNED} == f.canary_release and model.canary is None


def _pin_plan(ctx: Ctx) -> Change | None:
    if _pinned(ctx):
        return None
    f, model = ctx.facts, _stack_model(ctx)
    name = ctx.backends.targets.stack_path().name
    weight = model.canary.weight if model.canary else None
    if not f.final:
        return Change(f"pin {f.service}'s canary weight {f.weight} in {name}, so the next `pulumi up` keeps it",
                      {"canary_weight": weight}, {"canary_weight": f.weight})
    return Change(f"pin {f.service}'s release to the canary's (version {f.canary_version}) and remove its canary in "
                  f"{name}, so the next `pulumi up` keeps the promoted release (and removes the canary's objects)",
                  {"release": {field: getattr(model.release, field) for field in PINNED}, "canary_weight": weight},
                  {"release": f.canary_release, "canary_weight": None})


def _pin(ctx: Ctx) -> dict[str, Any]:
    """Edit the stack file in place (comments kept) and validate it, in one atomic write; a change ready to commit."""
    f, path = ctx.facts, ctx.backends.targets.stack_path()
    if not f.final:
        edit_stack_file(path, canary_weight_edit(f.service, f.weight))
        return {"file": str(path), "canary_weight": f.weight}
    c = f.canary_release
    # A canary may not equal the stable release: the canary, now the stable release, goes (weight 0 and more).
    edit_stack_file(path, release_edit(f.service, str(c["version"]), c["prompt_version"], c["feature_view"],
                                       c["retrieval_index"]),
                    canary_removal_edit(f.service))
    return {"file": str(path), "version": f.canary_version, "canary": None}


def signals(ctx: Ctx) -> dict[str, Any]:
    """The canary's weight on the route and the stable release's SLO readings, before and after."""
    f = ctx.facts
    try:
        route = _live_route(ctx)
        return {"canary_weight": canary_weight(route) if route is not None else None,
                **slo_readings(ctx.backends.signals, f.service, f.namespace, f.slo,
                               ctx.backends.targets.verification.window_seconds)}
    except (TransientError, PreconditionFailed, RouteError) as error:
        return {"error": str(error)}


def _percent(low: int) -> Any:
    def parse(value: str) -> int:
        if not re.fullmatch(r"\d{1,3}", value) or not low <= int(value) <= TOTAL_WEIGHT:
            raise ValueError(f"expected a canary weight from {low} to {TOTAL_WEIGHT} (percent of requests)")
        return int(value)
    return parse


PROMOTE: Runbook[Facts, Backends] = Runbook(
    name="promote",
    title="Promote a canary one step",
    summary=__doc__.split("\n\n")[1].replace("\n", " "),
    params=(
        Param("service", "the model whose canary to promote, as named in the stack config (e.g. chat)"),
        Param("weight", "the canary weight to set, percent: higher than the current one and, where the model has a "
              "rollout policy, one of its steps; 100 makes the canary's release the stable one", parse=_percent(1)),
        Param("expect_weight", "the canary weight the caller saw; if the route says otherwise, refuse (exit 2) and "
              "change nothing", parse=_percent(0), required=False),
    ),
    facts_type=Facts,
    prepare=prepare,
    lock_target=lambda ctx: f"serving/{ctx.facts.service}",  # the same lock as rollback and rollback-canary
    lock_scope="<env>/serving/<service>",
    signals=signals,
    connect=connect,
    steps=(
        Step("patch-deployment",
             "At 100% only: patch the stable Deployment to the canary's release as the stack renders it (JSON patch, "
             "guarded by a test of the release the plan saw): weights, args, image, release labels and annotations.",
             plan=_deployment_plan, check=_on_promoted_release, action=_patch_deployment, verify=_on_promoted_release,
             timeout_seconds=60),
        Step("move-production-alias", "At 100% only: move the registry's `production` alias to the canary's version, "
             "which the stable Deployment now runs.",
             plan=_alias_plan, check=_alias_in_place, action=_move_alias, verify=_alias_in_place, timeout_seconds=60),
        Step("wait-for-rollout", "At 100% only: wait until every replica of the stable Deployment runs the canary's "
             "release.",
             plan=lambda ctx: Change("wait until every replica of the stable Deployment runs the canary's release")
             if ctx.facts.final else None,
             check=_rollout_complete, action=_wait_rollout, verify=_rollout_complete, timeout_seconds=3600,
             retries=0, needs_approval=False),
        Step("set-route-weights", "Set the serving route's weights (JSON patch, guarded by tests of the backends the "
             "plan saw): below 100%, the canary at the new weight and the stable the rest; at 100%, all traffic to the "
             "stable Deployment, which now runs the canary's release (canary weight 0).",
             plan=_route_plan, check=_route_set, action=_set_route, verify=_route_set, timeout_seconds=60),
        Step("verify-slo",
             "At 100% only: verify on Prometheus that the stable release's error ratio and slow first tokens are "
             "within the SLO over a full window after the rollout and the route change, and that no page-level alert "
             "for the model is firing.",
             plan=_verify_plan, check=lambda ctx: not ctx.facts.final, action=_verify, verify=lambda ctx: True,
             timeout_seconds=3600, retries=0, needs_approval=False),
        Step("pin-promotion", "Pin the promotion in the environment's stack file (a change to commit), so the next "
             "`pulumi up` keeps it: below 100%, the canary's weight; at 100%, the canary's release as the stable "
             "release, and no canary (the next `pulumi up` removes the canary's objects).",
             plan=_pin_plan, check=_pinned, action=_pin, verify=_pinned, timeout_seconds=60),
    ),
)
