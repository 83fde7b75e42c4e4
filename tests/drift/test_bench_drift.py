"""The drift benchmark's pieces (scripts/bench_drift.py), on small deterministic replays: the alert accounting, the
consecutive-window rule it applies to the raw cosine and to Evidently, one shift trial of each kind, a short quiet
segment, and the cost run."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_drift", ROOT / "scripts" / "bench_drift.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_drift"] = module
    spec.loader.exec_module(module)
    module._WORLD = module.build_world(1, evidently=False)
    return module


def test_the_alert_waits_for_the_next_scrape_then_the_next_rule_evaluation(bench: ModuleType) -> None:
    assert bench.SCRAPE_SECONDS == 5 and bench.RULE_SECONDS == 5  # the stack's defaults
    assert bench.alert_time(100.0, scrape_phase=2.0, rule_phase=4.0) == pytest.approx(104.0)
    assert bench.alert_time(100.0, scrape_phase=2.0, rule_phase=1.0) == pytest.approx(106.0)  # rule ran at 101
    assert bench.alert_time(103.0, scrape_phase=2.0, rule_phase=4.5) == pytest.approx(109.5)  # scrape at 107
    assert bench.alert_time(100.0, scrape_phase=0.0, rule_phase=0.0) == pytest.approx(100.0)


def test_quantiles_are_nearest_rank_and_keep_trials_that_never_detected(bench: ModuleType) -> None:
    assert bench.quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert bench.quantile([float(v) for v in range(1, 11)], 0.9) == 9.0
    assert bench.quantile([1.0, math.inf, math.inf], 0.5) == math.inf


def test_the_consecutive_rule_and_its_episodes(bench: ModuleType) -> None:
    streak = bench.Streak(3)
    assert [streak.push(level) for level in (2, 2, 2, 2, 1, 1, 1, None, 2)] == [0, 0, 2, 2, 1, 1, 1, 0, 0]
    episodes = bench.Episodes()
    for status in (0, 2, 2, 0, 1, 2, 0, 2):
        episodes.push(status, counted=True)
    assert episodes.figures() == {"drift_alarms": 3, "watch_episodes": 3, "drift_watch_fired": 0,
                                  "seconds_at_drift": 4}


def test_a_topic_shift_is_found_after_it_and_not_before(bench: ModuleType) -> None:
    trial = bench.run_shift("topic", 5, {}, False)
    ours = trial["ours"]
    assert trial["false_before_shift"] == 0
    assert 0 < ours["status_delay"] <= ours["alert_delay"] <= ours["status_delay"] + 10
    assert ours["samples"] > 0 and "embedding" in trial["signals"]


def test_a_numeric_shift_is_found_by_the_prompt_tokens_psi(bench: ModuleType) -> None:
    trial = bench.run_shift("numeric", 5, {}, False)
    assert math.isfinite(trial["ours"]["alert_delay"]) and "prompt_tokens" in trial["signals"]
    assert "embedding" not in trial["signals"]  # the prompts' text did not change


def test_a_quiet_segment_is_judged_every_second_after_its_warm_up(bench: ModuleType) -> None:
    start = bench.T0 + 4 * 3600.0
    part = bench.run_quiet(0, start, start + 300, 3, {}, False, 300)
    assert part["judged"] + part["unjudged"] == 300 and part["unjudged"] == 0
    assert part["smallest_window_samples"] >= 100
    assert part["status"]["embedding"]["drift_alarms"] == 0 and part["low"]["similarity"] > 0.85
    summary = bench.summarise_quiet([part], bench.policy(), 300 / 3600, 300, False)
    assert summary["judgements"] == 300 and summary["samples"] == part["samples"]


def test_policy_variants_use_the_stack_file_keys(bench: ModuleType) -> None:
    drift = bench.policy(bench.parse_variant("psiDrift=0.9,consecutiveWindows=2", {}))
    assert drift.consecutive_windows == 2 and [f.drift for f in drift.features] == [0.9, 0.9]
    with pytest.raises(ValueError):
        bench.parse_variant("consecutiveWindows=0", {})


def test_the_cost_run_measures_both_paths_and_holds_bounded_buckets(bench: ModuleType) -> None:
    cost = bench.run_cost(1, {}, samples=2000, memory_hours=0.1, repeats=1)
    assert cost["add"]["samples_per_second"] > 0 and cost["ingest"]["samples_per_second"] > 0
    end = cost["memory"]["marks"]["end"]
    assert end["buckets"] <= cost["memory"]["max_buckets"] and end["samples"] > 0


def test_evidently_is_called_on_a_window(bench: ModuleType) -> None:
    pytest.importorskip("evidently", reason="needs the optional drift-bench extra (README, Performance: Drift): "
                                    "pip install -c constraints.txt -e '.[drift-bench]'")
    vectors = bench.embed([f"please invoice refund charge {word}" for word in ("tax", "plan", "receipt")] * 40)
    score, drifted = bench.evidently_judge(vectors)
    assert 0.0 <= score <= 1.0 and isinstance(drifted, bool)
    assert isinstance(bench.evidently_method().threshold, float)
    assert np.isfinite(score)
