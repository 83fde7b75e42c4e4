"""The drift monitor: each model's window against its newest reference, fed with request samples, judged every
second, exported as Prometheus metrics. The HTTP front (`server.py`) and the benchmark drive the same object.

A batch of samples is read in two halves: `read` parses the lines and embeds the prompts (slow, no lock needed), then
`add` sums them into the windows. A line that is not a request-log record is counted by reason and dropped, never
kept and never fatal. A prompt is embedded and forgotten; only the vector's sums stay.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter

from llmops.drift.records import BadLine, parse_line
from llmops.drift.records import field as field_value
from llmops.drift.reference import Reference, ReferenceStore
from llmops.drift.settings import MonitorSettings
from llmops.drift.window import EMBEDDING, Judgement, ModelWindow
from llmops.retrieval.embed import Embedder

log = logging.getLogger("llmops.drift")


@dataclass
class Batch:
    """Parsed samples per model, with their prompts' vectors (None where not judged or not embeddable)."""
    samples: dict[str, list[tuple[dict[str, Any], Any]]] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        return sum(len(s) for s in self.samples.values())


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.psi = Gauge("llmops_drift_psi", "PSI of the window against the reference, per numeric field.",
                         ["model", "feature"], registry=registry)
        self.similarity = Gauge("llmops_drift_embedding_similarity", "Cosine similarity of the window's prompt "
                                "embedding centroid with the reference's (small-window bias removed).", ["model"],
                                registry=registry)
        self.status = Gauge("llmops_drift_status", "0 stable (or too few samples), 1 watch, 2 drift, after the "
                            "policy's consecutive windows.", ["model", "signal"], registry=registry)
        self.window_samples = Gauge("llmops_drift_window_samples", "Samples in the last judged window.", ["model"],
                                    registry=registry)
        self.window_seconds = Gauge("llmops_drift_window_seconds", "Seconds the last judged window spans.", ["model"],
                                    registry=registry)
        self.reference_version = Gauge("llmops_drift_reference_version", "The reference version judged against.",
                                       ["model"], registry=registry)
        self.samples = MetricCounter("llmops_drift_samples", "Samples accepted.", ["model"], registry=registry)
        self.rejected = MetricCounter("llmops_drift_rejected_lines", "Lines dropped, by reason.", ["reason"],
                                      registry=registry)
        self.embedding_errors = MetricCounter("llmops_drift_embedding_errors", "Batches whose prompts could not be "
                                              "embedded (their numbers were still judged).", ["model"],
                                              registry=registry)
        self.schema_changes = Gauge("llmops_drift_schema_changes", "1 while a field of the reference's schema is "
                                    "missing or of another type in most of the window.", ["model", "field", "change"],
                                    registry=registry)
        self.since_reference = Gauge("llmops_drift_samples_since_reference", "Requests since the reference was "
                                     "loaded (samples scaled by the shipper's sample percent).", ["model"],
                                     registry=registry)


class Monitor:
    def __init__(self, settings: MonitorSettings, store: ReferenceStore, embedders: Mapping[str, Embedder],
                 registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.store, self.embedders, self.clock = settings, store, dict(embedders), clock
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.windows: dict[str, ModelWindow] = {}
        self.loaded_at: dict[str, int] = {}  # samples_total of the window when its reference was loaded
        self.last: dict[str, Judgement] = {}
        self.references_read = False
        for model in settings.models:
            self.metrics.samples.labels(model)
            self.metrics.reference_version.labels(model).set(0)

    # --- references ---------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The references were read (a model without one is reported, not a reason to refuse samples)."""
        return self.references_read

    def load_references(self) -> list[str]:
        """Follow each model's newest reference version; a new one starts a new window. Returns what changed."""
        changed = []
        for model in self.settings.models:
            versions = self.store.versions(model)
            current = self.windows.get(model)
            if not versions or (current is not None and current.reference.version == versions[-1]):
                continue
            reference = self.store.get(model, versions[-1])
            self.use(model, reference)
            changed.append(f"{model} v{reference.version}")
        self.references_read = True
        return changed

    def use(self, model: str, reference: Reference) -> None:
        watched = self.settings.models[model]
        if watched.drift.embedding is not None and reference.embedding is not None \
                and reference.embedding.model != watched.embedding_model:
            raise ValueError(f"{model} v{reference.version}: its embedding was built with {reference.embedding.model}, "
                             f"the monitor embeds with {watched.embedding_model}; build a new reference")
        self.windows[model] = ModelWindow(watched.drift, reference)
        self.loaded_at[model] = 0
        self.metrics.reference_version.labels(model).set(reference.version)

    # --- samples --------------------------------------------------------------------------------------------------

    def read(self, lines: Iterable[bytes]) -> Batch:
        """Parse lines and embed the judged prompts; nothing is added yet."""
        batch = Batch()
        for line in lines:
            if not line.strip():
                continue
            try:
                record = parse_line(line)
            except BadLine as bad:
                batch.rejected[str(bad)] += 1
                continue
            model = record["model"]
            if model not in self.settings.models:
                batch.rejected["unknown_model"] += 1
                continue
            batch.samples.setdefault(model, []).append((record, None))
        for model, samples in batch.samples.items():
            window = self.windows.get(model)
            text_field = window.embedding_field if window is not None else None
            embedder = self.embedders.get(model)
            if text_field is None or embedder is None:
                continue
            wanted = [i for i, (record, _) in enumerate(samples) if isinstance(field_value(record, text_field), str)]
            if not wanted:
                continue
            try:
                vectors = embedder.embed([field_value(samples[i][0], text_field) for i in wanted])
            except Exception as error:  # noqa: BLE001 - an endpoint down must not stop the numeric signals
                log.warning("embedding %d prompt(s) of %s failed: %s", len(wanted), model, type(error).__name__)
                self.metrics.embedding_errors.labels(model).inc()
                continue
            for i, vector in zip(wanted, vectors, strict=True):
                samples[i] = (samples[i][0], np.asarray(vector, dtype=np.float64))
        return batch

    def add(self, batch: Batch, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for reason, count in batch.rejected.items():
            self.metrics.rejected.labels(reason).inc(count)
        for model, samples in batch.samples.items():
            window = self.windows.get(model)
            if window is None:
                self.metrics.rejected.labels("no_reference").inc(len(samples))
                continue
            for record, vector in samples:
                window.add(now, record, vector)
            self.metrics.samples.labels(model).inc(len(samples))
        # the records are dropped with the batch: only the windows' sums stay
        batch.samples.clear()

    def ingest(self, lines: Iterable[bytes], now: float | None = None) -> tuple[int, dict[str, int]]:
        """read + add: (samples accepted, lines rejected by reason)."""
        batch = self.read(lines)
        accepted, rejected = batch.accepted, dict(batch.rejected)
        self.add(batch, now)
        return accepted, rejected

    # --- judgement ----------------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> dict[str, Judgement]:
        now = self.clock() if now is None else now
        judged = {}
        m = self.metrics
        for model, window in self.windows.items():
            judgement = window.judge(now)
            judged[model] = self.last[model] = judgement
            m.window_samples.labels(model).set(judgement.samples)
            m.window_seconds.labels(model).set(judgement.seconds)
            for signal in judgement.signals:
                m.status.labels(model, signal.name).set(signal.status)
                if signal.name == EMBEDDING:
                    m.similarity.labels(model).set(signal.value)
                else:
                    m.psi.labels(model, signal.name).set(signal.value)
            for labels in [s for s in _label_sets(m.schema_changes) if s[0] == model]:
                m.schema_changes.remove(*labels)
            for name, change in judgement.schema_changes:
                m.schema_changes.labels(model, name, change).set(1)
            percent = self.settings.models[model].drift.sample_percent
            m.since_reference.labels(model).set(
                math.floor((window.samples_total - self.loaded_at.get(model, 0)) * 100 / percent))
        return judged

    def state(self) -> dict[str, Any]:
        """Everything the monitor holds (numbers and vectors only), for /v1/state and the drift-review runbook."""
        models = {}
        for model, window in self.windows.items():
            judgement = self.last.get(model)
            reference = window.reference
            models[model] = {
                "reference": {"version": reference.version, "release": reference.release,
                              "fingerprint": reference.fingerprint, "created_at": reference.created_at},
                "judgement": None if judgement is None else {
                    "at": judgement.at, "samples": judgement.samples, "seconds": judgement.seconds,
                    "judged": judgement.judged, "status": judgement.status,
                    "signals": [{"name": s.name, "value": None if math.isnan(s.value) else s.value, "level": s.level,
                                 "status": s.status, "limit": s.limit, "raw": s.raw} for s in judgement.signals],
                    "schema_changes": [{"field": f, "change": c} for f, c in judgement.schema_changes],
                    "topics": [{"cluster": c, "window": w, "reference": r} for c, w, r in judgement.topics]},
                "samples_since_reference": window.samples_total - self.loaded_at.get(model, 0),
                "window": window.state(),
            }
        return {"environment": self.settings.environment, "region": self.settings.region, "models": models,
                "waiting_for_reference": sorted(set(self.settings.models) - set(self.windows))}


def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
    return [tuple(labels) for labels in gauge._metrics]  # noqa: SLF001 - prometheus_client has no public listing of a metric's children
