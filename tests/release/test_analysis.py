"""The release analysis decides as the policy says: roll back on a regression, pause on a quality dip, promote after
the dwell and the samples, hold (never roll back) without data; its state survives a restart; and the benchmark's
claims hold on small deterministic replays."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from components.config.rollout import Rollout, RolloutMetric
from llmops.release import (
    Analysis,
    Decision,
    Histogram,
    Observation,
    Traffic,
    events_to_detect,
    samples_to_detect,
    threshold,
)
from llmops.release.sequential import split_llr

ROOT = Path(__file__).resolve().parents[2]
BOUNDS = (0.1, 0.25, 0.5, 0.75, 1.0, 2.5, math.inf)


def ttft(*per_bucket: float) -> Histogram:
    """Cumulative bucket pairs from per-bucket counts (one count per bound in BOUNDS)."""
    total, pairs = 0.0, []
    for le, count in zip(BOUNDS, per_bucket, strict=True):
        total += count
        pairs.append((le, total))
    return tuple(pairs)


FAST = ttft(10, 60, 25, 4, 1, 0, 0)  # 100 requests, p95 in the 0.5 s bucket, 5% slower than 0.5 s
SLOW = ttft(2, 20, 40, 15, 10, 13, 0)  # 100 requests, 38% slower than 0.5 s, 13% slower than 1 s


def policy(*metrics: RolloutMetric, **settings: object) -> Rollout:
    chosen = list(metrics) or [RolloutMetric(metric="error_rate", action="rollback")]
    return Rollout.model_validate({**settings, "metrics": [m.model_dump(by_alias=True, exclude_none=True)
                                                           for m in chosen]})


def interval(at: float, canary: tuple[float, float] = (100, 0), stable: tuple[float, float] = (1900, 10),
             canary_ttft: Histogram = (), stable_ttft: Histogram = (),
             quality: dict[str, tuple[float, float]] | None = None) -> Observation:
    return Observation(at, Traffic(canary[0], canary[1], canary_ttft), Traffic(stable[0], stable[1], stable_ttft),
                       quality or {})


def feed(analysis: Analysis, observations: list[Observation]) -> list[Decision]:
    return [analysis.observe(o) for o in observations]


def test_rolls_back_a_canary_with_ten_times_the_stables_errors() -> None:
    analysis = Analysis(policy(), started_at=0)
    decisions = feed(analysis, [interval(5 * i, canary=(100, 5), stable=(1900, 9)) for i in range(1, 20)])
    actions = [d.action for d in decisions]
    assert "rollback" in actions
    first = actions.index("rollback")
    assert first <= 3  # 15 s at 100 canary requests per interval
    assert set(actions[:first]) == {"continue"}
    rollback = decisions[first]
    assert rollback.target_weight == 0 and rollback.automatic
    assert rollback.reason.startswith("error_rate: canary 5% of")
    evidence = rollback.evidence[0]
    assert evidence["metric"] == "error_rate" and evidence["verdict"] == "fail"
    assert evidence["statistic"] >= evidence["threshold"] == analysis.thresholds["error_rate"]
    assert evidence["limit"] == {"worse_than_stable": 2.0, "max": None}
    assert evidence["rates"]["canary"] == pytest.approx(0.05)
    assert set(evidence) >= {"metric", "verdict", "counts", "rates", "statistic", "threshold", "limit"}
    # rollback is final: more data does not undo it
    assert analysis.observe(interval(200)).action == "rollback"


def test_a_regression_after_a_long_healthy_stretch_is_caught_as_fast_as_one_from_the_start() -> None:
    regression = [(100, 5), (100, 4), (100, 6), (100, 5), (100, 5), (100, 5)]

    def intervals_to_rollback(healthy: int) -> int:
        analysis = Analysis(policy(), started_at=0, step=0)
        for i in range(healthy):  # an hour of a healthy canary: its evidence of health is not banked against it
            analysis.update(interval(5 * (i + 1), canary=(100, 0 if i % 3 else 1), stable=(1900, 10)))
            assert analysis.phase == "running"
        for n, counts in enumerate(regression, start=1):
            if analysis.update(interval(5 * (healthy + n), canary=counts, stable=(1900, 10))) == "rollback":
                return n
        return 99

    assert intervals_to_rollback(720) == intervals_to_rollback(0) <= 3


def test_pauses_for_review_when_groundedness_falls_below_min_and_resumes_afresh() -> None:
    grounded = RolloutMetric(metric="groundedness", min=0.82, action="pause_for_review")
    analysis = Analysis(policy(RolloutMetric(metric="error_rate", action="rollback"), grounded, minDwellSeconds=600),
                        started_at=0)
    dip = [interval(5 * i, quality={"groundedness": (60.0, 100.0)}) for i in range(1, 10)]
    decisions = feed(analysis, dip)
    paused = next(d for d in decisions if d.action == "pause_for_review")
    assert paused.automatic and paused.target_weight is None
    assert paused.reason.startswith("groundedness: canary mean 0.6 over")
    assert "below min 0.82" in paused.reason
    assert analysis.observe(interval(100, quality={"groundedness": (90.0, 100.0)})).action == "pause_for_review"
    analysis.resume()
    after = analysis.observe(interval(105, quality={"groundedness": (90.0, 100.0)}))
    assert after.action == "continue"
    grounded_evidence = next(e for e in after.evidence if e["metric"] == "groundedness")
    assert grounded_evidence["statistic"] == 0.0


def test_promotes_after_the_dwell_and_the_requests_then_starts_the_next_step() -> None:
    analysis = Analysis(policy(minDwellSeconds=60, minRequests=200), started_at=1000)
    equal = [interval(1000 + 5 * i, canary=(50, 0), stable=(950, 5)) for i in range(1, 13)]
    decisions = feed(analysis, equal)
    assert [d.action for d in decisions[:-1]] == ["continue"] * 11
    promote = decisions[-1]
    assert promote.action == "promote" and promote.target_weight == 10 and promote.automatic
    assert promote.reason.startswith("promote to 10% (step 5%: 60/60 s dwell, 600/200 canary requests")
    analysis.advance(at=1060)
    assert analysis.weight == 10
    assert analysis.observe(interval(1065, canary=(100, 0), stable=(900, 5))).action == "continue"


def test_waits_for_min_requests_even_after_the_dwell() -> None:
    analysis = Analysis(policy(minDwellSeconds=10, minRequests=200), started_at=0)
    decisions = feed(analysis, [interval(5 * i, canary=(30, 0), stable=(570, 3)) for i in range(1, 8)])
    assert [d.action for d in decisions] == ["continue"] * 6 + ["promote"]  # 7 x 30 = 210 requests


def test_undecided_checks_do_not_block_promotion_once_min_requests_are_in() -> None:
    analysis = Analysis(policy(minDwellSeconds=0, minRequests=200), started_at=0)
    decision = analysis.observe(interval(5, canary=(200, 1), stable=(3800, 19)))
    assert decision.evidence[0]["verdict"] == "undecided"
    assert decision.action == "promote"


def test_holds_without_canary_traffic_and_never_rolls_back_on_no_data() -> None:
    analysis = Analysis(policy(), started_at=0)
    # an hour in which only the stable has traffic (and plenty of errors), then an hour of nothing at all
    silent = [interval(5 * i, canary=(0, 0), stable=(2000, 200)) for i in range(1, 721)]
    silent += [Observation(3600 + 5 * i) for i in range(1, 721)]
    decisions = feed(analysis, silent)
    assert {d.action for d in decisions} == {"hold"}
    assert all(d.reason.startswith("no data: the canary served no requests") for d in decisions)
    assert decisions[-1].evidence[0]["verdict"] == "no_data"


def test_holds_when_a_judge_sampled_nothing_at_the_step() -> None:
    judged = Rollout(minDwellSeconds=0, minRequests=100)  # the default metrics, with the judges
    analysis = Analysis(judged, started_at=0, ttft_threshold=1.0)
    decision = analysis.observe(interval(5, canary_ttft=FAST, stable_ttft=FAST,
                                         quality={"toxicity": (0.1, 100.0), "task_completion": (97.0, 100.0)}))
    assert decision.action == "hold"
    assert decision.reason.startswith("no data: groundedness had nothing to judge at this step")


def test_ttft_slower_than_the_stable_rolls_back() -> None:
    ttft_only = policy(RolloutMetric(metric="ttft_p95", action="rollback"))
    analysis = Analysis(ttft_only, started_at=0)
    analysis.observe(interval(5, canary_ttft=FAST, stable_ttft=ttft(190, 1140, 475, 76, 19, 0, 0)))
    decisions = feed(analysis, [interval(5 * i, canary_ttft=SLOW, stable_ttft=ttft(190, 1140, 475, 76, 19, 0, 0))
                                for i in range(2, 12)])
    rollback = next(d for d in decisions if d.action == "rollback")
    assert rollback.reason.startswith("ttft_p95: 38% of canary first tokens slower than 0.5 s vs stable 5%")
    assert rollback.evidence[0]["limit"]["slow_bound"] == 0.5


def test_ttft_p95_over_the_slo_threshold_rolls_back_even_when_the_stable_is_as_slow() -> None:
    analysis = Analysis(policy(RolloutMetric(metric="ttft_p95", action="rollback")), started_at=0,
                        ttft_threshold=1.0)
    decisions = feed(analysis, [interval(5 * i, canary_ttft=SLOW, stable_ttft=SLOW) for i in range(1, 12)])
    rollback = next(d for d in decisions if d.action == "rollback")
    assert "slower than 1 s this step, confidently over 5%" in rollback.reason
    assert rollback.evidence[0]["failed_test"] == "max"


def test_toxicity_over_max_rolls_back_but_one_noisy_interval_does_not() -> None:
    toxic = policy(RolloutMetric(metric="toxicity", max=0.004, action="rollback"))
    analysis = Analysis(toxic, started_at=0)
    assert analysis.observe(interval(5, quality={"toxicity": (1.0, 100.0)})).action == "continue"  # one in 100
    decisions = feed(analysis, [interval(5 * i, quality={"toxicity": (3.0, 100.0)}) for i in range(2, 12)])
    assert any(d.action == "rollback" for d in decisions)
    assert next(d for d in decisions if d.action == "rollback").reason.startswith("toxicity: canary mean 0.025")


def test_a_limit_of_zero_toxicity_still_rolls_back_a_toxic_canary() -> None:
    analysis = Analysis(policy(RolloutMetric(metric="toxicity", max=0, action="rollback")), started_at=0)
    decisions = feed(analysis, [interval(5 * i, quality={"toxicity": (1.0, 100.0)}) for i in range(1, 12)])
    assert any(d.action == "rollback" for d in decisions)


def test_tokens_per_request_over_max_rolls_back_once_the_spread_is_known() -> None:
    analysis = Analysis(policy(RolloutMetric(metric="tokens_per_request", max=500, action="rollback")),
                        started_at=0)
    means = [640, 660, 650, 655, 645, 670, 630, 650, 648, 652, 661, 639]
    decisions = feed(analysis, [interval(5 * (i + 1), quality={"tokens_per_request": (m * 100.0, 100.0)})
                                for i, m in enumerate(means)])
    actions = [d.action for d in decisions]
    assert actions[:10] == ["continue"] * 10  # no variance estimate before ten intervals: no evidence weighed
    assert "rollback" in actions[10:]


def test_a_promotion_waits_for_a_person_where_the_policy_says_so() -> None:
    manual = policy(allowAutomatic=["rollback", "pause_for_review"], minDwellSeconds=0, minRequests=10)
    decision = Analysis(manual, started_at=0).observe(interval(5))
    assert decision.action == "promote" and not decision.automatic


def test_a_rollback_the_metric_does_not_allow_waits_for_a_person() -> None:
    manual = policy(RolloutMetric(metric="error_rate", action="rollback", automatic=False))
    analysis = Analysis(manual, started_at=0)
    decision = feed(analysis, [interval(5 * i, canary=(100, 20)) for i in range(1, 5)])[-1]
    assert decision.action == "rollback" and not decision.automatic


def test_the_last_step_finishes_with_only_the_absolute_limits_to_judge() -> None:
    analysis = Analysis(policy(minDwellSeconds=0, minRequests=10), started_at=0, step=4)
    decision = analysis.observe(Observation(5, Traffic(100, 1)))  # no stable at 100%
    assert decision.action == "promote" and decision.target_weight == 100
    assert decision.reason.startswith("finish: the canary becomes the stable release")
    with pytest.raises(ValueError, match="already at the last step"):
        analysis.advance(at=5)


def test_a_stale_observation_is_ignored() -> None:
    analysis = Analysis(policy(), started_at=0)
    analysis.observe(interval(10))
    decision = analysis.observe(interval(10, canary=(100, 100)))
    assert decision.action == "hold" and decision.reason.startswith("ignored: the observation at 10")
    assert decision.evidence[0]["counts"]["canary_errors"] == 0


def test_the_state_survives_a_restart_through_json() -> None:
    full = Rollout(minDwellSeconds=30, minRequests=100)
    stream = [interval(5 * i, canary=(100, i % 2), stable=(1900, 10), canary_ttft=FAST, stable_ttft=FAST,
                       quality={"toxicity": (0.2, 50.0), "groundedness": (45.0, 50.0),
                                "task_completion": (48.0, 50.0)}) for i in range(1, 30)]
    original = Analysis(full, started_at=0, ttft_threshold=1.0)
    feed(original, stream[:10])
    original.advance(at=50)
    saved = json.loads(json.dumps(original.to_dict(), allow_nan=False))
    restored = Analysis.from_dict(full, saved)
    assert restored.to_dict() == original.to_dict()
    assert [d.to_dict() for d in feed(restored, stream[10:])] == [d.to_dict() for d in feed(original, stream[10:])]
    assert restored.to_dict() == original.to_dict()


def test_update_gives_the_action_observe_explains() -> None:
    stream = [interval(5 * i, canary=(60, 1 if i > 10 else 0), stable=(940, 5), canary_ttft=FAST,
                       stable_ttft=FAST) for i in range(1, 40)]
    quiet, explained = (Analysis(Rollout(metrics=[RolloutMetric(metric="error_rate", action="rollback"),
                                                  RolloutMetric(metric="ttft_p95", action="rollback")]),
                                 started_at=0, ttft_threshold=1.0) for _ in range(2))
    actions = []
    for o in stream:
        action = quiet.update(o)
        actions.append(action)
        assert explained.observe(o).action == action
        if action == "promote":
            quiet.advance(at=o.time)
            explained.advance(at=o.time)
    assert "promote" in actions


def test_the_budget_is_split_over_metrics_and_grows_with_a_longer_promotion() -> None:
    two = Analysis(policy(RolloutMetric(metric="error_rate", action="rollback"),
                          RolloutMetric(metric="ttft_p95", action="rollback")), started_at=0, ttft_threshold=1.0)
    assert two.thresholds["error_rate"] == pytest.approx(math.log(2 / 0.002) + math.log(4))
    assert two.thresholds["ttft_p95"] == pytest.approx(math.log(4 / 0.002) + math.log(8))  # vs stable, and max
    prod = Rollout(steps=[1, 5, 10, 25, 50, 100], minDwellSeconds=300)
    assert Analysis(prod, started_at=0).thresholds["error_rate"] == pytest.approx(
        threshold(0.002, 5, 1500.0, math.log(4))) == pytest.approx(
        math.log(5 / 0.002) + math.log(4) + 1.25 * math.log(6.25))


def test_the_documented_sample_sizes() -> None:
    thresholds = Analysis(Rollout(), started_at=0, ttft_threshold=1.0).thresholds
    level, slow_level, judge_level = thresholds["error_rate"], thresholds["ttft_p95"], thresholds["toxicity"]
    assert (level, slow_level, judge_level) == pytest.approx((9.2, 10.6, 9.9), abs=0.05)
    assert events_to_detect(100, 0.05, level, (2, 10)) == pytest.approx(5, abs=0.5)  # 50% errors
    assert events_to_detect(10, 0.05, level, (2, 10)) == pytest.approx(7.5, abs=0.5)  # 0.5% -> 5%
    assert events_to_detect(2, 0.05, level, (2, 10)) == pytest.approx(51, abs=1)  # 0.5% -> 1%
    assert events_to_detect(100, 0.5, level, (2, 10)) == pytest.approx(16, abs=0.5)  # at 50% weight
    assert split_llr(1, 0, 0.5, 1e9) == pytest.approx(math.log(2))  # the most one canary error can say at 50%
    assert events_to_detect(5.9, 0.05, slow_level, (1.5, 7.5)) == pytest.approx(13, abs=0.5)
    shares = {  # (true share, limit): scored requests, as the module docstring says
        (0.02, 0.004): 610, (0.006, 0.004): 23_000, (0.27, 0.18): 400, (0.135, 0.09): 910}
    for (share, limit), needed in shares.items():
        assert samples_to_detect(share, limit, judge_level, (1.5 * limit, 5 * limit)) == pytest.approx(needed, rel=0.02)
    assert samples_to_detect(0.25, 0.05, slow_level, (0.075, 0.25)) == pytest.approx(47, abs=1)
    assert samples_to_detect(0.075, 0.05, slow_level, (0.075, 0.25)) == pytest.approx(1850, rel=0.02)


# The benchmark's claims, on small deterministic replays.

@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_analysis", ROOT / "scripts" / "bench_analysis.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_analysis"] = module
    spec.loader.exec_module(module)
    return module


def scenario(bench: ModuleType, name: str) -> object:
    return next(s for s in bench.SCENARIOS if s.name == name)


def test_bench_healthy_canaries_are_rarely_rolled_back(bench: ModuleType) -> None:
    for name, canaries in (("healthy-10", 200), ("healthy-1", 60)):
        summary = bench.summarize(scenario(bench, name), bench.simulate(scenario(bench, name), canaries, seed=3))
        assert summary["rollbacks"] <= 1, summary
        assert summary["promoted"] + summary["rollbacks"] == canaries


def test_bench_a_ten_times_error_regression_is_rolled_back_within_18_seconds(bench: ModuleType) -> None:
    for name in ("err10x", "hard"):
        summary = bench.summarize(scenario(bench, name), bench.simulate(scenario(bench, name), 150, seed=3))
        assert summary["rollbacks"] == 150
        assert summary["delay_median_s"] <= 18, summary
        assert summary["flagger_median_s"] >= 240  # five failed minutes


def test_bench_a_slower_first_token_is_rolled_back_within_30_seconds(bench: ModuleType) -> None:
    summary = bench.summarize(scenario(bench, "ttft"), bench.simulate(scenario(bench, "ttft"), 60, seed=3))
    assert summary["rollbacks"] == 60 and summary["delay_median_s"] <= 30


def test_bench_no_traffic_never_rolls_back(bench: ModuleType) -> None:
    for name in ("no-traffic", "no-traffic-idle"):
        summary = bench.summarize(scenario(bench, name), bench.simulate(scenario(bench, name), 3, seed=3))
        assert summary["rollbacks"] == 0 and summary["unfinished"] == 3
        assert summary["flagger_rollbacks"] == 3  # a minute without data is a failed check there
