"""The rollback runbook end to end against real backends: MLflow's store, a Kubernetes API (kmock),
Prometheus scraping a vLLM-like exporter, moto's DynamoDB/SNS/SQS."""

from __future__ import annotations

import threading
import time

import pytest

from components import config as stack_config
from llmops.drill.rollback_drill import REGISTERED_MODEL, SERVICE
from runbooks.engine import ApprovalRequired, InputError, LockHeld, PreconditionFailed, WorldChanged
from runbooks.engine.runner import RunOptions
from runbooks.launch import launch
from tests.runbooks.conftest import run_cli

STEPS = ["move-production-alias", "patch-deployment", "zero-canary-weight", "wait-for-rollout", "verify-slo",
         "pin-known-good"]


def rollback(drill, *, to=None, **options):
    return launch("rollback", "drill", {"service": SERVICE, "to": to}, RunOptions(**options), lambda message: None)


def test_full_rollback_reverts_everything_and_leaves_evidence(drill):
    drill.wait_until_degraded()  # so the "before" signals show the bad release
    result = rollback(drill, yes=True)
    assert result.status == "succeeded", result.error
    assert drill.production_alias() == "2" and drill.serving_version() == "2"
    deployment = drill.k8s.apps.read_namespaced_deployment(SERVICE, "serving")
    assert deployment.metadata.annotations["llmops.io/release-id"] == drill.expected_release_id()
    assert deployment.metadata.labels["llmops.io/version"] == "2"
    assert drill.route_weights() == {"chat-small": 100, "chat-small-canary": 0}
    model = stack_config.load_file(drill.stack_file).models[1]
    assert (model.release.version, model.release.prompt_version, model.canary.weight) == ("2", "chat-2026-10-01", 0)
    assert "# 20% of chat-small traffic tries version 4" in drill.stack_file.read_text()  # comments survive

    evidence = drill.evidence(result.run_id)
    assert [s["step"] for s in evidence["steps"]] == STEPS
    by_step = {s["step"]: s for s in evidence["steps"]}
    assert by_step["move-production-alias"]["before"] == {"production": "3"}
    assert by_step["move-production-alias"]["after"] == {"production": "2"}
    assert by_step["patch-deployment"]["before"]["version"] == "3" and by_step["patch-deployment"]["after"]["version"] == "2"
    assert evidence["approval"]["how"] == "--yes" and evidence["plan_hash"] == result.plan.hash
    before, after = evidence["signals"]["before"], evidence["signals"]["after"]
    assert before["availability_error_ratio"] > before["availability_budget"] and before["page_alerts"]
    assert after["availability_error_ratio"] <= after["availability_budget"]
    assert after["latency_error_ratio"] <= after["latency_budget"] and after["page_alerts"] == []

    assert len(drill.audit_records(result.run_id)) == len(STEPS)
    assert sorted(n["event"] for n in drill.notifications()) == ["finished", "started"]
    assert drill.lock_items() == []  # released
    pushed = drill.pushgateway.metrics()
    assert (f'llmops_runbook_runs_total{{environment="drill",instance="",job="llmops_runbook",outcome="succeeded",'
            f'run_id="{result.run_id}",runbook="rollback"}} 1') in pushed
    assert f'llmops_runbook_steps_total{{environment="drill",instance="",job="llmops_runbook",outcome="changed",run_id="{result.run_id}",runbook="rollback",step="patch-deployment"}} 1' in pushed


def test_dry_run_prints_the_plan_and_changes_nothing(drill):
    result = rollback(drill, dry_run=True)
    assert result.status == "planned" and result.run_id is None
    changes = {step.name: step.change for step in result.plan.steps}
    assert changes["move-production-alias"].before == {"production": "3"}
    assert changes["zero-canary-weight"].after == {"chat-small": 100, "chat-small-canary": 0}
    assert drill.registry.alias_writes() == 0 and drill.deployment_patches() == 0 and drill.route_patches() == 0
    assert drill.run_ids() == [] and drill.notifications() == [] and drill.production_alias() == "3"


def test_approval_is_bound_to_the_plan_hash(drill):
    planned = rollback(drill, dry_run=True)
    with pytest.raises(WorldChanged, match="is not the current plan"):
        rollback(drill, approve="0" * 16)
    assert drill.registry.alias_writes() == 0
    # Someone moves the alias after the plan was reviewed: the reviewed hash no longer applies.
    drill.registry.client.set_registered_model_alias(REGISTERED_MODEL, "production", "1")
    drill.registry.reset_alias_writes()
    with pytest.raises(WorldChanged):
        rollback(drill, approve=planned.plan.hash)
    assert drill.registry.alias_writes() == 0 and drill.deployment_patches() == 0
    drill.registry.client.set_registered_model_alias(REGISTERED_MODEL, "production", "3")
    drill.registry.reset_alias_writes()
    assert rollback(drill, approve=planned.plan.hash).status == "succeeded"


def test_without_a_terminal_or_yes_nothing_runs(drill):
    with pytest.raises(ApprovalRequired, match="--yes"):
        rollback(drill)
    assert drill.registry.alias_writes() == 0 and drill.run_ids() == []


def test_known_good_comes_from_the_last_known_good_alias_first(drill):
    drill.registry.client.set_registered_model_alias(REGISTERED_MODEL, "last-known-good", "1")
    result = rollback(drill, dry_run=True)
    assert result.plan.steps[0].change.after == {"production": "1"}


def test_a_second_run_on_the_same_target_refuses_and_changes_nothing(drill):
    drill.controller.delay = 3  # hold the first run in wait-for-rollout
    first = {}
    worker = threading.Thread(target=lambda: first.setdefault("result", rollback(drill, yes=True)))
    try:
        worker.start()
        deadline = time.monotonic() + 20
        while not drill.lock_items() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockHeld, match=r"drill/serving/chat-small is locked by .* \(run rollback-"):
            rollback(drill, yes=True)
        worker.join(timeout=120)
    finally:
        drill.controller.delay = drill.settings.rollout_delay_seconds
    assert first["result"].status == "succeeded"
    # Every change is the first run's: one alias write, one patch, one journal, one start notification.
    assert drill.registry.alias_writes() == 1 and drill.deployment_patches() == 1
    assert len(drill.run_ids()) == 1
    assert sorted(n["event"] for n in drill.notifications()) == ["finished", "started"]


def test_resume_refuses_when_a_completed_step_was_undone(drill):
    crashed = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes",
                      extra_env={"LLMOPS_CRASH_AT": "zero-canary-weight:done"})
    assert crashed.returncode == -9
    (run_id,) = drill.run_ids()
    drill.registry.client.set_registered_model_alias(REGISTERED_MODEL, "production", "3")  # someone undid step 1
    resumed = run_cli(drill, "rollback", "--env", "drill", "--resume", run_id)
    assert resumed.returncode == 1
    assert "move-production-alias was completed by this run but its effect no longer holds" in resumed.stderr


def test_verification_fails_when_the_target_is_no_better(drill):
    drill.write_targets(verification={"window_seconds": 2, "timeout_seconds": 10, "poll_seconds": 0.5})
    result = rollback(drill, yes=True, to="4")  # version 4 is as bad as 3
    assert result.status == "failed" and result.exit_code == 1
    assert "chat-small is not back within its SLOs" in result.error
    evidence = drill.evidence(result.run_id)
    assert evidence["outcome"] == "failed" and evidence["steps"][-1]["step"] == "verify-slo"
    assert "pin-known-good" not in [s["step"] for s in evidence["steps"]]  # the bad target is not pinned
    assert stack_config.load_file(drill.stack_file).models[1].release.version == "3"


@pytest.mark.parametrize("args,code,message", [
    (["--env", "nowhere", "--service", SERVICE], 2, "--env 'nowhere': no targets file"),
    (["--env", "drill", "--service", "chatty"], 2, "--service 'chatty': no such model in drill; models: chat, chat-small"),
    (["--env", "drill", "--service", SERVICE, "--to", "9"], 2, f"--to 9: {REGISTERED_MODEL} has no version 9"),
    (["--env", "drill", "--service", SERVICE, "--to", "v2"], 2, "--to 'v2': expected a registry version number"),
    (["--env", "drill"], 2, "--service is required"),
])
def test_bad_input_is_refused_with_a_clear_message(drill, args, code, message):
    result = run_cli(drill, "rollback", *args, "--yes")
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert drill.registry.alias_writes() == 0 and drill.deployment_patches() == 0 and drill.run_ids() == []


def test_no_known_good_version_is_refused(drill):
    for version in ("1", "2"):
        drill.registry.client.delete_model_version_tag(REGISTERED_MODEL, version, "validation_status")
    try:
        with pytest.raises(InputError, match="no known-good version of llama-3-1-8b-instruct"):
            rollback(drill, yes=True)
    finally:
        for version in ("1", "2"):
            drill.registry.client.set_model_version_tag(REGISTERED_MODEL, version, "validation_status", "passed")
    assert drill.registry.alias_writes() == 0


@pytest.mark.parametrize("backend", ["registry", "prometheus"])
def test_an_unreachable_backend_stops_before_any_change(drill, backend):
    from llmops.drill.backends import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    drill.write_targets(**({"registry": {"tracking_uri": dead}} if backend == "registry" else {"prometheus": {"url": dead}}))
    started = time.monotonic()
    with pytest.raises(PreconditionFailed, match="unreachable"):
        rollback(drill, yes=True)
    assert time.monotonic() - started < 30
    assert drill.deployment_patches() == 0 and drill.run_ids() == []
