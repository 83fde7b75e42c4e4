"""The rollback-canary runbook on the canary drill world, as on-call (or the controller) runs it: production is
untouched, the canary's version is marked, the route sends everything to stable, the stack keeps weight 0."""

from __future__ import annotations

import json

import yaml

from llmops.drill.rollback_drill import REGISTERED_MODEL, SERVICE
from runbooks.rollback import ROLLED_BACK_TAG
from tests.runbooks.conftest import run_cli


def test_a_canary_rollback_moves_all_traffic_to_stable_and_marks_the_canary(canary):
    assert canary.route_weights() == {SERVICE: 80, f"{SERVICE}-canary": 20}
    done = run_cli(canary, "rollback-canary", "--env", "drill", "--service", SERVICE, "--yes", "--reason",
                   "errors 10x stable", "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [s["step"] for s in result["steps"]] == ["mark-canary-rolled-back", "zero-canary-weight", "verify-stable",
                                                   "pin-canary-weight"]
    assert canary.route_weights() == {SERVICE: 100, f"{SERVICE}-canary": 0}
    marker = json.loads(canary.registry.client.get_model_version(REGISTERED_MODEL, "4").tags[ROLLED_BACK_TAG])
    assert marker["canary"] is True and marker["reason"] == "errors 10x stable" and marker["run_id"] == result["run_id"]
    assert canary.production_alias() == "3" and canary.deployment_patches() == 0  # production untouched
    model = next(m for m in yaml.safe_load(canary.stack_file.read_text())["config"]["llmops:models"]
                 if m["name"] == SERVICE)
    assert model["canary"]["weight"] == 0 and model["release"]["version"] == "3"
    verified = next(s for s in result["steps"] if s["step"] == "verify-stable")
    assert verified["outcome"] == "completed"

    again = run_cli(canary, "rollback-canary", "--env", "drill", "--service", SERVICE, "--yes", "--output", "json")
    assert again.returncode == 0, again.stderr
    assert {s["step"]: s["outcome"] for s in json.loads(again.stdout)["steps"]}["zero-canary-weight"] == "already-in-place"
    assert canary.route_patches() == 1


def test_a_reason_is_one_printable_line(canary):
    refused = run_cli(canary, "rollback-canary", "--env", "drill", "--service", SERVICE, "--yes", "--reason", "a\nb")
    assert refused.returncode == 2 and "--reason" in refused.stderr
    assert canary.route_patches() == 0
