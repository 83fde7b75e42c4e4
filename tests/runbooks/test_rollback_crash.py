"""The rollback runbook killed (SIGKILL) at every step boundary and resumed: every effect happens once.
In a file of its own so that, on two test workers, it runs beside the rest of the rollback suite."""

from __future__ import annotations

import json

import pytest

from llmops.drill.rollback_drill import SERVICE
from runbooks.rollback import ROLLBACK
from tests.runbooks.conftest import run_cli

STEPS = [step.name for step in ROLLBACK.steps]


@pytest.mark.parametrize("step", STEPS)
# A step's "start" leaves the journal as the step before's "done" does, plus a marker the resume treats like
# "acted" without the effect; acted and done at every step cover every boundary.
@pytest.mark.parametrize("phase", ["acted", "done"])
def test_killed_at_a_step_boundary_the_run_resumes_and_every_effect_happens_once(drill, step, phase):
    crashed = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes",
                      extra_env={"LLMOPS_CRASH_AT": f"{step}:{phase}"})
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL, no cleanup of any kind
    (run_id,) = drill.run_ids()
    resumed = run_cli(drill, "rollback", "--env", "drill", "--resume", run_id, "--output", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert drill.registry.alias_writes() == 1, "the production alias moved more than once"
    assert drill.deployment_patches() == 1 and drill.route_patches() == 1
    assert drill.production_alias() == "2" and drill.serving_version() == "2"
    assert sorted(n["event"] for n in drill.notifications()) == ["finished", "started"]
    assert [r["step"] for r in drill.audit_records(run_id)] == STEPS
    assert drill.evidence(run_id)["resumed"] == 1
    assert drill.lock_items() == []


def test_a_torn_last_journal_line_is_an_unfinished_write_and_the_resume_completes_once(drill):
    crashed = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes",
                      extra_env={"LLMOPS_CRASH_AT": "patch-deployment:acted"})
    assert crashed.returncode == -9
    (run_id,) = drill.run_ids()
    journal = drill.workdir / "state" / run_id / "journal.jsonl"
    with open(journal, "a") as handle:  # the write of "patch-deployment done" was cut short by the crash
        handle.write('{"event": "step_done", "outcome": "changed", "step": "patch-deploym')
    resumed = run_cli(drill, "rollback", "--env", "drill", "--resume", run_id, "--output", "json")
    assert resumed.returncode == 0, resumed.stderr
    steps = {s["step"]: s["outcome"] for s in json.loads(resumed.stdout)["steps"]}
    assert steps["patch-deployment"] == "already-in-place"  # re-checked, not taken from the torn line
    assert drill.registry.alias_writes() == 1 and drill.deployment_patches() == 1
    assert drill.serving_version() == "2"


def test_a_damaged_journal_record_stops_the_resume_naming_the_line_and_changes_nothing(drill):
    crashed = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes",
                      extra_env={"LLMOPS_CRASH_AT": "move-production-alias:done"})
    assert crashed.returncode == -9
    (run_id,) = drill.run_ids()
    journal = drill.workdir / "state" / run_id / "journal.jsonl"
    lines = journal.read_text().splitlines()
    done = next(i for i, line in enumerate(lines) if '"step_done"' in line and "mark-rolled-back" in line)
    lines[done] = lines[done].replace('"step_done"', '"step_dome"')  # one flipped byte
    journal.write_text("\n".join(lines) + "\n")
    resumed = run_cli(drill, "rollback", "--env", "drill", "--resume", run_id)
    assert resumed.returncode == 1, resumed.stderr
    assert f"{journal}: line {done + 1}: checksum mismatch" in resumed.stderr and "Traceback" not in resumed.stderr
    assert drill.deployment_patches() == 0 and drill.serving_version() == "3"


def test_resuming_a_finished_run_says_so_whatever_happened_to_its_journal(drill):
    finished = run_cli(drill, "rollback", "--env", "drill", "--service", SERVICE, "--yes", "--output", "json")
    assert finished.returncode == 0, finished.stderr
    run_id = json.loads(finished.stdout)["run_id"]
    (drill.workdir / "state" / run_id / "journal.jsonl").write_text("")  # lost
    again = run_cli(drill, "rollback", "--env", "drill", "--resume", run_id)
    assert again.returncode == 2 and f"run {run_id} already finished (succeeded)" in again.stderr
