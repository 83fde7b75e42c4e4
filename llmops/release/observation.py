"""What the release analysis reads each interval: the increases of the canary's and the stable's counters over the
same window (as Prometheus `increase()` gives them, so possibly fractional), and the canary's judge scores.
Missing means no data, never zero errors: an absent histogram or judge is `()` or not in the mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

Histogram = tuple[tuple[float, float], ...]  # (le seconds, cumulative count) pairs, +Inf as math.inf
NO_QUALITY: Mapping[str, tuple[float, float]] = MappingProxyType({})


class Traffic(NamedTuple):
    """One release's counter increases over an interval. (Named tuples: a replay builds millions.)"""
    requests: float = 0.0
    errors: float = 0.0  # 5xx responses
    ttft: Histogram = ()  # vllm:time_to_first_token_seconds bucket increases

    @property
    def error_count(self) -> float:
        """Errors clamped to [0, requests]: increase() extrapolates, and a counter reset reads as negative."""
        return min(max(self.errors, 0.0), max(self.requests, 0.0))

    @property
    def served(self) -> float:
        return max(self.requests, 0.0)


class Observation(NamedTuple):
    """One analysis interval ending at `time` (seconds, any epoch, increasing)."""
    time: float
    canary: Traffic = Traffic()
    stable: Traffic = Traffic()
    # The canary's quality signals: judge name -> (sum of scores in [0, 1], scored requests); tokens_per_request ->
    # (tokens, requests).
    quality: Mapping[str, tuple[float, float]] = NO_QUALITY


def histogram_total(histogram: Histogram) -> float:
    """Requests the histogram counted: its +Inf bucket (or its largest, if +Inf is missing)."""
    if not histogram:
        return 0.0
    le, count = histogram[-1]
    if le == math.inf:  # the exposition order: +Inf last
        return max(count, 0.0)
    return max(max(count for _, count in histogram), 0.0)


def slower_than(histogram: Histogram, bound: float, total: float | None = None) -> float | None:
    """Requests slower than `bound` (which must be one of the histogram's bucket bounds); None if it is not one."""
    for le, count in histogram:
        if le == bound:
            return max((histogram_total(histogram) if total is None else total) - count, 0.0)
    return None


def quantile_bound(bounds: Sequence[float], cumulative: Sequence[float], quantile: float) -> float | None:
    """The smallest bucket bound at or above the `quantile` of a histogram given as sorted bounds and cumulative
    counts; None when it is empty or the quantile falls in the +Inf bucket."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    target = quantile * cumulative[-1]
    for le, count in zip(bounds, cumulative, strict=True):
        if count >= target:
            return None if math.isinf(le) else le
    return None


def bound_at_or_above(bounds: Sequence[float], value: float) -> float | None:
    """The smallest finite bucket bound >= value: counting requests slower than it never overstates a breach."""
    above = [le for le in bounds if le >= value and not math.isinf(le)]
    return min(above) if above else None
