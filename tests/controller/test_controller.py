"""The release controller deciding on real Prometheus in the canary drill world, and acting through the runbooks:
rollback on a regression, pause on a quality dip, promotion after the dwell, hold without data; a controller killed
mid-action finishes the action once when it comes back; two controllers on one canary act once."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import yaml

from components.release import PAUSED_TAG
from llmops.controller.controller import Controller, Outcome, watch
from llmops.drill.rollback_drill import REGISTERED_MODEL, SERVICE
from runbooks.adapters.kubernetes_cluster import KubernetesCluster
from runbooks.adapters.mlflow_registry import MlflowRegistry
from runbooks.adapters.prometheus import Prometheus
from runbooks.rollback import ROLLED_BACK_TAG
from runbooks.targets import load_targets
from tests.cli_fork import run_llmops

CANARY = f"{SERVICE}-canary"


def controller(canary: Any) -> Controller:
    targets = load_targets("drill")
    assert targets.registry and targets.kubernetes and targets.prometheus
    return Controller("drill", targets, Prometheus(targets.prometheus.url), MlflowRegistry(targets.registry.tracking_uri),
                      KubernetesCluster(host=targets.kubernetes.host), progress=lambda message: None)


def watch_until(ctl: Controller, done: Any, timeout: float = 90) -> list[Outcome]:
    """The controller's own loop, until `done(outcome)` or the deadline (a failure naming what was seen)."""
    seen: list[Outcome] = []
    deadline = time.monotonic() + timeout

    def stop() -> bool:
        return bool(seen and done(seen[-1])) or time.monotonic() > deadline

    watch(ctl, SERVICE, stop, seen.append)
    assert seen and done(seen[-1]), f"not reached within {timeout}s: {[(o.decision.get('action'), o.acted) for o in seen]}"
    return seen


def next_window(canary: Any) -> None:
    """Until Prometheus holds one policy interval (the drill's 2 s) of samples newer than now: the next analysis reads
    a window of its own, as the controller's loop does."""
    from llmops.drill.backends import wait_until

    query = f'max(timestamp(up{{service="{CANARY}"}}))'

    def latest() -> float:
        found = canary.prometheus.query(query)
        return float(found[0]["value"][1]) if found else 0.0

    seen = latest()
    wait_until(lambda: latest() >= seen + canary.interval_seconds, 30, "the next window of the canary's samples")


def marker(canary: Any, version: str, tag: str) -> dict[str, Any] | None:
    raw = canary.registry.client.get_model_version(REGISTERED_MODEL, version).tags.get(tag)
    return json.loads(raw) if raw else None


def test_a_regression_is_rolled_back_through_the_runbook_with_the_evidence(canary):
    ctl = controller(canary)
    canary.traffic.inject("regression")
    seen = watch_until(ctl, lambda o: o.acted in ("rolled-back", "failed"))
    last = seen[-1]
    assert last.acted == "rolled-back", last.detail
    assert all(o.decision.get("action") != "rollback" for o in seen[:-1])
    promoted = sum(1 for o in seen if o.acted == "promoted")  # the dwell may end before the evidence is enough
    assert canary.route_weights() == {SERVICE: 100, CANARY: 0} and canary.route_patches() == promoted + 1
    assert canary.production_alias() == "3" and canary.deployment_patches() == 0
    mark = marker(canary, "4", ROLLED_BACK_TAG)
    assert mark is not None and mark["by"] == "release-controller" and mark["run_id"] == last.run_id
    error_rate = next(e for e in last.decision["evidence"] if e["metric"] == "error_rate")
    assert error_rate["verdict"] == "fail" and error_rate["statistic"] >= error_rate["threshold"]
    assert error_rate["counts"]["canary_errors"] > 0 and error_rate["rates"]["canary"] > error_rate["rates"]["stable"]
    audit = canary.audit_records(last.run_id)
    assert audit and {r["operator"] for r in audit} == {"release-controller"}


def test_a_quality_dip_pauses_for_review_and_never_moves_traffic(canary):
    canary.dwell_seconds = 3600  # the step holds: the pause, not a promotion, is what this test is about
    canary.reset()
    canary.dwell_seconds = 8
    ctl = controller(canary)
    canary.traffic.inject("quality-dip")
    seen = watch_until(ctl, lambda o: o.acted in ("paused", "rolled-back", "failed"))
    assert seen[-1].acted == "paused", [(o.decision.get("action"), o.acted) for o in seen]
    assert "groundedness" in seen[-1].decision["reason"]
    assert marker(canary, "4", PAUSED_TAG) is not None and marker(canary, "4", ROLLED_BACK_TAG) is None
    promoted = sum(1 for o in seen if o.acted == "promoted")  # steps may pass before the evidence is enough
    assert canary.route_patches() == promoted and canary.route_weights()[CANARY] > 0  # the pause moved nothing
    assert any(n.get("model") == SERVICE and "release resume" in n.get("resume", "") for n in canary.notifications())
    canary.traffic.heal(canary.rate)
    later = ctl.analyze(ctl.models(SERVICE)[0])
    assert later.acted == "none" and "paused" in later.detail  # held while the pause stands
    assert ctl.resume(ctl.models(SERVICE)[0]) and marker(canary, "4", PAUSED_TAG) is None


def test_a_healthy_canary_is_promoted_a_step_after_its_dwell(canary):
    ctl = controller(canary)
    seen = watch_until(ctl, lambda o: o.acted in ("promoted", "rolled-back", "paused", "failed"))
    last = seen[-1]
    assert last.acted == "promoted", [(o.decision.get("action"), o.acted, o.detail) for o in seen]
    assert last.decision["target_weight"] == 25 and canary.route_weights() == {SERVICE: 75, CANARY: 25}
    model = next(m for m in yaml.safe_load(canary.stack_file.read_text())["config"]["llmops:models"]
                 if m["name"] == SERVICE)
    assert model["canary"]["weight"] == 25  # pinned, as a rollback pins


def test_without_traffic_the_controller_holds_and_never_rolls_back(canary):
    ctl = controller(canary)
    canary.traffic.inject("no-traffic")
    seen = watch_until(ctl, lambda o: o.decision.get("action") == "hold" and "no data" in o.decision.get("reason", ""),
                       timeout=60)
    for _ in range(3):  # three more windows of nothing
        next_window(canary)
        outcome = ctl.analyze(ctl.models(SERVICE)[0])
        assert outcome.decision["action"] == "hold" and outcome.acted == "none", outcome.decision
        seen.append(outcome)
    assert all(o.decision.get("action") != "rollback" for o in seen)
    assert canary.route_patches() == 0 and marker(canary, "4", ROLLED_BACK_TAG) is None


def rollbacks(canary: Any) -> list[str]:
    return [run for run in canary.run_ids() if run.startswith("rollback-canary-")]


def analyze_cli(canary: Any, crash_at: str | None = None) -> Any:
    import os

    env = {**os.environ, **canary.environment()}
    env.pop("LLMOPS_CRASH_AT", None)
    if crash_at:
        env["LLMOPS_CRASH_AT"] = crash_at
    return run_llmops(["release", "analyze", "--env", "drill", "--model", SERVICE, "--output", "json"], env=env,
                      timeout=120)


@pytest.mark.parametrize("crash_at", ["zero-canary-weight:acted", "verify-stable:done"])
def test_a_controller_killed_mid_rollback_finishes_it_once_when_it_comes_back(canary, crash_at):
    canary.traffic.inject("regression")
    deadline = time.monotonic() + 90
    while True:  # the controller's period: one analysis an interval, each process carrying on from the saved state
        result = analyze_cli(canary, crash_at)
        if result.returncode == -9:
            break
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["acted"] in ("none", "promoted")
        assert time.monotonic() < deadline, "no rollback decision within 90 s"
        next_window(canary)
    back = analyze_cli(canary)
    assert back.returncode == 0, back.stderr
    outcome = json.loads(back.stdout)
    assert outcome["acted"] == "rolled-back" and outcome["decision"]["action"] == "resume"
    assert canary.route_weights()[CANARY] == 0
    assert len(rollbacks(canary)) == 1  # resumed, not a second rollback
    runs = [r for r in canary.audit_records(rollbacks(canary)[0]) if r.get("step") == "zero-canary-weight"]
    assert [r["outcome"] for r in runs][-1] in ("changed", "already-in-place")


def test_two_controllers_on_one_canary_act_once(canary):
    canary.traffic.inject("regression")
    outcomes: list[list[Outcome]] = [[], []]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            ctl = controller(canary)
            outcomes[index] = watch_until(ctl, lambda o: o.acted in ("rolled-back", "held-by-another", "failed")
                                          or o.decision.get("action") == "idle")
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    both = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(120)
    assert not errors, errors
    finals = sorted(o[-1].acted for o in outcomes if o)
    assert finals.count("rolled-back") == 1, finals
    assert set(finals) <= {"rolled-back", "held-by-another", "none"}, finals
    assert len(rollbacks(canary)) == 1 and canary.route_weights()[CANARY] == 0


def test_a_decision_overtaken_by_another_rollback_is_held_by_another_not_a_second_rollback(canary):
    """The window between a controller's look at the route and its run's lock: another controller's rollback lands in
    it. The run finds every change in place (the runbook is idempotent) and the controller says another acted."""
    first, second = controller(canary), controller(canary)
    params = {"service": SERVICE, "reason": "regression"}
    done = first._run(SERVICE, {"action": "rollback"}, "rollback-canary", params, True, "rolled-back")
    assert done.acted == "rolled-back", done.detail
    late = second._run(SERVICE, {"action": "rollback"}, "rollback-canary", params, True, "rolled-back")
    assert late.acted == "held-by-another", (late.acted, late.detail)
    assert "already in place" in late.detail
    assert canary.route_patches() == 1 and canary.route_weights()[CANARY] == 0
