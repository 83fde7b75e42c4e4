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
