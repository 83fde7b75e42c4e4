"""Roll back a model release: registry alias, serving Deployment, canary weight, stack config.

A bad release -- weights, prompt, feature view or retrieval config -- is reverted to the last
known good one: `--to VERSION`, else the `last-known-good` alias, else the newest version tagged
`validation_status=passed` that is older than what serves and was never rolled back from. The steps
first mark the release being rolled back from in the registry (tag `llmops.rolled_back`, with the
run's id), so no later rollback chooses it as known-good; then move the `production` alias back, patch
the stable Deployment to the known-good release (a JSON patch guarded by a `test` of the release it
saw), set any canary weight to 0, wait for the rollout, verify the SLOs on Prometheus, and pin the
known-good release in the environment's stack file so the next `pulumi up` does not bring the bad
one back.

The runbook reads its backends through the ports below (Registry, Cluster, Signals); the adapters in
runbooks/adapters implement them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from components import config as stack_config
from components.manifests.route import (
    canary_takes_traffic,
    canary_weight,
    route_weights,
    stable_backend,
    weights_patch,
    weights_with_canary,
)
from components.manifests.vllm import RELEASE_ANNOTATION, RELEASE_PARTS_ANNOTATION, model_dir
from components.release import RELEASE_TAG, VALIDATED_TAG, VALIDATED_VALUE, ReleaseParts
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
    always_run,
)
from runbooks.engine.records import operator
from runbooks.params import switch
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
from runbooks.stack_file import canary_weight_edit, edit_stack_file, release_edit
from runbooks.targets import Targets

LAST_KNOWN_GOOD = "last-known-good"
Backends = ServingBackends


@dataclass
class Facts:
    """What prepare found, journaled at approval: a resumed run acts on these, not on a fresh look."""
    service: str
    registered_model: str
    namespace: str
    rolled_back_from: list[str]  # what serves now besides the target (marked bad by the first step)
    marked: dict[str, Any]  # version -> its rollback marker before this run (None: unmarked)
    current_version: str | None  # the production alias
    target_version: str
    target_release: dict[str, Any]  # ReleaseParts as a dict
    target_release_id: str
    target_image: str
    deployed_release_id: str | None
    deployed_version: str | None
    route_weights: dict[str, int]  # backend name -> weight on the serving route, as the plan saw them
    slo: dict[str, float]  # availability, ttft_objective (percent), ttft_threshold (seconds)


Ctx = RunContext[Facts, Backends]


def connect(targets: Targets) -> Backends:
    return connect_serving(targets, "rollback")


# --- prepare: read the world, choose the known-good release ----------------------------------------------

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
    assert targets.kubernetes is not None
    registered, namespace = model.registry.model, targets.kubernetes.namespace
    b = ctx.backends
    try:
        if not b.registry.model_exists(registered):
            raise InputError(f"model registry has no registered model {registered!r} (service {service})")
        current = b.registry.alias_version(registered, PRODUCTION)
        deployment = b.cluster.deployment(namespace, service)
        if deployment is None:
            raise InputError(f"no Deployment {namespace}/{service} in {ctx.environment}'s cluster")
        annotations = deployment["metadata"].get("annotations") or {}
        deployed = json.loads(annotations.get(RELEASE_PARTS_ANNOTATION, "{}"))
        if not deployed:
            raise PreconditionFailed(f"Deployment {namespace}/{service} carries no {RELEASE_PARTS_ANNOTATION} "
                                     "annotation; it was not deployed by this stack")
        versions = {v["version"]: v for v in b.registry.versions(registered)}
        serving = {v for v in (current, deployed.get("model_version")) if v}
        target = _choose_target(ctx, registered, serving, versions)
        found = b.registry.version(registered, target)
        if found is None:
            raise InputError(f"--to {target}: {registered} has no version {target} in the model registry")
        if not b.registry.artifacts_present(registered, target):
            raise PreconditionFailed(f"{registered} version {target} has no artifacts at {found['source']}; "
                                     "it cannot be served. Choose another version with --to.")
        route = b.cluster.route(namespace, service)
        b.signals.vector("vector(1)")  # Prometheus must answer before anything changes
    except TransientError as error:
        raise PreconditionFailed(f"{error}; nothing was changed") from None
    parts = _target_release(found, deployed, registered, target)
    leaving = sorted(serving - {target}, key=int)
    return Facts(
        service=service, registered_model=registered, namespace=namespace,
        rolled_back_from=leaving, marked={v: rolled_back(versions.get(v)) for v in leaving},
        current_version=current, target_version=target, target_release=parts.to_dict(),
        target_release_id=parts.release_id, target_image=image_with(deployment, parts.image_digest),
        deployed_release_id=annotations.get(RELEASE_ANNOTATION), deployed_version=deployed.get("model_version"),
        route_weights=route_weights(route) if route is not None else {},
        slo={"availability": model.slo.availability.objective, "ttft_objective": model.slo.time_to_first_token.objective,
             "ttft_threshold": model.slo.time_to_first_token.threshold_seconds})


def _choose_target(ctx: Preparing[Backends], registered: str, serving: set[str],
                   versions: dict[str, dict[str, Any]]) -> str:
    """The known-good version: never one a rollback moved away from, never newer than what serves, and never a
    further step back when what serves was itself put there by a rollback (that needs an explicit --to)."""
    force = bool(ctx.params.get("force"))
    requested = ctx.params.get("to")
    validated = {n for n, v in versions.items() if v["tags"].get(VALIDATED_TAG) == VALIDATED_VALUE}
    bad = {n: m for n, v in versions.items() if (m := rolled_back(v)) is not None}
    if requested:
        target = str(requested)
        if serving == {target}:
            raise InputError(f"--to {target}: version {target} is what serves already (alias {PRODUCTION} and the "
                             "Deployment); there is nothing to roll back")
        if force or target not in versions:
            return target  # an unknown version is refused by the caller, naming it
        newer = sorted((v for v in serving - {target} if int(v) < int(target)), key=int)
        problems = []
        if newer:
            problems.append(f"it is newer than version {', '.join(newer)} serving now (that is a roll-forward)")
        if target not in validated:
            problems.append("it is not tagged validation_status=passed")
        if target in bad:
            problems.append(f"rollback run {bad[target].get('run_id')} rolled back from it")
        if problems:
            raise InputError(f"--to {target}: refused: {'; '.join(problems)}. Add --force to roll to it anyway")
        return target
    if len(serving) == 1:
        (only,) = serving
        put_there = sorted((m.get("run_id", "?"), n) for n, m in bad.items() if str(m.get("to")) == only)
        if put_there:
            run, source = put_there[-1]
            raise InputError(
                f"{registered} version {only} serves because rollback run {run} rolled back to it from version {source}; "
                f"there is nothing newer to roll back from. If that run did not finish, resume it: llmops runbook run "
                f"rollback --env {ctx.environment} --resume {run}. If version {only} is bad too, choose an older "
                "version with --to")
    floor = min((int(v) for v in serving), default=None)
    top = max((int(v) for v in serving), default=None)

    def eligible(number: str) -> bool:
        # older than every serving version, or (completing an interrupted rollback) the alias when the Deployment
        # still runs a newer one
        below = floor is None or int(number) < floor or (number in serving and top is not None and int(number) < top)
        return below and number not in bad and number in versions

    known_good = ctx.backends.registry.alias_version(registered, LAST_KNOWN_GOOD)
    if known_good and eligible(known_good):
        return known_good
    candidates = [n for n in validated if eligible(n)]
    if not candidates:
        raise InputError(f"no known-good version of {registered}: no {LAST_KNOWN_GOOD} alias and no version tagged "
                         f"validation_status=passed that is older than what serves ({', '.join(sorted(serving)) or 'none'}) "
                         f"and was never rolled back from; give --to VERSION")
    return max(candidates, key=int)


def _target_release(version: dict[str, Any], deployed: dict[str, Any], registered: str, target: str) -> ReleaseParts:
    """The known-good release: its manifest in the registry (tag llmops.release), else the deployed
    release with the weights swapped (a weights-only rollback)."""
    manifest = json.loads(version["tags"].get(RELEASE_TAG, "null") or "null") or {}
    base = {**deployed, **{k: v for k, v in manifest.items() if k in deployed}}
    args = list(base["serving_args"])
    args[0] = model_dir(registered, target)
    return ReleaseParts(registered_model=registered, model_version=target, image_digest=base["image_digest"],
                        serving_args=tuple(args), prompt_version=base["prompt_version"],
                        feature_view=base.get("feature_view"), retrieval_fingerprint=base.get("retrieval_fingerprint"))


# --- steps ----------------------------------------------------------------------------------------------------

def _mark_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if not f.rolled_back_from:
        return None
    versions = ", ".join(f.rolled_back_from)
    return Change(f"mark version {versions} of {f.registered_model} as rolled back from (tag {ROLLED_BACK_TAG}: "
                  f"this run, to version {f.target_version}), so no rollback chooses it as known-good again",
                  {v: (m or {}).get("run_id") for v, m in f.marked.items()},
                  {v: f"rolled back to {f.target_version} by this run" for v in f.rolled_back_from})


def _marked(ctx: Ctx) -> bool:
    f = ctx.facts
    registry = ctx.backends.registry
    return all((rolled_back(registry.version(f.registered_model, v)) or {}).get("run_id") == ctx.run_id
               for v in f.rolled_back_from)


def _mark_rolled_back(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    marker = json.dumps({"run_id": ctx.run_id, "to": f.target_version, "at": time.time(), "by": operator()},
                        sort_keys=True)
    for version in f.rolled_back_from:
        ctx.backends.registry.set_version_tag(f.registered_model, version, ROLLED_BACK_TAG, marker)
    return {"marked": f.rolled_back_from, "tag": ROLLED_BACK_TAG}


def _alias_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if f.current_version == f.target_version:
        return None
    return Change(f"move alias {PRODUCTION} of {f.registered_model} from version {f.current_version} to "
                  f"{f.target_version}", {PRODUCTION: f.current_version}, {PRODUCTION: f.target_version})


def _alias_in_place(ctx: Ctx) -> bool:
    f = ctx.facts
    return ctx.backends.registry.alias_version(f.registered_model, PRODUCTION) == f.target_version


def _move_alias(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    ctx.backends.registry.set_alias(f.registered_model, PRODUCTION, f.target_version)
    return {"alias": PRODUCTION, "version": f.target_version}


def _deployment_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if f.deployed_release_id == f.target_release_id:
        return None
    return Change(f"point Deployment {f.namespace}/{f.service} at release {f.target_release_id} "
                  f"(version {f.deployed_version} -> {f.target_version})",
                  {"release": f.deployed_release_id, "version": f.deployed_version},
                  {"release": f.target_release_id, "version": f.target_version})


def _deployed_release(ctx: Ctx) -> str | None:
    f = ctx.facts
    return deployed_release(ctx.backends.cluster.deployment(f.namespace, f.service))


def _patch_deployment(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    parts = ReleaseParts(**{**f.target_release, "serving_args": tuple(f.target_release["serving_args"])})
    return patch_to_release(ctx.backends.cluster, f.namespace, f.service, parts, f.target_image)


def _canary_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    stable = stable_backend(f.service)
    if not any(weight for name, weight in f.route_weights.items() if name != stable):
        return None
    return Change(f"route all of {f.service}'s traffic to the stable release (canary weight -> 0)", f.route_weights,
                  weights_with_canary(f.route_weights, f.service, 0))


def _live_route(ctx: Ctx) -> dict[str, Any] | None:
    return ctx.backends.cluster.route(ctx.facts.namespace, ctx.facts.service)


def _canary_zero(ctx: Ctx) -> bool:
    route = _live_route(ctx)
    return route is None or canary_weight(route) == 0


def _zero_canary(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    route = _live_route(ctx)
    if route is None or list(route_weights(route)) != list(f.route_weights):
        raise WorldChanged(f"the route of {f.service} no longer has the backends the plan saw "
                           f"({', '.join(f.route_weights)}); re-plan")
    # Each weight is patched behind a `test` of its backend's name: a reordered route fails the patch, whole.
    ctx.backends.cluster.patch_route(f.namespace, f.service,
                                     weights_patch(route, weights_with_canary(f.route_weights, f.service, 0)))
    return {"weights": route_weights(_live_route(ctx) or {})}


def _rollout_complete(ctx: Ctx) -> bool:
    f = ctx.facts
    return rollout_complete(ctx.backends.cluster, f.namespace, f.service, f.target_release_id)


def _wait_rollout(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    return wait_for_rollout(ctx.backends.cluster, f.namespace, f.service, f.target_release_id,
                            timing=ctx.backends.targets.rollout, deadline=ctx.deadline, progress=ctx.progress,
                            what="the known-good release")


def readings(ctx: Ctx, window_seconds: int) -> dict[str, Any]:
    f = ctx.facts
    return slo_readings(ctx.backends.signals, f.service, f.namespace, f.slo, window_seconds)


def _verify_slo(ctx: Ctx) -> dict[str, Any]:
    """Poll until a full window of traffic after the rollout is within the SLOs and nothing pages."""
    f, verification = ctx.facts, ctx.backends.targets.verification
    ready_at = float(ctx.outputs.get("wait-for-rollout", {}).get("completed_at", time.time())) + verification.window_seconds
    return verify_slo(ctx.backends.signals, f.service, f.namespace, f.slo, verification=verification, ready_at=ready_at,
                      deadline=ctx.deadline, progress=ctx.progress, failure=f"{f.service} is not back within its SLOs")


def _model_in_stack(ctx: Ctx) -> stack_config.Model:
    stack = stack_config.load_file(ctx.backends.targets.stack_path())
    return next(m for m in stack.models if m.name == ctx.facts.service)


def _pinned(ctx: Ctx) -> bool:
    model = _model_in_stack(ctx)
    canary_quiet = model.canary is None or not canary_takes_traffic(model.canary.weight)
    return model.release.version == ctx.facts.target_version and canary_quiet


def _pin_plan(ctx: Ctx) -> Change | None:
    if _pinned(ctx):
        return None
    f = ctx.facts
    path = ctx.backends.targets.stack_path()
    model = _model_in_stack(ctx)
    return Change(f"pin {f.service} to version {f.target_version} (canary weight 0) in {path.name}, "
                  "so the next `pulumi up` keeps the known-good release",
                  {"version": model.release.version, "canary_weight": model.canary.weight if model.canary else None},
                  {"version": f.target_version, "canary_weight": 0 if model.canary else None})


def _pin_known_good(ctx: Ctx) -> dict[str, Any]:
    """Edit the stack file in place (comments kept) and validate it; a file change ready to commit."""
    f = ctx.facts
    target = f.target_release
    path = ctx.backends.targets.stack_path()
    # One validated, atomic write: the release and the canary's weight together.
    edit_stack_file(path, release_edit(f.service, f.target_version, target.get("prompt_version") or None,
                                       target.get("feature_view") or None),
                    canary_weight_edit(f.service, 0))
    return {"file": str(path), "version": f.target_version}


def signals(ctx: Ctx) -> dict[str, Any]:
    try:
        return readings(ctx, ctx.backends.targets.verification.window_seconds)
    except (TransientError, PreconditionFailed) as error:
        return {"error": str(error)}


def _parse_version(value: str) -> str:
    if not value.isdigit() or int(value) < 1:
        raise ValueError("expected a registry version number such as 8")
    return str(int(value))


ROLLBACK: Runbook[Facts, Backends] = Runbook(
    name="rollback",
    title="Roll back a model release",
    summary=__doc__.split("\n\n")[1].replace("\n", " "),
    params=(
        Param("service", "the model to roll back, as named in the stack config (e.g. chat)"),
        Param("to", "the registry version to return to (default: last-known-good, else the newest validated version "
              "older than what serves that was never rolled back from); must be older than what serves and validated",
              parse=_parse_version, required=False),
        Param("force", "roll to --to even if it is newer than what serves, not validated, or was rolled back from",
              parse=switch, required=False, switch=True),
    ),
    facts_type=Facts,
    prepare=prepare,
    lock_target=lambda ctx: f"serving/{ctx.facts.service}",
    lock_scope="<env>/serving/<service>",
    signals=signals,
    connect=connect,
    steps=(
        Step("mark-rolled-back", "Mark the version being rolled back from in the registry (tag "
             f"`{ROLLED_BACK_TAG}` with this run's id and target), so no later rollback chooses it as known-good.",
             plan=_mark_plan, check=_marked, action=_mark_rolled_back, verify=_marked, timeout_seconds=60),
        Step("move-production-alias", "Move the registry's `production` alias back to the known-good version.",
             plan=_alias_plan, check=_alias_in_place, action=_move_alias, verify=_alias_in_place, timeout_seconds=60),
        Step("patch-deployment",
             "Patch the stable Deployment to the known-good release (JSON patch, guarded by a test of the "
             "release the plan saw): weights, args, image, release labels and annotations.",
             plan=_deployment_plan, check=lambda ctx: _deployed_release(ctx) == ctx.facts.target_release_id,
             action=_patch_deployment, verify=lambda ctx: _deployed_release(ctx) == ctx.facts.target_release_id,
             timeout_seconds=60),
        Step("zero-canary-weight", "Send all traffic to the stable Deployment: every canary backend's weight to 0.",
             plan=_canary_plan, check=_canary_zero, action=_zero_canary, verify=_canary_zero, timeout_seconds=60),
        Step("wait-for-rollout", "Wait until every replica runs the known-good release.",
             plan=lambda ctx: Change("wait until every replica runs the known-good release"),
             check=_rollout_complete, action=_wait_rollout, verify=_rollout_complete, timeout_seconds=3600,
             retries=0, needs_approval=False),
        Step("verify-slo",
             "Verify on Prometheus that the error ratio and slow first tokens are back within the SLO over a full "
             "window after the rollout, and that no page-level alert for the model is firing.",
             plan=lambda ctx: Change("verify the SLOs on Prometheus over a full window after the rollout"),
             check=always_run, action=_verify_slo, verify=lambda ctx: True, timeout_seconds=3600, retries=0,
             needs_approval=False),
        Step("pin-known-good", "Pin the known-good release in the environment's stack file (a change to commit), "
             "so the next `pulumi up` does not re-apply the bad one.",
             plan=_pin_plan, check=_pinned, action=_pin_known_good, verify=_pinned, timeout_seconds=60),
    ),
)
