"""The rollback runbook end to end against real backends: MLflow's store, a Kubernetes API (kmock),
Prometheus scraping a vLLM-like exporter, moto's DynamoDB/SNS/SQS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from components import config as stack_config
from llmops.drill.rollback_drill import REGISTERED_MODEL, SERVICE
from runbooks.engine import ApprovalRequired, InputError, LockHeld, WorldChanged
from runbooks.engine.runner import RunOptions
from runbooks.launch import launch
from tests.cli_fork import as_a_terminal_starts_it
from tests.runbooks.conftest import ROOT, run_cli

STEPS = ["mark-rolled-back", "move-production-alias", "patch-deployment", "zero-canary-weight", "wait-for-rollout", "verify-slo",
         "pin-known-good"]


def rollback(drill, *, to=None, force=False, **options):
    return launch("rollback", "drill", {"service": SERVICE, "to": to, "force": "yes" if force else None},
                  RunOptions(**options), lambda message: None)


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
    assert (f'llmops_runbook_steps_total{{environment="drill",instance="",job="llmops_runbook",outcome="changed",'
            f'run_id="{result.run_id}",runbook="rollback",step="patch-deployment"}} 1') in pushed


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
    changes = {step.name: step.change for step in result.plan.steps}
    assert changes["move-production-alias"].after == {"production": "1"}


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
    result = rollback(drill, yes=True, to="4", force=True)  # version 4 (newer, unvalidated) is as bad as 3
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
    # Through the CLI, as on-call runs it (in this test process, MLflow's first HTTP call loads Feast's plugin, whose
    # source parsing can hit CPython 3.11's AST depth bug beside the world's threads: python/cpython#106905).
    stopped = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes")
    assert stopped.returncode == 1 and "unreachable" in stopped.stderr and "nothing was changed" in stopped.stderr, \
        stopped.stderr
    assert drill.deployment_patches() == 0 and drill.run_ids() == []


def version_tags(drill, version):
    return drill.registry.client.get_model_version(REGISTERED_MODEL, version).tags


def test_a_finished_rollback_is_never_followed_by_a_roll_forward(drill):
    first = rollback(drill, yes=True)
    assert first.status == "succeeded" and drill.production_alias() == "2"
    marker = json.loads(version_tags(drill, "3")["llmops.rolled_back"])
    assert marker["run_id"] == first.run_id and marker["to"] == "2"
    # Run again (or plan again): version 3 is known bad, and version 2 is where the last rollback left it.
    for options in ({"dry_run": True}, {"yes": True}):
        with pytest.raises(InputError, match=rf"version 2 serves because rollback run {first.run_id} rolled back to it "
                                             r"from version 3; there is nothing newer to roll back from"):
            rollback(drill, **options)
    assert drill.production_alias() == "2" and drill.serving_version() == "2"


def test_a_fresh_run_after_an_interrupted_rollback_finishes_it_instead_of_rolling_forward(drill):
    crashed = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes",
                      extra_env={"LLMOPS_CRASH_AT": "move-production-alias:done"})
    assert crashed.returncode == -9
    assert drill.production_alias() == "2" and drill.serving_version() == "3"  # half done
    assert len(drill.lock_items()) == 1  # the crashed run still holds the lock
    drill.clear_locks()  # ... until it expires
    planned = rollback(drill, dry_run=True)
    changes = {step.name: step.change for step in planned.plan.steps}
    assert changes["move-production-alias"] is None  # already on 2: not back to 3
    assert changes["patch-deployment"].after["version"] == "2"
    assert rollback(drill, yes=True).status == "succeeded"
    assert drill.production_alias() == "2" and drill.serving_version() == "2"


@pytest.mark.parametrize("to,message", [
    ("3", "--to 3: version 3 is what serves already"),
    ("4", "--to 4: refused: it is newer than version 3 serving now (that is a roll-forward); it is not tagged "
          "validation_status=passed. Add --force"),
])
def test_to_must_be_older_than_what_serves(drill, to, message):
    result = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--to", to, "--yes")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert drill.registry.alias_writes() == 0 and drill.run_ids() == []


def test_to_an_unvalidated_or_rolled_back_version_needs_force(drill):
    drill.registry.client.delete_model_version_tag(REGISTERED_MODEL, "1", "validation_status")
    try:
        refused = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--to", "1", "--dry-run")
        assert refused.returncode == 2 and "--to 1: refused: it is not tagged validation_status=passed" in refused.stderr
        forced = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--to", "1", "--force",
                         "--dry-run")
        assert forced.returncode == 0, forced.stderr
        assert "from version 3 to 1" in forced.stdout
    finally:
        drill.registry.client.set_model_version_tag(REGISTERED_MODEL, "1", "validation_status", "passed")


def wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def journal_events(drill, run_id):
    path = drill.workdir / "state" / run_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_the_run_cleanly_journaled_and_resumable(drill, sig):
    drill.controller.hold()  # the rollout stays in progress: the run waits in wait-for-rollout
    env = {**os.environ, **drill.environment()}
    env.pop("LLMOPS_CRASH_AT", None)
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "runbook", "run", "rollback", "--env", "drill",
                                "--service", SERVICE, "--yes"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=as_a_terminal_starts_it)
    try:
        run_id = wait_for(lambda: next(iter(drill.run_ids()), None), "the run to start")
        wait_for(lambda: any(e["event"] == "step_started" and e["step"] == "wait-for-rollout"
                             for e in journal_events(drill, run_id)), "the run to wait for the rollout")
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        drill.controller.release()
    assert process.returncode == 128 + sig, err
    assert "Traceback" not in err and "Traceback" not in out
    command = f"llmops runbook run rollback --env drill --resume {run_id}"
    assert f"run {run_id} started; if it stops, resume it with: {command}" in err  # told at the start
    assert f"interrupted by {signal.Signals(sig).name} during step wait-for-rollout" in err and command in err
    stopped = [e for e in journal_events(drill, run_id) if e["event"] == "run_interrupted"]
    assert stopped and stopped[0]["step"] == "wait-for-rollout"
    # The lock stays with the interrupted run, and a fresh run is refused, pointed at --resume (here already by
    # the registry: version 2 serves because this run rolled back to it).
    assert [item["run_id"]["S"] for item in drill.lock_items()] == [run_id]
    fresh = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes")
    assert fresh.returncode == 2 and f"If that run did not finish, resume it: {command}" in fresh.stderr
    resumed = run_cli(drill, "rollback", "--env", "drill", "--resume", run_id, "--output", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert drill.registry.alias_writes() == 1 and drill.deployment_patches() == 1
    assert drill.production_alias() == "2" and drill.serving_version() == "2" and drill.lock_items() == []


def test_missing_kubernetes_credentials_are_unreachable_and_nothing_changes(drill, tmp_path):
    drill.write_targets(kubernetes={"context": "llmops-prod-use1", "kubeconfig": str(tmp_path / "no-kubeconfig")})
    result = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes")
    assert result.returncode == 1, result.stderr
    assert "Kubernetes API unreachable: context 'llmops-prod-use1'" in result.stderr and "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert drill.registry.alias_writes() == 0 and drill.run_ids() == []


def test_missing_aws_credentials_are_unreachable_and_nothing_changes(drill, tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    result = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes", extra_env=env)
    assert result.returncode == 1, result.stderr
    assert "AWS unreachable" in result.stderr and "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert drill.registry.alias_writes() == 0 and drill.run_ids() == []


@pytest.mark.parametrize("where", ["audit", "evidence"])
def test_an_unwritable_record_location_is_refused_before_the_alias_moves(drill, where):
    blocker = drill.workdir / "blocker"
    blocker.write_text("a file where a directory should be: unwritable, even for root")
    drill.write_targets(**{where: {"uri": str(blocker / where)}})
    result = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes")
    assert result.returncode == 1, result.stderr
    assert "is not writable" in result.stderr and "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert drill.registry.alias_writes() == 0 and drill.deployment_patches() == 0 and drill.lock_items() == []
