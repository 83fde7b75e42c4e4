"""One model's sliding window over its request samples, in bounded memory, and its judgement every second.

Samples are summed into one bucket per second -- per feature the counts in the reference's PSI buckets, the sum of
the prompt embeddings and of their squared norms, the topic each prompt is nearest to, the schema fields found
missing or of another type -- and nothing else: no value, no text. Buckets older than `maxWindowSeconds` are dropped,
so memory depends on the policy, never on how long the monitor runs or how busy the model is.

At each judgement the window is the last `windowSeconds` complete seconds, widened back (up to `maxWindowSeconds`)
until it holds `minSamples`; with fewer, nothing is judged and every signal reads stable. A signal is at `watch` or
`drift` only after `consecutiveWindows` judged windows in a row past its limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.config.drift import Drift
from llmops.drift import stats
from llmops.drift.records import field as field_value
from llmops.drift.records import number, type_name
from llmops.drift.reference import Reference

STABLE, WATCH, DRIFT = 0, 1, 2
LEVELS = ("stable", "watch", "drift")
EMBEDDING = "embedding"
SCHEMA_CHANGED = 0.5  # a reference field missing (or of another type) in more than half the window's records


@dataclass
class _Second:
    count: int = 0
    features: dict[str, list[int]] = field(default_factory=dict)
    vectors: stats.Vector | None = None
    squared: float = 0.0
    embedded: int = 0
    topics: list[int] = field(default_factory=list)  # per reference cluster, and one more: a new topic
    missing: dict[str, int] = field(default_factory=dict)
    retyped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Signal:
    name: str  # a feature's field, or "embedding"
    value: float  # PSI, or the centroid similarity
    level: int  # this window alone: 0 stable, 1 watch, 2 drift
    status: int  # after consecutiveWindows: what the alerts read
    limit: float  # the limit it was judged against (PSI: raised to the noise floor of a small window)
    raw: float | None = None  # the embedding's plain centroid cosine, for comparison


@dataclass(frozen=True)
class Judgement:
    at: float
    samples: int
    seconds: int
    judged: bool
    signals: list[Signal]
    schema_changes: list[tuple[str, str]]  # (field, missing|type)
    topics: list[tuple[int, float, float]]  # (cluster, window share, reference share); cluster -1: a new topic

    @property
    def status(self) -> int:
        return max((s.status for s in self.signals), default=STABLE)


class ModelWindow:
    def __init__(self, drift: Drift, reference: Reference) -> None:
        self.drift, self.reference = drift, reference
        self._features = [(f.field, reference.features[f.field].edges, f) for f in drift.features
                          if f.field in reference.features]
        self._schema = list(reference.schema.items())
        embedding = reference.embedding if drift.embedding is not None else None
        self._embedding = embedding
        if embedding is not None:
            self._centroid = np.asarray(embedding.centroid, dtype=np.float64)
            self._clusters = np.asarray(embedding.clusters, dtype=np.float64)
        self._seconds: dict[int, _Second] = {}
        self._streaks: dict[str, tuple[int, int]] = {}  # signal -> (windows in a row >= watch, >= drift)
        self.samples_total = 0

    @property
    def embedding_field(self) -> str | None:
        return self.drift.embedding.field if self.drift.embedding is not None and self._embedding is not None else None

    def add(self, now: float, record: Mapping[str, Any], vector: stats.Vector | None = None) -> None:
        """One sample: its numbers bucketed, its embedding (if judged) summed; the record is not kept."""
        second = int(now)
        bucket = self._seconds.get(second)
        if bucket is None:
            bucket = self._seconds[second] = _Second()
            self._forget(second)
        bucket.count += 1
        self.samples_total += 1
        for name, edges, _ in self._features:
            value = number(field_value(record, name))  # type: ignore[arg-type]
            if value is not None:
                counts = bucket.features.get(name)
                if counts is None:
                    counts = bucket.features[name] = [0] * (len(edges) + 1)
                counts[stats.bucket_of(edges, value)] += 1
        for name, kind in self._schema:
            found = field_value(record, name)  # type: ignore[arg-type]
            if found is None and kind != "null":
                bucket.missing[name] = bucket.missing.get(name, 0) + 1
            elif type_name(found) != kind:
                bucket.retyped[name] = bucket.retyped.get(name, 0) + 1
        if vector is not None and self._embedding is not None:
            if bucket.vectors is None:
                bucket.vectors = np.zeros(len(self._centroid), dtype=np.float64)
                bucket.topics = [0] * (len(self._clusters) + 1)
            bucket.vectors += vector
            bucket.squared += float(vector @ vector)
            bucket.embedded += 1
            similarities = self._clusters @ vector
            nearest = int(np.argmax(similarities))
            new_topic = similarities[nearest] < self._embedding.outlier_similarity
            bucket.topics[-1 if new_topic else nearest] += 1

    def _forget(self, newest: int) -> None:
        oldest = newest - self.drift.max_window_seconds - 1
        for second in [s for s in self._seconds if s < oldest]:
            del self._seconds[second]

    def buckets(self) -> int:
        return len(self._seconds)

    def judge(self, now: float) -> Judgement:
        """The window ending at the last complete second before `now`, judged; streaks advance by one."""
        end = int(now) - 1
        self._forget(end + 1)
        chosen, span = self._select(end, self.drift.min_samples)
        samples = sum(b.count for b in chosen)
        if samples < self.drift.min_samples:
            self._streaks.clear()
            return Judgement(at=now, samples=samples, seconds=span, judged=False,
                             signals=[Signal(n, math.nan, STABLE, STABLE, f.drift) for n, _, f in self._features]
                             + ([Signal(EMBEDDING, math.nan, STABLE, STABLE, self._embedding_limit())]
                                if self._embedding is not None else []),
                             schema_changes=[], topics=[])
        # PSI is judged on a window of at least PSI_MIN_SAMPLES (widened further back when needed): below that a
        # window of unchanged traffic leaves a bucket empty often enough (0.9^n per tenth) to pass any limit.
        psi_window, _ = self._select(end, max(self.drift.min_samples, stats.PSI_MIN_SAMPLES))
        signals = [self._feature_signal(name, f, psi_window) for name, _, f in self._features]
        topics: list[tuple[int, float, float]] = []
        if self._embedding is not None:
            signal, topics = self._embedding_signal(chosen)
            if signal is not None:
                signals.append(signal)
        changes = []
        for name, _ in self._schema:
            missing = sum(b.missing.get(name, 0) for b in chosen)
            retyped = sum(b.retyped.get(name, 0) for b in chosen)
            if missing > SCHEMA_CHANGED * samples:
                changes.append((name, "missing"))
            elif retyped > SCHEMA_CHANGED * samples:
                changes.append((name, "type"))
        return Judgement(at=now, samples=samples, seconds=span, judged=True, signals=signals, schema_changes=changes,
                         topics=topics)

    def _select(self, end: int, wanted: int) -> tuple[list[_Second], int]:
        """The seconds ending at `end`: at least windowSeconds, widened back until they hold `wanted` samples (up to
        maxWindowSeconds); and the span in seconds."""
        chosen: list[_Second] = []
        span = count = 0
        for second in range(end, end - self.drift.max_window_seconds, -1):
            span += 1
            found = self._seconds.get(second)
            if found is not None:
                chosen.append(found)
                count += found.count
            if span >= self.drift.window_seconds and count >= wanted:
                break
        return chosen, span

    def _embedding_limit(self) -> float:
        assert self.drift.embedding is not None
        return self.drift.embedding.drift

    def _streak(self, name: str, level: int) -> int:
        watch, drift = self._streaks.get(name, (0, 0))
        watch, drift = (watch + 1 if level >= WATCH else 0), (drift + 1 if level >= DRIFT else 0)
        self._streaks[name] = (watch, drift)
        needed = self.drift.consecutive_windows
        return DRIFT if drift >= needed else WATCH if watch >= needed else STABLE

    def _feature_signal(self, name: str, feature: Any, chosen: list[_Second]) -> Signal:
        reference = self.reference.features[name]
        counts = [0] * len(reference.proportions)
        for bucket in chosen:
            for index, count in enumerate(bucket.features.get(name, ())):
                counts[index] += count
        n = sum(counts)
        if n < max(self.drift.min_samples, stats.PSI_MIN_SAMPLES):  # missing from most samples: the schema says so
            return Signal(name, math.nan, STABLE, self._streak(name, STABLE), feature.drift)
        value = stats.psi(reference.proportions, counts)
        floor = stats.psi_floor(len(counts), n, reference.count)
        level = DRIFT if value > max(feature.drift, floor) else WATCH if value > max(feature.watch, floor) else STABLE
        return Signal(name, value, level, self._streak(name, level), max(feature.drift, floor))

    def _embedding_signal(self, chosen: list[_Second]) -> tuple[Signal | None, list[tuple[int, float, float]]]:
        assert self._embedding is not None and self.drift.embedding is not None
        vectors = [b for b in chosen if b.vectors is not None]
        sums = [b.vectors for b in vectors if b.vectors is not None]
        count = sum(b.embedded for b in vectors)
        if count < self.drift.min_samples:
            return Signal(EMBEDDING, math.nan, STABLE, self._streak(EMBEDDING, STABLE), self.drift.embedding.drift), []
        total = np.sum(sums, axis=0)
        squared = sum(b.squared for b in vectors)
        value = stats.centroid_similarity(total, count, squared, self._centroid, self._embedding.squared)
        raw = stats.raw_similarity(total, count, self._centroid)
        limits = self.drift.embedding
        level = DRIFT if value < limits.drift else WATCH if value < limits.watch else STABLE
        shares = np.sum([b.topics for b in vectors], axis=0) / count
        reference_shares = [*self._embedding.cluster_proportions, 0.0]
        topics = sorted(((index if index < len(shares) - 1 else -1, float(share), reference_shares[index])
                         for index, share in enumerate(shares)), key=lambda t: t[2] - t[1])
        return Signal(EMBEDDING, value, level, self._streak(EMBEDDING, level), limits.drift, raw=raw), topics

    def state(self) -> dict[str, Any]:
        """What the window holds, for /v1/state: counts and sums only."""
        return {"seconds": {str(s): {"count": b.count, "features": b.features, "embedded": b.embedded,
                                     "squared": b.squared, "topics": b.topics, "missing": b.missing,
                                     "retyped": b.retyped,
                                     "vector": None if b.vectors is None else [round(float(v), 6) for v in b.vectors]}
                            for s, b in sorted(self._seconds.items())},
                "streaks": {name: {"watch": w, "drift": d} for name, (w, d) in self._streaks.items()},
                "samples_total": self.samples_total}
