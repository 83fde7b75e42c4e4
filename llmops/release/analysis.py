"""The statistics of the automatic canary release: feed `Analysis` one `Observation` per interval and it says what to
do -- continue, promote, roll back, pause for review, or hold -- with the evidence. Pure: no clock, no I/O; its
state is a JSON-able dict so a restarted controller carries on where it was.

How each signal is judged (llmops/release/checks.py, sequential.py):
- error_rate against the stable: in each interval, given the errors both releases had, each error is the canary's
  with probability q0 = its share of the requests if it is no worse; q1 = k q0 / (k q0 + 1 - q0) if it is k times
  worse. The log-likelihood ratio of the two, summed over intervals and floored at 0 (a CUSUM, so a healthy stretch
  before a regression does not delay its detection), is watched for k = worseThanStable and 5x that.
- ttft_p95 against the stable: the same test on first tokens slower than the bucket bound at or above the stable's
  p95 (from the stable's earlier intervals).
- absolute limits (error_rate.max, ttft_p95's max or the SLO threshold, toxicity, groundedness, task_completion):
  the binomial likelihood ratio of "the share is 1.5x (or 5x) the limit" against "at the limit", which stays valid
  for any scores in [0, 1] given only each interval's (sum, count); ttft's limit is "more than 5% of first tokens
  slower than max". tokens_per_request uses a normal approximation (the only one that is approximate).

False rollbacks. The policy's falseRollbackRate (0.2% by default) is the budget for a whole promotion: it is split
evenly over the metrics, and a metric's share over its sub-tests (ttft_p95 has two when it has a limit). A CUSUM
fails at h = log(1 / its share) + log C + 1.25 log(L / 240 s), L being the dwell at the steps below 100% (240 s
for the default steps). Without the floor, Ville's inequality would give at most exp(-h) however often it looks;
the floor restarts the test all along, and C and the length term are the allowance measured for that
(scripts/bench_analysis.py --calibrate: a check's statistic reaches h in about 2 to 4.5 times exp(-h) of healthy
default promotions at 0.1 to 10 canary requests/s for errors, 5 to 9.5 times for slow first tokens, which come
more often; about 40 times with the prod policy's 6.25 times longer dwell): C = 4 for error_rate, 8 for the rest.
For the default policy (five metrics, an SLO threshold) error_rate fails at h = 9.2, the judges at 9.9 (each metric
may falsely act in at most 0.04% of promotions), ttft_p95 at 10.6 (0.02% per sub-test). The benchmark's figures
(error_rate and ttft_p95 only, so h = 8.3 and 9.7) are in scripts/bench_analysis.py's output.

Sample sizes (Wald's approximation; `events_to_detect` and `samples_to_detect` for other settings). The evidence
needed is h nats. Against the stable, each canary error brings log(q1/q0) and each stable error costs a little: at
5% canary weight and h = 9.2 about 5 canary errors decide a hard failure (50% errors), 7.5 a 10x regression
(0.5% -> 5%) and 51 a 2x one (0.5% -> 1%): at 10 canary requests/s about 1 s, 15 s and 8.5 minutes of traffic. At
50% weight one canary error can bring at most log 2, so at least 14 are needed however bad the canary is (16 for a
hard failure). Slow first tokens count the same way: first tokens 1.5x slower (5.9x as many slower than the
stable's p95 bucket) take about 13 slow canary first tokens at 5% weight. Absolute limits, in scored requests:
toxicity at 5x its max takes about 610 (at 1.5x, 23,000: a limit on a rare event is slow to prove), groundedness
at 0.73 against a min of 0.82 about 400, task_completion at 0.865 against 0.91 about 910; a TTFT p95 far over its
limit (25% of first tokens slower) about 47 requests, one just over (7.5%) about 1,850.

Promotion. A step promotes when its dwell time has passed, the canary served min_requests there, no check has
failed, and every check has data at this step. 'undecided' does not block: the false-rollback rate is held
whatever the traffic, while how small a regression a step can see is what min_requests buys (200 requests at 0.5%
errors is one expected error: no test can tell 2x from 1x on that), and the evidence carries into the next steps,
where there is more traffic. Requiring 'pass' would make low-traffic models wait indefinitely.
No data never rolls back: an interval without canary requests holds ('no data'), and so does a step whose dwell and
requests are done while a check has nothing to judge (a judge that sampled nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from components.config.rollout import Rollout
from llmops.release.checks import Check, make_check
from llmops.release.observation import Observation
from llmops.release.sequential import threshold

Action = Literal["continue", "promote", "rollback", "pause_for_review", "hold"]
Phase = Literal["running", "paused", "rolled_back"]
STATE_VERSION = 1


@dataclass(frozen=True)
class Decision:
    """What the controller should do after an interval. `automatic`: it may act without a person (continue and hold
    need no one); `target_weight`: the canary weight to set (the next step for promote, 0 for rollback)."""
    action: Action
    reason: str
    weight: int
    evidence: list[dict[str, Any]] = field(default_factory=list)
    automatic: bool = True
    target_weight: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "weight": self.weight,
                "target_weight": self.target_weight, "automatic": self.automatic, "evidence": self.evidence}


class Analysis:
    """One canary's promotion under a `Rollout` policy: its checks, the current step, and the decision rules."""

    def __init__(self, policy: Rollout, *, started_at: float, step: int = 0,
                 ttft_threshold: float | None = None) -> None:
        if not 0 <= step < len(policy.steps):
            raise ValueError(f"step must index policy.steps (0..{len(policy.steps) - 1}), got {step}")
        self.policy = policy
        self.ttft_threshold = ttft_threshold  # the model's SLO threshold: ttft_p95's limit when it has no max
        self.checks: list[Check] = [make_check(metric, ttft_threshold) for metric in policy.metrics]
        # The false-rollback budget is split evenly over the metrics, and a metric's share over its sub-tests.
        sharing = sum(policy.min_dwell_seconds for weight in policy.steps if weight < 100)
        for check in self.checks:
            check.threshold = threshold(policy.false_rollback_rate, len(self.checks) * check.tests, sharing,
                                        check.allowance)
        self.step = step
        self.step_started_at = started_at
        self.step_requests = 0.0
        self.last_time = -math.inf
        self.phase: Phase = "running"
        # What the last update saw, for decision() to explain it.
        self._outcome: Literal["stale", "failed", "paused", "promote", "no_traffic", "no_data", "continue"] = \
            "no_traffic"
        self._served = 0.0
        self._dwell = 0.0
        self._stale_time = -math.inf

    @property
    def thresholds(self) -> dict[str, float]:
        """Each metric's threshold: the level its statistic must reach to fail."""
        return {check.metric.metric: check.threshold for check in self.checks}

    @property
    def weight(self) -> int:
        return self.policy.steps[self.step]

    def observe(self, observation: Observation) -> Decision:
        """Take one interval's counts and decide, with the reason and the evidence."""
        self.update(observation)
        return self.decision()

    def update(self, observation: Observation) -> Action:
        """Take one interval's counts and return only the action: what `observe` does without explaining it (for
        replaying many canaries; `decision()` explains the last update)."""
        if observation.time <= self.last_time:
            self._outcome, self._stale_time = "stale", observation.time
            return "hold"
        if self.phase == "rolled_back":
            self._outcome = "failed"
            return "rollback"
        self.last_time = observation.time
        for check in self.checks:
            check.observe(observation)
        served = observation.canary.served
        self.step_requests += served
        self._served = served
        self._dwell = observation.time - self.step_started_at
        failing = [check for check in self.checks if check.failed]
        if failing:
            self._outcome = "failed"
            rollback = any(check.metric.action == "rollback" for check in failing)
            self.phase = "rolled_back" if rollback else "paused"
            return "rollback" if rollback else "pause_for_review"
        if self.phase == "paused":
            self._outcome = "paused"
            return "pause_for_review"
        policy = self.policy
        done = self._dwell >= policy.min_dwell_seconds and self.step_requests >= policy.min_requests
        if done and all(check.has_data() for check in self.checks):
            self._outcome = "promote"
            return "promote"
        self._outcome = "no_traffic" if served <= 0 else "no_data" if done else "continue"
        return "continue" if self._outcome == "continue" else "hold"

    def decision(self) -> Decision:
        """The last update's decision, explained: the reason in one line and every check's evidence."""
        policy, outcome = self.policy, self._outcome
        if outcome == "stale":
            return self._decision("hold", f"ignored: the observation at {self._stale_time:g} is not after the last "
                                  f"one ({self.last_time:g})")
        if outcome == "failed":
            failing = [check for check in self.checks if check.failed]
            rollbacks = [check for check in failing if check.metric.action == "rollback"]
            if rollbacks:
                automatic = any(c.metric.automatic for c in rollbacks) and "rollback" in policy.allow_automatic
                return self._decision("rollback", "; ".join(c.summary() for c in rollbacks), automatic=automatic,
                                      target_weight=0)
            automatic = any(c.metric.automatic for c in failing) and "pause_for_review" in policy.allow_automatic
            return self._decision("pause_for_review", "; ".join(c.summary() for c in failing), automatic=automatic)
        if outcome == "paused":
            return self._decision("pause_for_review", "paused for review; resume() after a person has looked",
                                  automatic="pause_for_review" in policy.allow_automatic)
        waited = (f"step {self.weight}%: {self._dwell:.0f}/{policy.min_dwell_seconds} s dwell, "
                  f"{self.step_requests:.0f}/{policy.min_requests} canary requests")
        if outcome == "promote":
            last = self.step == len(policy.steps) - 1
            target = 100 if last else policy.steps[self.step + 1]
            listed = ", ".join(f"{c.metric.metric} {c.verdict()}" for c in self.checks)
            what = "finish: the canary becomes the stable release" if last else f"promote to {target}%"
            return self._decision("promote", f"{what} ({waited}; no check failing: {listed})",
                                  automatic="promote" in policy.allow_automatic, target_weight=target)
        if outcome == "no_traffic":
            return self._decision("hold", f"no data: the canary served no requests in this interval ({waited})")
        if outcome == "no_data":
            missing = ", ".join(c.metric.metric for c in self.checks if not c.has_data())
            return self._decision("hold", f"no data: {missing} had nothing to judge at this step, so it cannot "
                                  f"promote ({waited})")
        return self._decision("continue", f"{waited}; no check failing")

    def _decision(self, action: Action, reason: str, *, automatic: bool = True,
                  target_weight: int | None = None) -> Decision:
        return Decision(action=action, reason=reason, weight=self.weight,
                        evidence=[check.evidence() for check in self.checks], automatic=automatic,
                        target_weight=target_weight)

    def advance(self, *, at: float) -> None:
        """The controller set the next step's weight at `at`: its dwell and request count start there. The checks'
        evidence carries on; only the per-step counts restart."""
        if self.phase != "running":
            raise ValueError(f"cannot advance a {self.phase.replace('_', ' ')} analysis")
        if self.step == len(self.policy.steps) - 1:
            raise ValueError("already at the last step: the promotion is finished")
        self.step += 1
        self.step_started_at = at
        self.step_requests = 0.0
        for check in self.checks:
            check.start_step()

    def resume(self) -> None:
        """A person reviewed a pause and let it go on: the checks that paused it start their evidence afresh."""
        if self.phase != "paused":
            raise ValueError(f"nothing to resume: the analysis is {self.phase.replace('_', ' ')}")
        for check in self.checks:
            if check.failed:
                check.restart()
        self.phase = "running"

    def to_dict(self) -> dict[str, Any]:
        """The whole state, JSON-able (no infinities)."""
        return {"version": STATE_VERSION, "step": self.step, "step_started_at": self.step_started_at,
                "step_requests": self.step_requests, "ttft_threshold": self.ttft_threshold,
                "last_time": None if math.isinf(self.last_time) else self.last_time, "phase": self.phase,
                "checks": {check.metric.metric: check.state() for check in self.checks}}

    @classmethod
    def from_dict(cls, policy: Rollout, state: dict[str, Any]) -> Analysis:
        """Carry on from `to_dict()`'s output. A metric the policy gained since starts with no evidence; one it lost
        is dropped."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown analysis state version {state.get('version')!r} (expected {STATE_VERSION})")
        analysis = cls(policy, started_at=float(state["step_started_at"]), step=int(state["step"]),
                       ttft_threshold=state.get("ttft_threshold"))
        analysis.step_requests = float(state.get("step_requests", 0.0))
        last = state.get("last_time")
        analysis.last_time = -math.inf if last is None else float(last)
        phase = state.get("phase", "running")
        if phase not in ("running", "paused", "rolled_back"):
            raise ValueError(f"unknown analysis phase {phase!r}")
        analysis.phase = phase
        checks = state.get("checks", {})
        for check in analysis.checks:
            if check.metric.metric in checks:
                check.restore(checks[check.metric.metric])
        return analysis
