"""The comparison as Prometheus metrics, pushed to a Pushgateway (job `llmops_shadow_compare`, grouped by model: a
model's next comparison replaces its last). Names in components/manifests/metrics.yaml; labels model, release (the
primary's release id), shadow_release, and side / quantile / bound / gate where said. Numbers only: release ids are
checked tokens (compare.RELEASE_ID); no prompt or answer reaches a label."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, generate_latest, push_to_gateway

from llmops.release.shadow.compare import Figures, Joined
from llmops.release.shadow.gates import Gate
from llmops.release.shadow.judge import JudgeResult, Standing

JOB = "llmops_shadow_compare"
PAIR = ["model", "release", "shadow_release"]


class PushFailed(Exception):
    """The Pushgateway did not take the metrics: its URL (without credentials) and the reason."""


@dataclass(frozen=True)
class Comparison:
    """One pair of releases compared: figures, the judge (if one ran) and its standing, the gates."""
    figures: Figures
    gates: list[Gate]
    judge: JudgeResult | None = None
    standing: Standing | None = None

    @property
    def promotable(self) -> bool:
        return all(g.passed for g in self.gates)


def registry_for(joined: Joined, comparisons: Sequence[Comparison], at: float | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, extra: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, [*PAIR, *extra], registry=registry)

    pairs = gauge("llmops_shadow_pairs", "Requests answered by both the primary and the shadow release in the window")
    ratio = gauge("llmops_shadow_token_ratio", "Shadow completion tokens over the primary's, same requests (ratio of sums)")
    mean = gauge("llmops_shadow_token_ratio_pair_mean", "Mean of per-request shadow/primary completion token ratios")
    latency = gauge("llmops_shadow_latency_seconds", "Request latency quantile over the paired requests",
                    ["side", "quantile"])
    refusal = gauge("llmops_shadow_refusal_ratio", "Share of paired answers that refuse", ["side"])
    win = gauge("llmops_shadow_judge_win_rate", "Judge: shadow win rate (ties half) and its 95 % Wilson bounds",
                ["bound"])
    judged = gauge("llmops_shadow_judge_pairs", "Judge: pairs with a parsed verdict")
    calibrated = gauge("llmops_shadow_judge_calibrated", "1 when the judge's score may gate (calibrated), else 0")
    gate = gauge("llmops_shadow_gate_passed", "1 when the gate passed, 0 when it failed", ["gate"])
    verdict = gauge("llmops_shadow_verdict", "1 promotable, 0 refuse promotion")
    unmatched = Gauge("llmops_shadow_unmatched", "Records without their other half in the window (side: the one "
                      "present)", ["model", "side"], registry=registry)
    stamp = Gauge("llmops_shadow_compare_timestamp_seconds", "When the comparison ran", ["model"], registry=registry)
    for c in comparisons:
        f = c.figures
        key = (joined.model, f.primary_release, f.shadow_release)
        pairs.labels(*key).set(f.pairs)
        if f.token_ratio is not None:
            ratio.labels(*key).set(f.token_ratio)
        if f.token_ratio_pair_mean is not None:
            mean.labels(*key).set(f.token_ratio_pair_mean)
        for side, figures in (("primary", f.primary), ("shadow", f.shadow)):
            for q, seconds in figures.latency_seconds.items():
                latency.labels(*key, side, f"{q:g}").set(seconds)
            refusal.labels(*key, side).set(figures.refusal_rate)
        if c.judge is not None and c.judge.win_rate is not None:
            assert c.judge.low is not None and c.judge.high is not None
            for bound, value in (("lower", c.judge.low), ("estimate", c.judge.win_rate), ("upper", c.judge.high)):
                win.labels(*key, bound).set(value)
            judged.labels(*key).set(c.judge.judged)
            calibrated.labels(*key).set(1 if c.standing is not None and c.standing.gates else 0)
        for g in c.gates:
            gate.labels(*key, g.name).set(1 if g.passed else 0)
        verdict.labels(*key).set(1 if c.promotable else 0)
    unmatched.labels(joined.model, "shadow").set(joined.shadow_unmatched)
    unmatched.labels(joined.model, "primary").set(joined.primary_unmatched)
    stamp.labels(joined.model).set(time.time() if at is None else at)
    return registry


def exposition(registry: CollectorRegistry) -> str:
    return bytes(generate_latest(registry)).decode()


def shown_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, "", ""))


def push(url: str, model: str, registry: CollectorRegistry, timeout: float = 10) -> None:
    try:
        push_to_gateway(url, job=JOB, grouping_key={"model": model}, registry=registry, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise PushFailed(f"{shown_url(url)}: HTTP {error.code}") from None
    except (OSError, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        text = getattr(reason, "strerror", None) or (reason if isinstance(reason, str) else type(reason).__name__)
        raise PushFailed(f"{shown_url(url)}: {text}") from None
