"""What the release controller reads from Prometheus: for one model, the canary and the stable release over the same
window (both serve at once, so they see the same users, the same hour, the same incidents). Every figure is an
`increase` of a counter over the window ending at the same instant, so the two sides are always comparable.

Series (components/manifests/metrics.yaml): vLLM's HTTP counter `http_requests_total` (status 2xx/4xx/5xx) and its
TTFT histogram, scraped per Service (the route's backend names, `service` label); the token counters; and the
sampled judge scores an evaluator exports as `llmops_judge_score_sum` / `_count` (label `judge`) per Service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from components.manifests.route import canary_backend, stable_backend

JUDGES = ("toxicity", "groundedness", "task_completion")


class Signals(Protocol):
    def vector(self, query: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Track:
    """One side over one window: counts, not rates (a sequential test needs counts)."""
    requests: float = 0.0
    errors: float = 0.0
    ttft_buckets: tuple[tuple[float, float], ...] = ()  # (le, cumulative count), +Inf as inf
    tokens: float = 0.0
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # judge -> (sum, count)


def _matchers(namespace: str, service: str) -> str:
    return f'namespace="{namespace}",service="{service}"'


def queries(model: str, namespace: str, service: str, window_seconds: int) -> dict[str, str]:
    m, w = _matchers(namespace, service), f"{int(window_seconds)}s"
    return {
        "requests": f'sum(increase(http_requests_total{{{m},handler=~"/v1/.+"}}[{w}]))',
        "errors": f'sum(increase(http_requests_total{{{m},handler=~"/v1/.+",status="5xx"}}[{w}]))',
        "ttft": f"sum by (le) (increase(vllm:time_to_first_token_seconds_bucket{{{m}}}[{w}]))",
        "tokens": f"sum(increase(vllm:prompt_tokens_total{{{m}}}[{w}])) + "
                  f"sum(increase(vllm:generation_tokens_total{{{m}}}[{w}]))",
        "score_sum": f"sum by (judge) (increase(llmops_judge_score_sum{{{m}}}[{w}]))",
        "score_count": f"sum by (judge) (increase(llmops_judge_score_count{{{m}}}[{w}]))",
    }


def _number(result: list[dict[str, Any]]) -> float:
    if not result:
        return 0.0  # no series: nothing happened in the window (no data, not an error)
    value = float(result[0]["value"][1])
    return 0.0 if value != value else value


def read_track(prometheus: Signals, model: str, namespace: str, service: str, window_seconds: int) -> Track:
    q = queries(model, namespace, service, window_seconds)
    buckets = sorted((float(r["metric"].get("le", "+Inf")), float(r["value"][1])) for r in prometheus.vector(q["ttft"]))
    sums = {r["metric"].get("judge", ""): float(r["value"][1]) for r in prometheus.vector(q["score_sum"])}
    counts = {r["metric"].get("judge", ""): float(r["value"][1]) for r in prometheus.vector(q["score_count"])}
    scores = {judge: (sums.get(judge, 0.0), counts[judge]) for judge in JUDGES if counts.get(judge)}
    return Track(requests=_number(prometheus.vector(q["requests"])), errors=_number(prometheus.vector(q["errors"])),
                 ttft_buckets=tuple(buckets), tokens=_number(prometheus.vector(q["tokens"])), scores=scores)


def read_window(prometheus: Signals, model: str, namespace: str, window_seconds: int) -> tuple[Track, Track]:
    """(canary, stable) over the last `window_seconds`."""
    return (read_track(prometheus, model, namespace, canary_backend(model), window_seconds),
            read_track(prometheus, model, namespace, stable_backend(model), window_seconds))


@dataclass(frozen=True)
class ShadowVerdict:
    """The latest `llmops release compare` of a shadow release, as its pushed metrics tell: promotable or not, the
    gates it failed, and when it was pushed."""
    promotable: bool
    failed_gates: tuple[str, ...]
    at: float


def read_shadow_verdict(prometheus: Signals, model: str, shadow_release: str) -> ShadowVerdict | None:
    """The pushed verdict of `shadow_release` of `model` (any primary it was compared with: refused if any refused);
    None when no comparison of that release was pushed."""
    where = f'model="{model}",shadow_release="{shadow_release}"'
    verdicts = prometheus.vector(f"llmops_shadow_verdict{{{where}}}")
    if not verdicts:
        return None
    failed = sorted({r["metric"].get("gate", "?") for r in prometheus.vector(f"llmops_shadow_gate_passed{{{where}}} == 0")})
    stamps = prometheus.vector(f'llmops_shadow_compare_timestamp_seconds{{model="{model}"}}')
    return ShadowVerdict(promotable=all(float(r["value"][1]) == 1 for r in verdicts), failed_gates=tuple(failed),
                         at=max((float(r["value"][1]) for r in stamps), default=0.0))
