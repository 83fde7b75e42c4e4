"""The sequential statistics the release checks share: log-likelihood ratios that need only the counter increases
Prometheus gives per interval, a one-sided CUSUM over a few alternatives, and the threshold that keeps the chance
of a false alarm over a whole promotion at the policy's target. Pure math, no state beyond the `Cusum` record.

Why a CUSUM (the log-likelihood ratio floored at 0) and not Wald's SPRT: under a healthy canary the plain ratio
drifts down, and a regression that starts an hour into the promotion would first have to climb out of that hole.
Flooring at 0 forgets the evidence of health, so detection time does not depend on when the regression begins.
The price is that the statistic gets a fresh chance to cross at every restart, so the threshold is set a little
above Ville's log(1/alpha) by an allowance measured with scripts/bench_analysis.py (`RESTART_ALLOWANCE`,
`ERRORS_RESTART_ALLOWANCE`).
(A floor at -c instead of 0 is the same test with the threshold raised by c and a head start of c.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Measured (scripts/bench_analysis.py --calibrate): with the floor at 0 and two alternatives, the chance that a
# check's statistic ever reaches h during a promotion of the default policy (steps 5-100, 60 s dwell, 200 requests,
# 5 s interval) at 0.1 to 10 canary requests/s is about 2 to 4.5 times exp(-h) for errors and 5 to 9.5 times for
# slow first tokens, which come several times as often and so restart the test more. The threshold adds the log of
# that constant to Ville's log(1/alpha): 4 for errors, 8 for everything else (the judges' shortfalls and token
# counts are at least as frequent as slow first tokens). The chances grow a little faster than the promotion's
# length: with the prod policy (steps 1-100, 300 s dwell: 6.25 times the time beside the stable) about 40 times,
# whence the length term's exponent, 1.25.
RESTART_ALLOWANCE = math.log(8.0)
ERRORS_RESTART_ALLOWANCE = math.log(4.0)
LENGTH_EXPONENT = 1.25
# A check says 'pass' when the current step's evidence favours "no worse than the limit" over the smallest regression
# it is built for by 20 to 1 (Wald's acceptance boundary for beta = 0.05). Informative only: promotion never needs it.
ACCEPT_ODDS = 20.0
# The alternatives each check watches, as multiples of its design effect: the effect the policy names (x1), found
# with the fewest events when it is that small, and x5 (an order of magnitude for the default 2x errors), which a
# hard failure crosses in a few events. Two alternatives, not a grid: each costs false alarms (measured).
ALTERNATIVE_FACTORS = (1.0, 5.0)
# The default policy's dwell at the steps that share traffic with the stable (5, 10, 25, 50%: 4 x 60 s), for which
# RESTART_ALLOWANCE was measured; longer promotions add the log of how much longer.
DEFAULT_SHARING_SECONDS = 240.0
_TINY = 1e-9


def threshold(false_rollback_rate: float, tests: int = 1, sharing_seconds: float = DEFAULT_SHARING_SECONDS,
              allowance: float = RESTART_ALLOWANCE) -> float:
    """The level a CUSUM must reach to fail when `false_rollback_rate` is shared evenly by `tests` CUSUMs over a
    promotion whose steps below 100% dwell `sharing_seconds` in all (a CUSUM's chances to cross grow with it)."""
    if not 0 < false_rollback_rate < 1:
        raise ValueError(f"false_rollback_rate must be in (0, 1), got {false_rollback_rate}")
    if tests < 1:
        raise ValueError(f"tests must be at least 1, got {tests}")
    longer = max(1.0, sharing_seconds / DEFAULT_SHARING_SECONDS)
    return math.log(tests / false_rollback_rate) + allowance + LENGTH_EXPONENT * math.log(longer)


def split_llr(canary_events: float, stable_events: float, canary_share: float, ratio: float) -> float:
    """Evidence that the canary's per-request event rate is `ratio` times the stable's, from one interval's events.

    Given the interval's events, under "equal rates" each is the canary's with probability `canary_share` (its share
    of the requests, q0); under "canary worse by ratio" with q1 = k q0 / (k q0 + 1 - q0). Conditioning on the total
    makes the test immune to what both releases share (a dependency outage, a burst of bad prompts)."""
    q0 = canary_share
    if not _TINY < q0 < 1 - _TINY or canary_events + stable_events <= 0:
        return 0.0
    q1 = ratio * q0 / (ratio * q0 + 1 - q0)
    return canary_events * math.log(q1 / q0) + stable_events * math.log((1 - q1) / (1 - q0))


def share_llr(events: float, trials: float, limit: float, alternative: float) -> float:
    """Evidence that a share (errors per request, slow first tokens, a judge's mean score) is `alternative`, not at
    most `limit`, from `events` out of `trials` in one interval.

    It is the binomial log-likelihood ratio, and because it is linear in the events it stays a supermartingale for
    any scores in [0, 1] whose mean is at most `limit` (Bernoulli scores are the worst case), so it needs only the
    interval's (sum, count)."""
    if trials <= 0:
        return 0.0
    p0 = min(max(limit, _TINY), 1 - _TINY)
    p1 = min(max(alternative, _TINY), 1 - _TINY)
    return events * math.log(p1 / p0) + (trials - events) * math.log((1 - p1) / (1 - p0))


def gaussian_llr(total: float, count: float, limit: float, alternative: float, variance: float) -> float:
    """Evidence that a per-request mean is `alternative`, not `limit`, from a sum over `count` requests with the
    per-request `variance` (estimated beforehand): the normal approximation, for unbounded counts like tokens."""
    if count <= 0 or variance <= 0:
        return 0.0
    return (alternative - limit) / variance * (total - count * (limit + alternative) / 2)


@dataclass
class Cusum:
    """One-sided CUSUMs, one per alternative, plus this step's unfloored sum for the first (the design effect)."""
    alternatives: tuple[float, ...]
    values: list[float] = field(default_factory=list)
    step_llr: float = 0.0
    peak: float = 0.0  # the largest statistic seen, for the evidence

    def __post_init__(self) -> None:
        if not self.values:
            self.values = [0.0] * len(self.alternatives)

    @property
    def statistic(self) -> float:
        return max(self.values)

    def update(self, llrs: Sequence[float]) -> None:
        values = self.values
        for index, llr in enumerate(llrs):
            value = values[index] + llr
            values[index] = value if value > 0.0 else 0.0
        self.step_llr += llrs[0]
        statistic = max(values)
        if statistic > self.peak:
            self.peak = statistic

    def accepted(self) -> bool:
        return self.step_llr <= -math.log(ACCEPT_ODDS)

    def state(self) -> dict[str, Any]:
        return {"values": list(self.values), "step_llr": self.step_llr, "peak": self.peak}

    def restore(self, state: dict[str, Any]) -> None:
        values = [float(v) for v in state.get("values", [])]
        if len(values) == len(self.alternatives):
            self.values = values
        self.step_llr = float(state.get("step_llr", 0.0))
        self.peak = float(state.get("peak", self.statistic))


def events_to_detect(ratio: float, canary_share: float, level: float, alternatives: Sequence[float]) -> float:
    """About how many canary events (errors, slow first tokens) a check needs to cross `level` when the canary is
    really `ratio` times worse and takes `canary_share` of the requests: the level over the mean evidence per canary
    event (which carries its share of stable events), for the best alternative. Wald's approximation; no overshoot."""
    q0 = canary_share
    stable_per_canary = (1 - q0) / (ratio * q0)
    best = max(split_llr(1.0, stable_per_canary, q0, k) for k in alternatives)
    return math.inf if best <= 0 else level / best


def samples_to_detect(share: float, limit: float, level: float, alternatives: Sequence[float]) -> float:
    """About how many scored requests an absolute check needs to cross `level` when the share it watches (errors,
    slow first tokens, a judge's shortfall) is really `share` against a `limit`: the level over the mean evidence
    per request (the Kullback-Leibler divergence), for the best alternative. Wald's approximation; no overshoot."""
    best = max(share * math.log(p / limit) + (1 - share) * math.log((1 - p) / (1 - limit)) for p in alternatives)
    return math.inf if best <= 0 else level / best
