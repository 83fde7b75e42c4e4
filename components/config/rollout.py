"""A model's release policy (`models[].rollout`): what the release controller judges a canary on, the limit and the
action for each signal, and the promotion steps. Typed and checked like the rest of the stack file; the statistics
that apply it live in `llmops.release`.

Two kinds of signal:
- compared with the stable release over the same window (`error_rate`, `ttft_p95`): a sequential test decides when
  the canary is worse than stable by `worseThanStable` times, as soon as the evidence is enough;
- judged against an absolute limit (`ttft_p95`'s `max`, `tokens_per_request`, `toxicity`, `groundedness`,
  `task_completion`): a breach is decided when the limit is outside the signal's confidence bound, not on one noisy
  sample.
Without data nothing is decided: the step holds and says so; it never rolls back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.config.base import PinnedImage, Section, invalid

Action = Literal["rollback", "pause_for_review"]
MetricName = Literal["error_rate", "ttft_p95", "tokens_per_request", "toxicity", "groundedness", "task_completion"]

# Which limits each signal takes: "max" (breach above), "min" (breach below), "ratio" (worseThanStable).
LIMITS: dict[str, frozenset[str]] = {
    "error_rate": frozenset({"ratio", "max"}),
    "ttft_p95": frozenset({"ratio", "max"}),
    "tokens_per_request": frozenset({"max"}),
    "toxicity": frozenset({"max"}),
    "groundedness": frozenset({"min"}),
    "task_completion": frozenset({"min"}),
}
COMPARED = frozenset({"error_rate", "ttft_p95"})  # judged canary against stable


class RolloutMetric(Section):
    metric: MetricName
    max: float | None = Field(default=None, ge=0)
    min: float | None = Field(default=None, ge=0, le=1)
    # The regression the sequential test is built to detect: canary worse than stable by this factor.
    worse_than_stable: float | None = Field(default=None, gt=1, le=100)
    action: Action
    automatic: bool = True  # taken without a person, where the rollout's allowAutomatic permits it

    @model_validator(mode="after")
    def _limits_fit_the_metric(self) -> RolloutMetric:
        allowed = LIMITS[self.metric]
        given = {"max": self.max, "min": self.min, "ratio": self.worse_than_stable}
        names = {"max": "max", "min": "min", "ratio": "worseThanStable"}
        for kind, value in given.items():
            if value is not None and kind not in allowed:
                expected = " or ".join(names[k] for k in sorted(allowed))
                raise invalid(names[kind], value, f"{self.metric} takes {expected}")
        if self.metric not in COMPARED and all(given[k] is None for k in allowed):
            raise invalid(None, self.metric, f"expected a limit for {self.metric}: "
                          + " or ".join(names[k] for k in sorted(allowed)))
        return self

    @property
    def ratio(self) -> float | None:
        """worseThanStable, with the defaults of the compared signals (2x the errors, 1.5x the slow first tokens)."""
        if self.metric not in COMPARED:
            return None
        return self.worse_than_stable or (2.0 if self.metric == "error_rate" else 1.5)


def default_metrics() -> list[RolloutMetric]:
    """The table a user of this stack would write: objective signals roll back, noisy quality signals pause.
    ttft_p95 without `max` is held to the model's SLO threshold."""
    return [
        RolloutMetric(metric="error_rate", action="rollback"),
        RolloutMetric(metric="ttft_p95", action="rollback"),
        RolloutMetric(metric="toxicity", max=0.004, action="rollback"),
        RolloutMetric(metric="groundedness", min=0.82, action="pause_for_review"),
        RolloutMetric(metric="task_completion", min=0.91, action="rollback"),
    ]


class ShadowGates(Section):
    """What `llmops release compare` requires of a shadow release (its mirrored answers joined with the primary's by
    request id) before it is promotable -- and, read back from its pushed verdict, before the release controller lets
    that release's canary take traffic. Unset: these defaults."""
    min_pairs: int = Field(default=100, ge=1, le=10_000_000)  # joined pairs below this: nothing to judge on
    # Completion tokens: shadow's sum over primary's sum, minus one (0.15 = at most 15 % more tokens).
    max_token_increase: float = Field(default=0.15, ge=0, le=10)
    # Shadow p95 latency: within this many times the primary's p95 over the same requests, or within max_seconds.
    latency_p95_ratio: float = Field(default=1.2, ge=1, le=100)
    latency_p95_max_seconds: float | None = Field(default=None, gt=0, le=3600)
    # Refusal rate: shadow's minus primary's, as a fraction (0.02 = 2 percentage points).
    max_refusal_increase: float = Field(default=0.02, ge=0, le=1)
    # Quality, only from a calibrated judge: the upper bound of the shadow's win rate's 95 % interval.
    min_judge_win_upper: float = Field(default=0.5, ge=0, le=1)
    min_judge_kappa: float = Field(default=0.6, ge=-1, le=1)  # a judge's agreement with people before it gates
    require_judge: bool = False  # true: without a calibrated judge the quality gate fails
    # The release controller holds a canary whose release the latest comparison (pushed within verdictMaxAgeSeconds)
    # refused; with requireComparison it also holds one whose release has no such comparison at all.
    gate_canary: bool = True
    require_comparison: bool = False
    verdict_max_age_seconds: int = Field(default=7 * 86400, ge=60, le=90 * 86400)


class Rollout(Section):
    steps: list[int] = Field(default=[5, 10, 25, 50, 100], min_length=1, max_length=20)  # canary weight, percent
    min_dwell_seconds: int = Field(default=60, ge=0, le=86400)  # at each step before it may promote
    min_requests: int = Field(default=200, ge=1, le=10_000_000)  # canary requests at each step before promoting
    interval_seconds: int = Field(default=5, ge=1, le=300)  # how often the controller reads the signals
    # The chance, over a whole promotion, that a canary no worse than stable is rolled back.
    false_rollback_rate: float = Field(default=0.002, gt=0, le=0.05)
    # What the controller may do without a person; anything else waits for an approval.
    allow_automatic: list[Literal["promote", "rollback", "pause_for_review"]] = ["promote", "rollback",
                                                                                  "pause_for_review"]
    metrics: list[RolloutMetric] = Field(default_factory=default_metrics, min_length=1)
    shadow: ShadowGates | None = None  # the shadow comparison's gates (llmops release compare)

    @model_validator(mode="after")
    def _coherent(self) -> Rollout:
        for index, weight in enumerate(self.steps):
            if not 1 <= weight <= 100:
                raise invalid(f"steps[{index}]", weight, "expected a canary weight from 1 to 100 (percent)")
            if index and weight <= self.steps[index - 1]:
                raise invalid(f"steps[{index}]", weight, f"expected more than the step before ({self.steps[index - 1]}):"
                              " steps must increase")
        if self.steps[-1] != 100:
            raise invalid(f"steps[{len(self.steps) - 1}]", self.steps[-1], "expected the last step to be 100 (the "
                          "canary takes all traffic, then becomes the stable release)")
        seen: set[str] = set()
        for index, metric in enumerate(self.metrics):
            if metric.metric in seen:
                raise invalid(f"metrics[{index}].metric", metric.metric, "expected each metric once")
            seen.add(metric.metric)
            if metric.automatic and metric.action not in self.allow_automatic:
                raise invalid(f"metrics[{index}].automatic", True,
                              f"expected false: allowAutomatic ({', '.join(self.allow_automatic) or 'nothing'}) does "
                              f"not include {metric.action}, so a {metric.metric} breach must wait for a person")
        return self

    def metric(self, name: str) -> RolloutMetric | None:
        return next((m for m in self.metrics if m.metric == name), None)


class ReleaseController(Section):
    """The controller that applies the models' rollout policies, one per region (`llmops release watch`)."""
    image: PinnedImage  # this project's image (components/images/llmops.Dockerfile)
    # Its own alert fires when it has made no decision for this many of the slowest model's intervals.
    stalled_intervals: int = Field(default=6, ge=2, le=100)
