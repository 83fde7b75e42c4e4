"""A model's drift monitoring (`models[].drift`) and the monitor that applies it (`driftMonitor`): which fields of the
request log are judged, against which limits, over which windows, and when a person is asked to look. Typed and
checked like the rest of the stack file; the statistics live in `llmops.drift`.

Two kinds of signal, both against a versioned reference built from a window of request logs:
- numeric fields (prompt tokens, completion tokens, retrieval top score, any feature the request carries), judged by
  the population stability index over 10 buckets fixed from the reference;
- the embedding of each prompt, judged by the cosine similarity of the window's centroid with the reference's.
A window is judged only with `minSamples` samples in it; a signal drifts only after `consecutiveWindows` windows in a
row past its limit.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.config.base import PinnedImage, Section, invalid

# A field of the request log, as a JSON key, or a dotted path into nested objects (`retrieval.top_score`).
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$")


class DriftFeature(Section):
    """A numeric field judged by PSI: < watch stable, watch..drift watch, > drift drift."""
    field: str
    watch: float = Field(default=0.1, gt=0, le=10)
    drift: float = Field(default=0.2, gt=0, le=10)

    @field_validator("field")
    @classmethod
    def _a_field(cls, field: str) -> str:
        if not FIELD.match(field):
            raise invalid(None, field, "expected a request-log field name, or a dotted path of at most 4 names "
                          "(letters, digits, '_'), e.g. prompt_tokens or retrieval.top_score")
        return field

    @model_validator(mode="after")
    def _ordered(self) -> DriftFeature:
        if self.drift <= self.watch:
            raise invalid("drift", self.drift, f"expected more than watch ({self.watch}): PSI grows with drift")
        return self


def default_features() -> list[DriftFeature]:
    return [DriftFeature(field="prompt_tokens"), DriftFeature(field="completion_tokens")]


class EmbeddingDrift(Section):
    """The prompt's embedding, from the embedding model of a retrieval index (the same endpoint embeds the
    queries); judged by the cosine similarity of centroids: >= watch stable, below watch watch, below drift drift."""
    index: str  # a retrieval.indexes name: its embeddingModel embeds the prompts
    field: str = "prompt"  # the request-log field holding the text
    watch: float = Field(default=0.90, gt=0, lt=1)
    drift: float = Field(default=0.85, gt=0, lt=1)

    @field_validator("field")
    @classmethod
    def _a_field(cls, field: str) -> str:
        return DriftFeature._a_field(field)

    @model_validator(mode="after")
    def _ordered(self) -> EmbeddingDrift:
        if self.drift >= self.watch:
            raise invalid("drift", self.drift, f"expected less than watch ({self.watch}): similarity falls with drift")
        return self


class Retraining(Section):
    """When a retraining request is due, besides drift and a change of the log's schema: a volume of new requests
    since the reference (none: never by volume). A person can always ask for one (`--reason manual`)."""
    volume: int | None = Field(default=None, ge=1000, le=10**12)


class Drift(Section):
    features: list[DriftFeature] = Field(default_factory=default_features, max_length=32)
    embedding: EmbeddingDrift | None = None
    window_seconds: int = Field(default=10, ge=1, le=3600)  # the shortest window judged
    # A quiet window is widened back in time until it holds minSamples, up to this; then it is not judged.
    max_window_seconds: int = Field(default=300, ge=1, le=86400)
    min_samples: int = Field(default=100, ge=20, le=1_000_000)
    consecutive_windows: int = Field(default=3, ge=1, le=100)  # judged every second
    sample_percent: float = Field(default=100, gt=0, le=100)  # of the serving log the shipper forwards to the monitor
    alert: Literal["page", "ticket"] = "ticket"  # the Drift alert's severity (DriftWatch is always a ticket)
    retraining: Retraining = Retraining()

    @model_validator(mode="after")
    def _coherent(self) -> Drift:
        if not self.features and self.embedding is None:
            raise invalid("features", [], "expected at least one feature, or an embedding: there is nothing to judge")
        fields = [f.field for f in self.features]
        for index, field in enumerate(fields):
            if fields.index(field) != index:
                raise invalid(f"features[{index}].field", field, "expected each field once")
        if self.max_window_seconds < self.window_seconds:
            raise invalid("maxWindowSeconds", self.max_window_seconds,
                          f"expected at least windowSeconds ({self.window_seconds})")
        return self


class DriftEmbeddings(Section):
    """The OpenAI-compatible embeddings endpoint the monitor calls for a model that is not `local:`."""
    url: str = Field(pattern=r"^https?://[^\s]+$")
    dimension: int = Field(ge=8, le=16384)
    api_key_secret: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # key: api-key


class DriftMonitor(Section):
    """`llmops drift watch`, one per region: the serving logs' shipper (Fluent Bit) forwards a sample to it, Prometheus
    scrapes it, the Drift alerts read it."""
    image: PinnedImage  # this project's image (components/images/llmops.Dockerfile)
    replicas: Literal[1] = 1  # windows live in memory: one monitor sees every sample of its region
    scrape_interval_seconds: int = Field(default=5, ge=1, le=60)
    rule_interval_seconds: int = Field(default=5, ge=1, le=60)  # the drift alert rules' evaluation interval
    embeddings: DriftEmbeddings | None = None  # required when a judged embedding model is not local:
    # Where the serving pods' log files are matched by the shipper (Fluent Bit tail path under /var/log/containers).
    log_path: str = Field(default="/var/log/containers/*_serving_*.log", pattern=r"^/[^\s]+$")
