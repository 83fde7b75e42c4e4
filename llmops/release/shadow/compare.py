"""Join shadow records with the primary's by request id, and the figures of each (primary release, shadow release)
pair of releases. Records come parsed (one JSON object per log line; the CLI reads them with llmops.drift.records).

Choices:
- A pair needs both halves inside the window; a shadow record whose primary is outside it counts as unmatched.
- A request id seen twice on one side keeps its first record; the others are counted as duplicates.
- Latency quantiles are nearest-rank over the pairs (the same requests on both sides), in seconds.
- Token ratio: the ratio of sums (shadow's completion tokens over the primary's, over the same requests) is the gate
  figure -- it is what the shadow release would cost, is defined when some primary answers are empty, and is not
  dominated by short answers (1 token against 10 is a ratio of 10 in a mean of ratios). The mean of per-pair ratios
  (pairs whose primary answer has tokens) is reported beside it: far from the ratio of sums, it says the change is
  concentrated in short answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PRIMARY_TRACKS = frozenset({"stable", "canary"})
SHADOW_TRACK = "shadow"
# A release id becomes a metric label: a short token, never free text.
RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
REQUEST_ID = re.compile(r"[!-~]{1,256}")
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Half:
    """One side of a request: numbers, the refusal verdict, and (only when a judge will read it) the text."""
    release: str
    track: str
    ts: float
    completion_tokens: int
    latency_seconds: float
    refused: bool
    prompt: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Pair:
    request_id: str
    primary: Half
    shadow: Half


@dataclass
class Joined:
    model: str
    start: float
    end: float
    records: int = 0  # the model's records inside the window
    outside_window: int = 0
    invalid: int = 0  # records of the model missing a field or with a wrong type (by reason in `invalid_reasons`)
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    primary_records: int = 0
    shadow_records: int = 0
    shadow_unmatched: int = 0  # shadow records without the primary's record of the same request
    primary_unmatched: int = 0  # primary records not mirrored (expected: the shadow gets a sample)
    pairs: list[Pair] = field(default_factory=list)

    def groups(self) -> dict[tuple[str, str], list[Pair]]:
        """Pairs by (primary release, shadow release), in a stable order."""
        found: dict[tuple[str, str], list[Pair]] = {}
        for pair in sorted(self.pairs, key=lambda p: p.request_id):
            found.setdefault((pair.primary.release, pair.shadow.release), []).append(pair)
        return dict(sorted(found.items()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _half(record: dict[str, Any], refuses: Callable[[str], bool], keep_text: bool) -> Half | str:
    """A half, or the reason the record cannot be one (a reason code, never a value)."""
    release, track = record.get("release"), record.get("track")
    if not isinstance(release, str) or not RELEASE_ID.fullmatch(release):
        return "release"
    if track not in PRIMARY_TRACKS and track != SHADOW_TRACK:
        return "track"
    ts, tokens, latency = (_number(record.get(k)) for k in ("ts", "completion_tokens", "latency_ms"))
    if ts is None:
        return "ts"
    if tokens is None or tokens < 0 or tokens != int(tokens):
        return "completion_tokens"
    if latency is None or latency < 0:
        return "latency_ms"
    answer = record.get("answer")
    if not isinstance(answer, str):
        return "answer"
    prompt = record.get("prompt")
    keep_prompt = keep_text and isinstance(prompt, str)
    return Half(release, str(track), ts, int(tokens), latency / 1000.0, refuses(answer),
                prompt=prompt if keep_prompt else None, answer=answer if keep_text else None)


def join(records: Iterable[dict[str, Any]], model: str, start: float, end: float, refuses: Callable[[str], bool],
         keep_text: bool = False) -> Joined:
    """The model's records in [start, end) joined by request id. keep_text: keep prompts and answers (for the
    judge); otherwise only numbers and refusal verdicts are kept."""
    joined = Joined(model, start, end)
    primary: dict[str, Half] = {}
    shadow: dict[str, Half] = {}

    def bad(reason: str) -> None:
        joined.invalid += 1
        joined.invalid_reasons[reason] = joined.invalid_reasons.get(reason, 0) + 1

    for record in records:
        if record.get("model") != model:
            continue
        ts = _number(record.get("ts"))
        if ts is not None and not start <= ts < end:
            joined.outside_window += 1
            continue
        request_id = record.get("request_id")
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            bad("request_id")
            continue
        half = _half(record, refuses, keep_text)
        if isinstance(half, str):
            bad(half)
            continue
        joined.records += 1
        side = shadow if half.track == SHADOW_TRACK else primary
        if request_id in side:
            joined.duplicates += 1
            continue
        side[request_id] = half
    joined.primary_records, joined.shadow_records = len(primary), len(shadow)
    for request_id, half in shadow.items():
        match = primary.get(request_id)
        if match is None:
            joined.shadow_unmatched += 1
        else:
            joined.pairs.append(Pair(request_id, match, half))
    joined.primary_unmatched = len(primary) - len(joined.pairs)
    return joined


def quantile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class SideFigures:
    completion_tokens: int
    latency_seconds: dict[float, float]  # quantile -> seconds
    refusals: int
    refusal_rate: float


@dataclass(frozen=True)
class Figures:
    primary_release: str
    shadow_release: str
    primary_tracks: tuple[str, ...]  # stable, canary, or both
    pairs: int
    token_ratio: float | None  # the ratio of sums: the gate figure (None when the primary's sum is 0)
    token_ratio_pair_mean: float | None  # mean of per-pair ratios over pairs whose primary has tokens
    token_ratio_pairs: int  # pairs in that mean
    primary: SideFigures
    shadow: SideFigures


def _side(halves: list[Half]) -> SideFigures:
    latencies = [h.latency_seconds for h in halves]
    refusals = sum(1 for h in halves if h.refused)
    return SideFigures(completion_tokens=sum(h.completion_tokens for h in halves),
                       latency_seconds={q: quantile(latencies, q) for q in QUANTILES},
                       refusals=refusals, refusal_rate=refusals / len(halves))


def figures(primary_release: str, shadow_release: str, pairs: list[Pair]) -> Figures:
    if not pairs:
        raise ValueError("no pairs")
    primary, shadow = _side([p.primary for p in pairs]), _side([p.shadow for p in pairs])
    ratios = [p.shadow.completion_tokens / p.primary.completion_tokens for p in pairs if p.primary.completion_tokens]
    return Figures(
        primary_release=primary_release, shadow_release=shadow_release,
        primary_tracks=tuple(sorted({p.primary.track for p in pairs})), pairs=len(pairs),
        token_ratio=shadow.completion_tokens / primary.completion_tokens if primary.completion_tokens else None,
        token_ratio_pair_mean=sum(ratios) / len(ratios) if ratios else None, token_ratio_pairs=len(ratios),
        primary=primary, shadow=shadow)
