"""One check per metric of a rollout policy: it reads each interval's `Observation`, keeps its evidence (CUSUMs from
`llmops.release.sequential`) across the whole promotion, and says pass, fail, undecided or no data with the counts
behind it. The evidence is not reset when the weight changes: the conditional tests adjust for the split of traffic
each interval, so every request the canary served counts, and the false-alarm budget is spent once per promotion.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

from components.config.rollout import RolloutMetric
from llmops.release.observation import (
    Histogram,
    Observation,
    bound_at_or_above,
    histogram_total,
    quantile_bound,
    slower_than,
)
from llmops.release.sequential import (
    ALTERNATIVE_FACTORS,
    ERRORS_RESTART_ALLOWANCE,
    RESTART_ALLOWANCE,
    Cusum,
    gaussian_llr,
    share_llr,
    split_llr,
)

Verdict = Literal["pass", "fail", "undecided", "no_data"]

# Absolute limits on shares (error_rate.max, the judges): the regression each is built for, as multiples of the limit.
SHARE_ALTERNATIVES = (1.5, 5.0)
# A limit of 0 ("none at all") cannot be proved broken by a ratio: it is judged as this small share instead.
SHARE_FLOOR = 1e-4
# ttft_p95 against `max` (or the SLO threshold): the p95 is over it when more than 5% of first tokens are slower.
SLOW_SHARE = 0.05
# tokens_per_request: 10% and 50% over the limit; the variance comes from the spread between intervals, so the check
# waits for this many intervals with data before it weighs any.
TOKEN_ALTERNATIVES = (1.1, 1.5)
TOKEN_MIN_INTERVALS = 10


def _share_limit(limit: float) -> float:
    return max(limit, SHARE_FLOOR)


def _share_alternatives(limit: float) -> tuple[float, ...]:
    return tuple(min(_share_limit(limit) * factor, (1 + limit) / 2) for factor in SHARE_ALTERNATIVES)


def _ratio_alternatives(ratio: float) -> tuple[float, ...]:
    return tuple(ratio * factor for factor in ALTERNATIVE_FACTORS)


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.3g}%"


class Check:
    """The shared shape: named sub-tests (CUSUMs), a sticky failure, per-step counts, evidence."""
    metric: RolloutMetric
    subtests: list[tuple[str, Cusum]]  # (name, CUSUM): vs_stable, max or min
    threshold: float = math.inf  # set by Analysis: the metric's share of the false-rollback budget
    allowance: float = RESTART_ALLOWANCE  # for the CUSUM's restarts (measured; see sequential.py)
    failed_test: str | None = None

    def __init__(self, metric: RolloutMetric) -> None:
        self.metric = metric

    @property
    def tests(self) -> int:
        return len(self.subtests)

    @property
    def failed(self) -> bool:
        return self.failed_test is not None

    def observe(self, observation: Observation) -> None:
        raise NotImplementedError

    def has_data(self) -> bool:
        raise NotImplementedError

    def start_step(self) -> None:
        """A new step: the counts and the acceptance evidence restart; the CUSUMs carry on."""
        for _, cusum in self.subtests:
            cusum.step_llr = 0.0

    def restart(self) -> None:
        """After a person reviewed a failure and resumed: the evidence starts afresh."""
        self.failed_test = None
        for _, cusum in self.subtests:
            cusum.values = [0.0] * len(cusum.alternatives)
            cusum.step_llr = 0.0
            cusum.peak = 0.0

    def _judge(self) -> None:
        if self.failed_test is None:
            for name, cusum in self.subtests:
                if cusum.statistic >= self.threshold:
                    self.failed_test = name
                    return

    def verdict(self) -> Verdict:
        if self.failed:
            return "fail"
        if not self.has_data():
            return "no_data"
        if all(cusum.accepted() for _, cusum in self.subtests):
            return "pass"
        return "undecided"

    def statistic(self) -> float:
        return max((cusum.statistic for _, cusum in self.subtests), default=0.0)

    def counts(self) -> dict[str, float]:
        raise NotImplementedError

    def rates(self) -> dict[str, float | None]:
        raise NotImplementedError

    def limit(self) -> dict[str, float | None]:
        raise NotImplementedError

    def summary(self) -> str:
        """One line on what the data say, for a decision's reason."""
        raise NotImplementedError

    def evidence(self) -> dict[str, Any]:
        """What a decision shows for this metric: the verdict, this step's counts and rates, the statistic (the
        largest CUSUM; `statistics` has each sub-test's), the threshold it fails at, and the limits."""
        statistics = {name: cusum.statistic for name, cusum in self.subtests}
        return {
            "metric": self.metric.metric,
            "verdict": self.verdict(),
            "action": self.metric.action,
            "counts": self.counts(),
            "rates": self.rates(),
            "statistic": max(statistics.values()),
            "threshold": self.threshold,
            "limit": self.limit(),
            "statistics": statistics,
            "failed_test": self.failed_test,
        }

    def state(self) -> dict[str, Any]:
        return {"failed_test": self.failed_test, "tests": {name: c.state() for name, c in self.subtests}}

    def restore(self, state: dict[str, Any]) -> None:
        self.failed_test = state.get("failed_test")
        tests = state.get("tests", {})
        for name, cusum in self.subtests:
            if name in tests:
                cusum.restore(tests[name])


class ErrorRateCheck(Check):
    """5xx share: the canary against the stable in the same intervals (`worseThanStable`), and, when `max` is set,
    against that absolute ceiling."""
    allowance = ERRORS_RESTART_ALLOWANCE

    def __init__(self, metric: RolloutMetric) -> None:
        super().__init__(metric)
        self.vs_stable = Cusum(_ratio_alternatives(metric.ratio or 2.0))
        self.ceiling = Cusum(_share_alternatives(metric.max)) if metric.max is not None else None
        self.subtests = [("vs_stable", self.vs_stable)] + ([("max", self.ceiling)] if self.ceiling else [])
        self.step = {"canary_requests": 0.0, "canary_errors": 0.0, "stable_requests": 0.0, "stable_errors": 0.0}


    def observe(self, observation: Observation) -> None:
        canary, stable = observation.canary, observation.stable
        requests, errors = canary.served, canary.error_count
        stable_requests, stable_errors = stable.served, stable.error_count
        if requests <= 0 and stable_requests <= 0:
            return
        if requests > 0 and stable_requests > 0 and errors + stable_errors > 0:
            share = requests / (requests + stable_requests)
            self.vs_stable.update([split_llr(errors, stable_errors, share, k) for k in self.vs_stable.alternatives])
        if self.ceiling is not None and requests > 0 and self.metric.max is not None and self.metric.max < 1:
            limit = _share_limit(self.metric.max)
            self.ceiling.update([share_llr(errors, requests, limit, p) for p in self.ceiling.alternatives])
        step = self.step
        step["canary_requests"] += requests
        step["canary_errors"] += errors
        step["stable_requests"] += stable_requests
        step["stable_errors"] += stable_errors
        self._judge()

    def has_data(self) -> bool:
        return self.step["canary_requests"] > 0

    def start_step(self) -> None:
        super().start_step()
        self.step = dict.fromkeys(self.step, 0.0)

    def counts(self) -> dict[str, float]:
        return dict(self.step)

    def rates(self) -> dict[str, float | None]:
        return {"canary": _rate(self.step["canary_errors"], self.step["canary_requests"]),
                "stable": _rate(self.step["stable_errors"], self.step["stable_requests"])}

    def limit(self) -> dict[str, float | None]:
        return {"worse_than_stable": self.metric.ratio, "max": self.metric.max}

    def summary(self) -> str:
        rates = self.rates()
        text = (f"error_rate: canary {_percent(rates['canary'])} of {self.step['canary_requests']:.0f} requests vs "
                f"stable {_percent(rates['stable'])} this step")
        if self.failed_test == "max":
            return f"{text}; confidently above the {_percent(self.metric.max)} max " \
                   f"(evidence {self.statistic():.1f} >= {self.threshold:.1f})"
        return f"{text}; evidence {self.vs_stable.statistic:.1f} (rolls back at {self.threshold:.1f}) " \
               f"that it is {self.metric.ratio:g}x worse or more"

    def state(self) -> dict[str, Any]:
        return {**super().state(), "step": dict(self.step)}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.step.update({k: float(v) for k, v in state.get("step", {}).items() if k in self.step})


class TtftCheck(Check):
    """Time to first token, from the histogram buckets. Against the stable: the share of first tokens slower than
    the bucket bound at or above the stable's p95 (taken from the stable's earlier intervals, so it never depends on
    the interval it judges). Against `max` (else the model's SLO threshold): the canary's p95 is over it when more
    than 5% of its first tokens are slower than that bound."""

    def __init__(self, metric: RolloutMetric, slo_threshold: float | None = None) -> None:
        super().__init__(metric)
        self.vs_stable = Cusum(_ratio_alternatives(metric.ratio or 1.5))
        self.limit_seconds = metric.max if metric.max is not None else slo_threshold
        self.ceiling = Cusum(_share_alternatives(SLOW_SHARE)) if self.limit_seconds is not None else None
        self.subtests = [("vs_stable", self.vs_stable)] + ([("max", self.ceiling)] if self.ceiling else [])
        # The stable's cumulative bucket counts over the promotion, aligned with the bucket bounds `les`.
        self.les: list[float] = []
        self.history: list[float] = []
        self.bound: float | None = None  # the bound the last comparison used
        self._layout: tuple[int, float, float] | None = None
        self._index: dict[float, int] = {}  # bucket bound -> position in the histograms of that layout
        self._limit_bound: float | None = None
        self._p95_bound: float | None = None
        self._p95_at = 0.0  # the history's total when _p95_bound was taken
        # canary/stable_compared: the requests of the intervals compared (there was a bound and both had traffic)
        self.step = {"canary_requests": 0.0, "canary_compared": 0.0, "canary_slow": 0.0, "stable_requests": 0.0,
                     "stable_compared": 0.0, "stable_slow": 0.0, "canary_over_limit": 0.0}

    def _learn_layout(self, histogram: Histogram) -> None:
        """Bucket positions, the limit's bucket, and the history re-aligned: once per bucket layout (vLLM's is fixed,
        so in practice once)."""
        les = [le for le, _ in histogram]
        self._layout = (len(histogram), histogram[0][0], histogram[-1][0])
        self._index = {le: position for position, le in enumerate(les)}
        self._limit_bound = None if self.limit_seconds is None else bound_at_or_above(les, self.limit_seconds)
        if les != self.les:
            old = dict(zip(self.les, self.history, strict=True))
            self.les = sorted(set(les) | set(old))
            self.history = [old.get(le, 0.0) for le in self.les]
            self._p95_bound, self._p95_at = None, 0.0

    def _slower(self, histogram: Histogram, bound: float, total: float) -> float | None:
        position = self._index.get(bound)
        if position is not None and position < len(histogram) and histogram[position][0] == bound:
            return max(total - histogram[position][1], 0.0)
        return slower_than(histogram, bound, total)

    def _stable_p95_bound(self) -> float | None:
        """From the stable's earlier intervals; looked up again when they have grown by a tenth (p95 moves slowly)."""
        total = self.history[-1] if self.history else 0.0
        if total > self._p95_at * 1.1 or (self._p95_bound is None and total > self._p95_at):
            self._p95_at = total
            self._p95_bound = quantile_bound(self.les, self.history, 0.95)
        return self._p95_bound

    def observe(self, observation: Observation) -> None:
        canary_hist, stable_hist = observation.canary.ttft, observation.stable.ttft
        if not canary_hist and not stable_hist:
            return
        for histogram in (canary_hist, stable_hist):
            if histogram and (len(histogram), histogram[0][0], histogram[-1][0]) != self._layout:
                self._learn_layout(histogram)
        canary_total, stable_total = histogram_total(canary_hist), histogram_total(stable_hist)
        limit_bound = self._limit_bound if canary_hist else None
        bound = self._stable_p95_bound() or limit_bound
        step = self.step
        if bound is not None and canary_total > 0 and stable_total > 0:
            canary_slow = self._slower(canary_hist, bound, canary_total)
            stable_slow = self._slower(stable_hist, bound, stable_total)
            if canary_slow is not None and stable_slow is not None:
                self.bound = bound
                if canary_slow + stable_slow > 0:
                    share = canary_total / (canary_total + stable_total)
                    self.vs_stable.update([split_llr(canary_slow, stable_slow, share, k)
                                           for k in self.vs_stable.alternatives])
                step["canary_slow"] += canary_slow
                step["stable_slow"] += stable_slow
                step["canary_compared"] += canary_total
                step["stable_compared"] += stable_total
        if self.ceiling is not None and limit_bound is not None and canary_total > 0:
            over = self._slower(canary_hist, limit_bound, canary_total) or 0.0
            self.ceiling.update([share_llr(over, canary_total, SLOW_SHARE, p) for p in self.ceiling.alternatives])
            step["canary_over_limit"] += over
        if stable_total > 0:
            self._add_to_history(stable_hist)
        step["canary_requests"] += canary_total
        step["stable_requests"] += stable_total
        self._judge()

    def _add_to_history(self, histogram: Histogram) -> None:
        if len(histogram) == len(self.history):  # the same layout: add bucket by bucket
            self.history = list(map(operator.add, self.history, map(operator.itemgetter(1), histogram)))
            return
        index = {le: position for position, le in enumerate(self.les)}
        for le, count in histogram:
            self.history[index[le]] += count

    def has_data(self) -> bool:
        return self.step["canary_requests"] > 0

    def start_step(self) -> None:
        super().start_step()
        self.step = dict.fromkeys(self.step, 0.0)

    def counts(self) -> dict[str, float]:
        return dict(self.step)

    def rates(self) -> dict[str, float | None]:
        step = self.step
        return {"canary_slow": _rate(step["canary_slow"], step["canary_compared"]),
                "stable_slow": _rate(step["stable_slow"], step["stable_compared"]),
                "canary_over_limit": _rate(step["canary_over_limit"], step["canary_requests"])}

    def limit(self) -> dict[str, float | None]:
        return {"worse_than_stable": self.metric.ratio, "max_seconds": self.limit_seconds, "slow_bound": self.bound,
                "slow_share_at_max": SLOW_SHARE if self.limit_seconds is not None else None}

    def summary(self) -> str:
        rates = self.rates()
        if self.failed_test == "max":
            return (f"ttft_p95: {_percent(rates['canary_over_limit'])} of canary first tokens slower than "
                    f"{self.limit_seconds:g} s this step, confidently over {_percent(SLOW_SHARE)} (p95 over the "
                    f"limit; evidence {self.statistic():.1f} >= {self.threshold:.1f})")
        bound = "n/a" if self.bound is None else f"{self.bound:g} s"
        return (f"ttft_p95: {_percent(rates['canary_slow'])} of canary first tokens slower than {bound} vs stable "
                f"{_percent(rates['stable_slow'])} this step; evidence {self.vs_stable.statistic:.1f} (rolls back at "
                f"{self.threshold:.1f}) that slow first tokens are {self.metric.ratio:g}x as common or more")

    def state(self) -> dict[str, Any]:
        history = [["+Inf" if math.isinf(le) else le, count] for le, count in zip(self.les, self.history, strict=True)]
        return {**super().state(), "step": dict(self.step), "stable_history": history, "bound": self.bound}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.step.update({k: float(v) for k, v in state.get("step", {}).items() if k in self.step})
        pairs = sorted((math.inf if le == "+Inf" else float(le), float(count))
                       for le, count in state.get("stable_history", []))
        self.les = [le for le, _ in pairs]
        self.history = [count for _, count in pairs]
        self._layout, self._p95_bound, self._p95_at = None, None, 0.0
        bound = state.get("bound")
        self.bound = None if bound is None else float(bound)


class ScoreCheck(Check):
    """A judge's mean score in [0, 1] against an absolute limit: `max` (toxicity) or `min` (groundedness,
    task_completion, judged on the shortfall 1 - score so both are 'a share must stay under a limit')."""

    def __init__(self, metric: RolloutMetric) -> None:
        super().__init__(metric)
        self.upper = metric.max is not None
        limit = metric.max if metric.max is not None else 1 - (metric.min if metric.min is not None else 0.0)
        self.share_limit = _share_limit(limit)
        self.cusum = Cusum(_share_alternatives(limit))
        self.subtests = [("max" if self.upper else "min", self.cusum)]
        self.step = {"sum": 0.0, "count": 0.0}


    def observe(self, observation: Observation) -> None:
        total, count = observation.quality.get(self.metric.metric, (0.0, 0.0))
        if count > 0:
            total = min(max(total, 0.0), count)
            events = total if self.upper else count - total
            if self.share_limit < 1:
                self.cusum.update([share_llr(events, count, self.share_limit, p) for p in self.cusum.alternatives])
            self.step["sum"] += total
            self.step["count"] += count
        self._judge()

    def has_data(self) -> bool:
        return self.step["count"] > 0

    def start_step(self) -> None:
        super().start_step()
        self.step = dict.fromkeys(self.step, 0.0)

    def counts(self) -> dict[str, float]:
        return dict(self.step)

    def rates(self) -> dict[str, float | None]:
        return {"mean": _rate(self.step["sum"], self.step["count"])}

    def limit(self) -> dict[str, float | None]:
        return {"max": self.metric.max, "min": self.metric.min}

    def summary(self) -> str:
        mean = self.rates()["mean"]
        side = f"above max {self.metric.max:g}" if self.upper else f"below min {self.metric.min:g}"
        shown = "n/a" if mean is None else f"{mean:.3g}"
        return (f"{self.metric.metric}: canary mean {shown} over {self.step['count']:g} scored requests this step; "
                f"evidence {self.cusum.statistic:.1f} (acts at {self.threshold:.1f}) that it is {side}")

    def state(self) -> dict[str, Any]:
        return {**super().state(), "step": dict(self.step)}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.step.update({k: float(v) for k, v in state.get("step", {}).items() if k in self.step})


class TokensCheck(Check):
    """Mean tokens per request against `max`. Token counts are unbounded, so this one is approximate: a normal
    likelihood ratio with the per-request variance estimated from how the interval means spread (only earlier
    intervals, and only once there are TOKEN_MIN_INTERVALS of them)."""

    def __init__(self, metric: RolloutMetric) -> None:
        super().__init__(metric)
        self.limit_tokens = metric.max if metric.max is not None else math.inf
        self.cusum = Cusum(tuple(self.limit_tokens * f for f in TOKEN_ALTERNATIVES))
        self.subtests = [("max", self.cusum)]
        self.spread = {"intervals": 0.0, "n": 0.0, "sum": 0.0, "weighted_squares": 0.0}
        self.step = {"tokens": 0.0, "requests": 0.0}


    def variance(self) -> float | None:
        s = self.spread
        if s["intervals"] < TOKEN_MIN_INTERVALS or s["n"] <= 0:
            return None
        within = (s["weighted_squares"] - s["sum"] ** 2 / s["n"]) / (s["intervals"] - 1)
        return max(within, 1.0)  # tokens are whole numbers: never claim less spread than that

    def observe(self, observation: Observation) -> None:
        tokens, requests = observation.quality.get("tokens_per_request", (0.0, 0.0))
        if requests > 0 and tokens >= 0:
            variance = self.variance()
            if variance is not None and math.isfinite(self.limit_tokens):
                self.cusum.update([gaussian_llr(tokens, requests, self.limit_tokens, alt, variance)
                                   for alt in self.cusum.alternatives])
            mean = tokens / requests
            s = self.spread
            s["intervals"] += 1
            s["n"] += requests
            s["sum"] += tokens
            s["weighted_squares"] += requests * mean * mean
            self.step["tokens"] += tokens
            self.step["requests"] += requests
        self._judge()

    def has_data(self) -> bool:
        return self.step["requests"] > 0

    def start_step(self) -> None:
        super().start_step()
        self.step = dict.fromkeys(self.step, 0.0)

    def counts(self) -> dict[str, float]:
        return dict(self.step)

    def rates(self) -> dict[str, float | None]:
        variance = self.variance()
        return {"mean": _rate(self.step["tokens"], self.step["requests"]),
                "sd_per_request": None if variance is None else math.sqrt(variance)}

    def limit(self) -> dict[str, float | None]:
        return {"max": self.metric.max}

    def summary(self) -> str:
        mean = self.rates()["mean"]
        shown = "n/a" if mean is None else f"{mean:.4g}"
        return (f"tokens_per_request: canary mean {shown} over {self.step['requests']:g} requests this step; "
                f"evidence {self.cusum.statistic:.1f} (acts at {self.threshold:.1f}) that it is above max "
                f"{self.limit_tokens:g}")

    def state(self) -> dict[str, Any]:
        return {**super().state(), "step": dict(self.step), "spread": dict(self.spread)}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.step.update({k: float(v) for k, v in state.get("step", {}).items() if k in self.step})
        self.spread.update({k: float(v) for k, v in state.get("spread", {}).items() if k in self.spread})


def make_check(metric: RolloutMetric, slo_threshold: float | None = None) -> Check:
    if metric.metric == "error_rate":
        return ErrorRateCheck(metric)
    if metric.metric == "ttft_p95":
        return TtftCheck(metric, slo_threshold)
    if metric.metric == "tokens_per_request":
        return TokensCheck(metric)
    return ScoreCheck(metric)
