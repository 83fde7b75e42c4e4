"""The promote runbook end to end on the drill world (MLflow's store, a Kubernetes API, Prometheus, moto): a step
promotion, the final one, refusals that change nothing, a stale --expect-weight, and a SIGKILL at every step boundary
followed by --resume, after which every effect happened once. staging's chat-small canary (version 4) starts at 20%."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from components import config as stack_config
from llmops.drill.rollback_drill import NAMESPACE, REGISTERED_MODEL, SERVICE
from runbooks.engine import InputError, PreconditionFailed
from runbooks.engine.runner import RunOptions
from runbooks.launch import launch
from runbooks.promote import PROMOTE, CanaryWeightMoved
from tests.runbooks.conftest import run_cli

STEPS = [step.name for step in PROMOTE.steps]
CANARY = f"{SERVICE}-canary"
FINAL_RELEASE = ("4", "chat-2026-11-15")  # the canary's version and prompt in the staging stack file


def promote(weight, expect=None, **options):
    return launch("promote", "drill", {"service": SERVICE, "weight": str(weight),
                                       "expect_weight": None if expect is None else str(expect)},
                  RunOptions(**options), lambda message: None)


def stack_model(drill):
    return next(m for m in stack_config.load_file(drill.stack_file).models if m.name == SERVICE)


def nothing_changed(drill):
    return (drill.registry.alias_writes(), drill.deployment_patches(), drill.route_patches(), drill.run_ids(),
            drill.route_weights()) == (0, 0, 0, [], {SERVICE: 80, CANARY: 20})


def test_a_step_promotion_moves_the_route_and_pins_the_weight_as_the_controller(drill, monkeypatch):
    monkeypatch.setenv("LLMOPS_OPERATOR", "release-controller")
    result = promote(25, expect=20, yes=True)
    assert result.status == "succeeded", result.error
    assert drill.route_weights() == {SERVICE: 75, CANARY: 25}
    model = stack_model(drill)
    assert (model.release.version, model.canary.weight) == ("3", 25)
    assert "# 20% of chat-small traffic tries version 4" in drill.stack_file.read_text()  # comments survive
    assert (drill.registry.alias_writes(), drill.deployment_patches(), drill.route_patches()) == (0, 0, 1)

    evidence = drill.evidence(result.run_id)
    changed = {s["step"] for s in evidence["steps"] if s["outcome"] == "changed"}
    assert [s["step"] for s in evidence["steps"]] == STEPS and changed == {"set-route-weights", "pin-promotion"}
    assert evidence["signals"]["before"]["canary_weight"] == 20 and evidence["signals"]["after"]["canary_weight"] == 25
    # The actor is the engine's operator: the approval, the evidence, every audit record and the notifications.
    assert evidence["operator"] == evidence["approval"]["by"] == "release-controller"
    assert {r["operator"] for r in drill.audit_records(result.run_id)} == {"release-controller"}
    assert len(drill.audit_records(result.run_id)) == len(STEPS)
    assert {n["operator"] for n in drill.notifications()} == {"release-controller"}
    assert drill.lock_items() == []


def test_a_second_promotion_from_the_same_look_is_refused_and_changes_nothing(drill):
    """Two controllers (or a controller and a person) decide on the same reading: only the first promotes."""
    assert promote(25, expect=20, yes=True).status == "succeeded"
    again = run_cli(drill, "promote", "--env", "drill", "--service", SERVICE, "--weight", "25", "--expect-weight", "20",
                    "--yes")
    assert again.returncode == 2, again.stderr
    assert "--expect-weight 20: the canary of chat-small takes 25% of its traffic now; the world changed" in again.stderr
    with pytest.raises(CanaryWeightMoved):
        promote(50, expect=20, yes=True)
    with pytest.raises(InputError, match="--weight 25: the canary of chat-small takes 25% already"):
        promote(25, yes=True)
    assert drill.route_patches() == 1 and len(drill.run_ids()) == 1 and stack_model(drill).canary.weight == 25


def test_the_final_promotion_makes_the_canary_release_the_stable_one(drill):
    drill.serve_healthy_canary()
    result = promote(100, expect=20, yes=True)
    assert result.status == "succeeded", result.error
    assert drill.production_alias() == "4" and drill.serving_version() == "4"
    deployment = drill.k8s.apps.read_namespaced_deployment(SERVICE, NAMESPACE)
    assert deployment.metadata.annotations["llmops.io/release-id"] == drill.expected_release_id(*FINAL_RELEASE)
    assert deployment.metadata.labels["llmops.io/version"] == "4"
    assert drill.route_weights() == {SERVICE: 100, CANARY: 0}
    model = stack_model(drill)  # the canary is the stable release now: the next `pulumi up` keeps it, removes the canary
    assert ((model.release.version, model.release.prompt_version), model.canary) == (FINAL_RELEASE, None)
    assert (drill.registry.alias_writes(), drill.deployment_patches(), drill.route_patches()) == (1, 1, 1)

    evidence = drill.evidence(result.run_id)
    by_step = {s["step"]: s for s in evidence["steps"]}
    assert by_step["move-production-alias"]["before"] == {"production": "3"}
    assert by_step["move-production-alias"]["after"] == {"production": "4"}
    assert by_step["patch-deployment"]["after"]["version"] == "4"
    assert by_step["pin-promotion"]["after"] == {"release": {"version": "4", "prompt_version": "chat-2026-11-15",
                                                             "feature_view": "user_context:v2", "retrieval_index": "docs"},
                                                 "canary_weight": None}
    after = evidence["signals"]["after"]
    assert after["availability_error_ratio"] <= after["availability_budget"] and after["page_alerts"] == []
    assert sorted(n["event"] for n in drill.notifications()) == ["finished", "started"]


def test_a_dry_run_shows_the_plan_changes_nothing_and_its_hash_approves_it(drill):
    final = promote(100, dry_run=True)
    changes = {step.name: step.change for step in final.plan.steps}
    assert changes["move-production-alias"].after == {"production": "4"}
    assert changes["patch-deployment"].after == {"release": drill.expected_release_id(*FINAL_RELEASE), "version": "4"}
    assert changes["set-route-weights"].after == {SERVICE: 100, CANARY: 0}
    assert changes["pin-promotion"].after["release"]["version"] == "4"
    step = promote(25, dry_run=True)
    changes = {s.name: s.change for s in step.plan.steps}
    assert [name for name, change in changes.items() if change] == ["set-route-weights", "pin-promotion"]
    assert nothing_changed(drill) and final.run_id is None and step.run_id is None
    assert promote(25, approve=step.plan.hash).status == "succeeded"
    assert drill.route_weights() == {SERVICE: 75, CANARY: 25}


@pytest.mark.parametrize("args,message", [
    (["--weight", "30"], "--weight 30: not a step of chat-small's rollout policy in Pulumi.staging.yaml; allowed: "
                         "5, 10, 25, 50, 100"),
    (["--weight", "10"], "--weight 10: the canary of chat-small takes 20% already; a promotion only raises its weight"),
    (["--weight", "25", "--expect-weight", "10"], "--expect-weight 10: the canary of chat-small takes 20% of its traffic"),
    (["--weight", "0"], "--weight '0': expected a canary weight from 1 to 100 (percent of requests)"),
    (["--weight", "101"], "--weight '101': expected a canary weight from 1 to 100"),
    (["--weight", "25", "--expect-weight", "x"], "--expect-weight 'x': expected a canary weight from 0 to 100"),
    ([], "--weight is required"),
])
def test_bad_input_is_refused_and_changes_nothing(drill, args, message):
    refused = run_cli(drill, "promote", "--env", "drill", "--service", SERVICE, *args, "--yes")
    assert refused.returncode == 2, refused.stderr
    assert message in refused.stderr
    assert nothing_changed(drill)


def test_a_rolled_back_canary_is_never_promoted(drill):
    marker = {"run_id": "rollback-canary-20261122T031500Z-a1b2c3", "reason": "error_rate 4x stable", "canary": True}
    drill.registry.client.set_model_version_tag(REGISTERED_MODEL, "4", "llmops.rolled_back", json.dumps(marker))
    for options in ({"dry_run": True}, {"yes": True}):
        with pytest.raises(InputError, match=r"version 4 \(the canary's\) is marked rolled back \(tag llmops.rolled_back: "
                                             r"run rollback-canary-20261122T031500Z-a1b2c3, error_rate 4x stable\)"):
            promote(50, **options)
    assert nothing_changed(drill)


def test_without_a_canary_in_the_stack_file_there_is_nothing_to_promote(drill):
    document = yaml.safe_load(drill.stack_file.read_text())
    next(m for m in document["config"]["llmops:models"] if m["name"] == SERVICE).pop("canary")
    drill.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(InputError, match="chat-small has no canary in Pulumi.staging.yaml; there is nothing to promote"):
        promote(25, yes=True)
    assert nothing_changed(drill)


def test_a_canary_deployment_running_another_release_than_the_stack_names_is_not_promoted(drill):
    canary = copy.deepcopy(drill.deployment)
    canary["metadata"] = {**canary["metadata"], "name": CANARY, "resourceVersion": None,
                          "annotations": {**canary["metadata"]["annotations"], "llmops.io/release-id": "0123456789abcdef"}}
    drill.k8s.apps.create_namespaced_deployment(NAMESPACE, canary)
    try:
        with pytest.raises(PreconditionFailed, match=f"Deployment {NAMESPACE}/{CANARY} runs release 0123456789abcdef, "
                                                     "not the canary release the stack file names"):
            promote(100, dry_run=True)
    finally:
        drill.k8s.apps.delete_namespaced_deployment(CANARY, NAMESPACE)
    assert nothing_changed(drill)


ACTING = {100: STEPS, 25: ["set-route-weights", "pin-promotion"]}  # the steps that act, at each kind of step


@pytest.mark.parametrize("weight,step,phase", [(weight, step, phase) for weight, steps in ACTING.items()
                                               for step in steps for phase in ("acted", "done")])
def test_killed_at_a_step_boundary_the_promotion_resumes_and_every_effect_happens_once(drill, weight, step, phase):
    drill.serve_healthy_canary()
    crashed = run_cli(drill, "promote", "--env", "drill", "--service", SERVICE, "--weight", str(weight),
                      "--expect-weight", "20", "--yes", extra_env={"LLMOPS_CRASH_AT": f"{step}:{phase}"})
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL, no cleanup of any kind
    (run_id,) = drill.run_ids()
    resumed = run_cli(drill, "promote", "--env", "drill", "--resume", run_id, "--output", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    final = weight == 100
    assert drill.registry.alias_writes() == int(final), "the production alias moved more than once"
    assert drill.deployment_patches() == int(final) and drill.route_patches() == 1
    assert drill.route_weights() == ({SERVICE: 100, CANARY: 0} if final else {SERVICE: 75, CANARY: 25})
    model = stack_model(drill)
    assert (model.release.version, model.canary.weight if model.canary else None) == (("4", None) if final else ("3", 25))
    if final:
        assert drill.production_alias() == "4" and drill.serving_version() == "4"
    assert sorted(n["event"] for n in drill.notifications()) == ["finished", "started"]
    assert [r["step"] for r in drill.audit_records(run_id)] == STEPS
    assert drill.evidence(run_id)["resumed"] == 1
    assert drill.lock_items() == []
