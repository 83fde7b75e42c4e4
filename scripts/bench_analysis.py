#!/usr/bin/env python3
"""Replay synthetic canaries through the release analysis (`llmops.release.Analysis`) in virtual time, beside a
Flagger-style rule on the same traffic, and check the targets of the release-controller issue.

Traffic: each analysis interval (the policy's, 5 s unless --interval) the canary gets Poisson(rate x interval)
requests and the stable Poisson(rate x (100 - w) / w x interval) at canary weight w (none at 100%), so the canary
receives the stated rate at every step. Each request fails (5xx) with probability 0.5% (the canary's changes at the
regression's onset) and has a lognormal time to first token (median 0.25 s, sigma 0.5: p95 0.57 s), counted into
Prometheus-like buckets 0.001 ... 80, +Inf. An interval that straddles the onset mixes both in proportion.
The policy is the default rollout (steps 5, 10, 25, 50, 100; 60 s dwell; 200 canary requests a step; a false-rollback
rate of 0.2%) with the two signals this traffic has, error_rate and ttft_p95 (which the model's SLO threshold,
1 s, also bounds), so error_rate fails at h = log(2 / 0.002) + log 4 = 8.3 and ttft_p95 at log(4 / 0.002) + log 8 =
9.7; healthy-prod-10 uses the prod stack's steps (1, 5, 10, 25, 50, 100), 300 s dwell and 1000 requests a step.
A full promotion walks every step until the analysis says promote at 50% (the promotion to 100% ends it: with no
stable traffic left, the comparisons have nothing to compare); the analysis is told the new weight the interval it
says promote.

Flagger-style rule, same traffic: every minute, the canary's last minute must have >= 99% successful requests and
a p95 time to first token (bucket bound) within the SLO threshold; a minute without requests fails; the fifth
failed check rolls back. It runs until it rolls back or the stream ends (the analysis finished; for a regression,
both have decided or 30 minutes have passed since the analysis rolled back, the weight staying where it was).

Scenarios and targets (time is from the regression's onset to the rollback decision):
- err10x: errors 0.5% -> 5% at 10 canary requests/s, from the start: median <= 18 s; -random: onset uniform over
  the steps that share traffic with the stable (reported: at 50% weight each canary error is weaker evidence, and
  an onset late in the 50% step reaches 100% before it is decided -- the share rolled back says how many);
- hard: 50% errors at 1 request/s, from the start: median <= 18 s; -random as above;
- healthy at 0.1, 1 and 10 requests/s: false rollbacks <= 0.5% of canaries over a full promotion;
- healthy-prod-10: the same at 10 requests/s under the prod policy (a promotion six times as long);
- no-traffic: the canary gets nothing for an hour (the stable busy; -idle: nothing at all): 0 rollbacks;
- ttft: first tokens 1.5x slower (p95 +50%) at 10 requests/s, from the start: median <= 30 s; -random as above.
Rates carry a 95% Wilson upper bound; medians are over the canaries rolled back. Exit 1 if a target is missed
(a false-rollback share over its target counts as missed only when its 95% lower bound is over it too: --quick's
200 canaries cannot tell 0.5% from 1%).
--calibrate replays the healthy scenarios with no threshold in reach and prints how often each check's statistic
reaches each level: the measurement behind llmops.release.sequential's restart allowances.

    .venv/bin/python scripts/bench_analysis.py [--canaries 2000] [--seed 7] [--interval 5] [--workers N]
                                               [--quick] [--json out.json] [--scenario NAME ...] [--calibrate]
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import platform
import statistics
import sys
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config.rollout import Rollout  # noqa: E402
from llmops.release import Analysis, Observation, Traffic  # noqa: E402

BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
           80.0, math.inf)
TTFT_MEDIAN, TTFT_SIGMA = 0.25, 0.5
SLO_SECONDS = 1.0
BASE_ERRORS = 0.005
CHUNK = 24  # intervals drawn at once
FLAGGER_WINDOW, FLAGGER_SUCCESS, FLAGGER_FAILURES = 60.0, 0.99, 5
FLAGGER_GRACE = 1800.0  # after the analysis rolled back, how long the stream waits for the Flagger-style rule

Onset = Literal["none", "start", "random"]


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float  # canary requests per second
    canary_errors: float = BASE_ERRORS  # after the onset
    ttft_scale: float = 1.0  # after the onset
    onset: Onset = "none"
    stable_rate: float | None = None  # stable requests/s regardless of weight (no-traffic); None: from the weight
    horizon: float = 4 * 3600.0  # virtual seconds before the run is called unfinished
    target_median: float | None = None  # seconds from onset to rollback
    target_false: float | None = None  # false-rollback share
    canaries: float = 1.0  # share of --canaries
    policy: Literal["default", "prod"] = "default"  # prod: steps 1-100 (six), 300 s dwell, 1000 requests a step


SCENARIOS = (
    Scenario("err10x", 10, canary_errors=0.05, onset="start", target_median=18, canaries=0.5),
    Scenario("err10x-random", 10, canary_errors=0.05, onset="random", canaries=0.5),
    Scenario("hard", 1, canary_errors=0.5, onset="start", target_median=18, canaries=0.5),
    Scenario("hard-random", 1, canary_errors=0.5, onset="random", canaries=0.25),
    Scenario("healthy-0.1", 0.1, target_false=0.005),
    Scenario("healthy-1", 1, target_false=0.005),
    Scenario("healthy-10", 10, target_false=0.005),
    Scenario("healthy-prod-10", 10, target_false=0.005, policy="prod", canaries=0.5),
    Scenario("no-traffic", 0, stable_rate=19, horizon=3600, target_false=0.0, canaries=0.1),
    Scenario("no-traffic-idle", 0, stable_rate=0, horizon=3600, target_false=0.0, canaries=0.1),
    Scenario("ttft", 10, ttft_scale=1.5, onset="start", target_median=30, canaries=0.5),
    Scenario("ttft-random", 10, ttft_scale=1.5, onset="random", canaries=0.5),
)


@dataclass
class Outcome:
    action: str  # rollback | promoted | unfinished
    at: float  # virtual seconds from the start
    onset: float | None
    metric: str | None = None  # what rolled it back
    flagger_at: float | None = None  # the Flagger-style rollback, if any
    intervals: int = 0
    peaks: dict[str, float] = field(default_factory=dict)  # each check's largest statistic


def bench_policy(interval: int = 5, kind: str = "default", false_rollback_rate: float = 0.002) -> Rollout:
    """The default rollout with the two signals the synthetic traffic has; `prod` as stacks/Pulumi.prod.yaml's."""
    settings: dict[str, Any] = {"intervalSeconds": interval, "falseRollbackRate": false_rollback_rate,
                                "metrics": [{"metric": "error_rate", "action": "rollback"},
                                            {"metric": "ttft_p95", "action": "rollback"}]}
    if kind == "prod":
        settings.update(steps=[1, 5, 10, 25, 50, 100], minDwellSeconds=300, minRequests=1000)
    return Rollout.model_validate(settings)


def bucket_probabilities(scale: float = 1.0) -> np.ndarray:
    median = TTFT_MEDIAN * scale
    cdf = [1.0 if math.isinf(b) else 0.5 * (1 + math.erf(math.log(b / median) / (TTFT_SIGMA * math.sqrt(2))))
           for b in BUCKETS]
    return np.diff(np.concatenate([[0.0], cdf]))


def sharing_time(scenario: Scenario, policy: Rollout) -> float:
    """The expected time the canary shares traffic with the stable (steps below 100%): where a random onset falls."""
    interval = policy.interval_seconds
    per_step = max(policy.min_dwell_seconds, policy.min_requests / scenario.rate if scenario.rate else math.inf)
    return len([w for w in policy.steps if w < 100]) * math.ceil(per_step / interval) * interval


class FlaggerStyle:
    """Once a minute: the last minute's success rate (and p95 first token) must pass; the fifth failure rolls back."""

    def __init__(self, check_ttft: bool) -> None:
        self.check_ttft = check_ttft
        self.requests = self.errors = 0.0
        self.buckets = [0.0] * len(BUCKETS)
        self.next_check = FLAGGER_WINDOW
        self.failures = 0
        self.rolled_back_at: float | None = None

    def add(self, at: float, requests: float, errors: float, cumulative: Sequence[float]) -> None:
        self.requests += requests
        self.errors += errors
        if self.check_ttft and requests:
            self.buckets = list(map(operator.add, self.buckets, cumulative))
        if at >= self.next_check:
            self.next_check += FLAGGER_WINDOW
            if not self._passes():
                self.failures += 1
                if self.failures >= FLAGGER_FAILURES and self.rolled_back_at is None:
                    self.rolled_back_at = at
            self.requests = self.errors = 0.0
            self.buckets = [0.0] * len(BUCKETS)

    def _passes(self) -> bool:
        if self.requests <= 0:
            return False  # no data is a failed check
        if 1 - self.errors / self.requests < FLAGGER_SUCCESS:
            return False
        if self.check_ttft:
            target = 0.95 * self.buckets[-1]
            p95 = next(le for le, count in zip(BUCKETS, self.buckets, strict=True) if count >= target)
            return p95 <= SLO_SECONDS
        return True


def simulate_canary(scenario: Scenario, policy: Rollout, rng: np.random.Generator) -> Outcome:
    """One canary's promotion under `policy`, interval by interval, until a decision (and Flagger's) or the horizon."""
    interval = float(policy.interval_seconds)
    analysis = Analysis(policy, started_at=0.0, ttft_threshold=SLO_SECONDS)
    regressed = scenario.canary_errors != BASE_ERRORS or scenario.ttft_scale != 1.0
    flagger = FlaggerStyle(check_ttft=True)
    onset: float | None = None
    if scenario.onset == "start":
        onset = 0.0
    elif scenario.onset == "random":
        onset = float(rng.uniform(0.0, sharing_time(scenario, policy)))
    healthy_buckets, slow_buckets = bucket_probabilities(), bucket_probabilities(scenario.ttft_scale)
    t, decided, decided_at, count = 0.0, None, 0.0, 0
    metric = None

    def stream_ends() -> bool:
        if decided is None:
            return False
        return (not regressed or decided == "promoted" or flagger.rolled_back_at is not None
                or t >= decided_at + FLAGGER_GRACE)

    while t < scenario.horizon:
        weight = analysis.weight
        canary_mean = scenario.rate * interval
        if scenario.stable_rate is not None:
            stable_mean = scenario.stable_rate * interval
        else:
            stable_mean = scenario.rate * (100 - weight) / weight * interval
        ends = t + interval * np.arange(1, CHUNK + 1)
        after = np.clip((ends - (math.inf if onset is None else onset)) / interval, 0.0, 1.0)
        canary_n = rng.poisson(canary_mean, CHUNK)
        stable_n = rng.poisson(stable_mean, CHUNK)
        canary_p = BASE_ERRORS + (scenario.canary_errors - BASE_ERRORS) * after
        canary_e = rng.binomial(canary_n, canary_p)
        stable_e = rng.binomial(stable_n, BASE_ERRORS)
        mix = (1 - after)[:, None] * healthy_buckets + after[:, None] * slow_buckets
        canary_h = np.cumsum(rng.multinomial(canary_n, mix), axis=1).tolist()
        stable_h = np.cumsum(rng.multinomial(stable_n, healthy_buckets), axis=1).tolist()
        rows = zip(canary_n.tolist(), canary_e.tolist(), stable_n.tolist(), stable_e.tolist(), canary_h, stable_h,
                   strict=True)
        for cn, ce, sn, se, ch, sh in rows:
            t += interval
            if decided is None:
                observation = Observation(
                    t, Traffic(cn, ce, tuple(zip(BUCKETS, ch, strict=True)) if cn else ()),
                    Traffic(sn, se, tuple(zip(BUCKETS, sh, strict=True)) if sn else ()))
                action = analysis.update(observation)
                count += 1
                if action == "rollback":
                    decided = "rollback"
                    metric = next(c.metric.metric for c in analysis.checks if c.failed)
                    decided_at = t
                elif action == "promote":
                    if analysis.step >= len(policy.steps) - 2:  # to 100%: the canary becomes the stable release
                        decided, decided_at = "promoted", t
                    else:
                        analysis.advance(at=t)
            flagger.add(t, cn, ce, ch)
            if stream_ends() or (decided is None and analysis.weight != weight):
                break
        if stream_ends():
            break
    peaks: dict[str, float] = {c.metric.metric: max(cusum.peak for _, cusum in c.subtests) for c in analysis.checks}
    if decided is None:
        return Outcome("unfinished", t, onset, None, flagger.rolled_back_at, count, peaks)
    return Outcome(decided, decided_at, onset, metric, flagger.rolled_back_at, count, peaks)


def _simulate_chunk(args: tuple[Scenario, int, float, int, Any]) -> list[Outcome]:
    scenario, interval, false_rollback_rate, canaries, seed = args
    rng = np.random.default_rng(seed)
    policy = bench_policy(interval, scenario.policy, false_rollback_rate)
    return [simulate_canary(scenario, policy, rng) for _ in range(canaries)]


def simulate(scenario: Scenario, canaries: int, seed: int = 7, interval: int = 5, workers: int = 1,
             chunk: int = 100, false_rollback_rate: float = 0.002) -> list[Outcome]:
    """`canaries` independent canaries of `scenario`; the same seed gives the same outcomes for any `workers`."""
    sizes = [min(chunk, canaries - start) for start in range(0, canaries, chunk)]
    seeds = np.random.SeedSequence([seed, zlib.crc32(scenario.name.encode())]).spawn(len(sizes))
    jobs = [(scenario, interval, false_rollback_rate, size, child) for size, child in zip(sizes, seeds, strict=True)]
    if workers <= 1 or len(jobs) == 1:
        return [outcome for job in jobs for outcome in _simulate_chunk(job)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [outcome for part in pool.map(_simulate_chunk, jobs) for outcome in part]


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a share."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n)), min(1.0, (centre + spread) / (1 + z * z / n))


def _quantiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def summarize(scenario: Scenario, outcomes: list[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    rollbacks = [o for o in outcomes if o.action == "rollback"]
    flagger = [o for o in outcomes if o.flagger_at is not None]
    summary: dict[str, Any] = {
        "scenario": scenario.name, "rate": scenario.rate, "canaries": n,
        "rollbacks": len(rollbacks), "rollback_share": len(rollbacks) / n if n else 0.0,
        "rollback_share_upper95": wilson(len(rollbacks), n)[1],
        "rollback_share_lower95": wilson(len(rollbacks), n)[0],
        "promoted": sum(o.action == "promoted" for o in outcomes),
        "unfinished": sum(o.action == "unfinished" for o in outcomes),
        "flagger_rollbacks": len(flagger), "flagger_share": len(flagger) / n if n else 0.0,
        "by_metric": {m: sum(o.metric == m for o in rollbacks) for m in sorted({o.metric or "" for o in rollbacks})},
        "intervals": sum(o.intervals for o in outcomes),
    }
    if scenario.onset == "none":
        done = [o.at for o in outcomes if o.action == "promoted"]
        summary["promotion_median_s"], summary["promotion_p90_s"] = _quantiles(done)
    else:
        delays = [o.at - (o.onset or 0.0) for o in rollbacks]
        summary["delay_median_s"], summary["delay_p90_s"] = _quantiles(delays)
        summary["missed"] = n - len(rollbacks)
        lags = [o.flagger_at - (o.onset or 0.0) for o in flagger if o.flagger_at is not None]
        summary["flagger_median_s"], summary["flagger_p90_s"] = _quantiles(lags)
    summary["target"], summary["met"] = _target(scenario, summary)
    return summary


def _target(scenario: Scenario, summary: dict[str, Any]) -> tuple[str, bool | None]:
    if scenario.target_median is not None:
        median = summary.get("delay_median_s")
        half_caught = summary["rollbacks"] * 2 > summary["canaries"]
        return f"median <= {scenario.target_median:g} s", bool(half_caught and median is not None
                                                               and median <= scenario.target_median)
    if scenario.target_false is not None:
        target = f"rollbacks <= {100 * scenario.target_false:g}%"
        if summary["rollback_share"] <= scenario.target_false:
            return target, True
        if summary["rollback_share_lower95"] <= scenario.target_false:  # over, but too few canaries to say so
            return target + " (too few canaries to tell)", None
        return target, False
    return "reported", None


def peak_crossings(outcomes: list[Outcome], level: float) -> dict[str, float]:
    """Per check, the share of canaries whose statistic ever reached `level`."""
    names = sorted({name for o in outcomes for name in o.peaks})
    return {name: sum(o.peaks.get(name, 0.0) >= level for o in outcomes) / max(len(outcomes), 1) for name in names}


def calibrate(scenarios: list[Scenario], canaries: int, seed: int, interval: int, workers: int) -> dict[str, Any]:
    """Healthy promotions with no threshold in reach (false-rollback rate 1e-12): how often each check's statistic
    ever reaches h, for a range of h, and that share times exp(h) -- the constant a restart allowance stands for."""
    report: dict[str, Any] = {}
    for scenario in scenarios:
        outcomes = simulate(scenario, canaries, seed=seed, interval=interval, workers=workers,
                            false_rollback_rate=1e-12)
        report[scenario.name] = {f"{level:g}": {m: {"share": v, "times_exp_h": v * math.exp(level)}
                                                for m, v in peak_crossings(outcomes, level).items()}
                                 for level in (7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 11.0)}
        print(f"{scenario.name} ({canaries} canaries): share reaching h (x exp(h))", flush=True)
        for level, checks in report[scenario.name].items():
            print(f"  h={level}: " + ", ".join(f"{m} {100 * c['share']:.3f}% (x{c['times_exp_h']:.1f})"
                                             for m, c in checks.items()))
    return report


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}" if value >= 10 else f"{value:.1f}{unit}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | canary req/s | canaries | rollbacks (95% upper) | onset->rollback median / p90 | "
             "Flagger-style rollbacks | Flagger-style median / p90 | target | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = f"{100 * r['rollback_share']:.2f}% ({100 * r['rollback_share_upper95']:.2f}%)"
        if "delay_median_s" in r:
            ours = f"{_fmt(r.get('delay_median_s'), ' s')} / {_fmt(r.get('delay_p90_s'), ' s')}"
        elif r["unfinished"] == r["canaries"]:
            ours = "held (no data) to the end"
        else:
            ours = f"promoted in {_fmt(r.get('promotion_median_s'), ' s')} (median)"
        flag = f"{_fmt(r.get('flagger_median_s'), ' s')} / {_fmt(r.get('flagger_p90_s'), ' s')}" \
            if "flagger_median_s" in r else "-"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lines.append(f"| {r['scenario']} | {r['rate']:g} | {r['canaries']} | {r['rollbacks']} = {share} | {ours} | "
                     f"{r['flagger_rollbacks']} = {100 * r['flagger_share']:.1f}% | {flag} | {r['target']} | {met} |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--canaries", type=int, default=2000, help="canaries per healthy rate (others a share)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--interval", type=int, default=5, help="analysis interval, seconds (the policy's)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="200 canaries per healthy rate: a smoke run")
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure how often healthy canaries' statistics reach each level (the restart allowance)")
    args = parser.parse_args(argv)
    canaries = 200 if args.quick else args.canaries
    if canaries < 1 or args.interval < 1:
        parser.error("--canaries and --interval must be positive")
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    policy = bench_policy(args.interval)
    probe = Analysis(policy, started_at=0.0, ttft_threshold=SLO_SECONDS)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {args.workers} workers, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; Python {platform.python_version()}, numpy "
          f"{np.__version__}")
    print(f"policy: steps {policy.steps}, dwell {policy.min_dwell_seconds} s, {policy.min_requests} requests a step, "
          f"interval {policy.interval_seconds} s, false-rollback rate {policy.false_rollback_rate}; thresholds "
          + ", ".join(f"{metric} {value:.2f}" for metric, value in probe.thresholds.items()))
    started = time.perf_counter()
    if args.calibrate:
        healthy = [s for s in chosen if s.onset == "none" and s.rate > 0]
        report = calibrate(healthy, canaries, args.seed, args.interval, args.workers)
        print(f"\n{time.perf_counter() - started:.0f} s wall")
        if args.json:
            args.json.write_text(json.dumps({"machine": cpu_model(), "calibration": report}, indent=2))
        return 0
    rows = []
    for scenario in chosen:
        n = max(1, round(canaries * scenario.canaries))
        outcomes = simulate(scenario, n, seed=args.seed, interval=args.interval, workers=args.workers)
        rows.append(summarize(scenario, outcomes))
        print(f"  {scenario.name}: {n} canaries, {rows[-1]['intervals']} intervals, "
              f"{time.perf_counter() - started:.0f} s so far", flush=True)
    wall = time.perf_counter() - started
    print()
    print(table(rows))
    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"\n{wall:.0f} s wall; command: .venv/bin/python scripts/bench_analysis.py {command}")
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_model(), "cpus": os.cpu_count(), "wall_seconds": wall,
                                         "command": command, "thresholds": probe.thresholds,
                                         "policy": policy.model_dump(), "scenarios": [asdict(s) for s in chosen],
                                         "results": rows}, indent=2, default=str))
    missed = [r["scenario"] for r in rows if r["met"] is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
