"""A drift reference: what one model's requests looked like over a window of request logs, as numbers only -- each
feature's bucket cuts and proportions, the prompts' embedding centroid and topic clusters, the log's schema -- with
the release it belongs to and a fingerprint of its content. Versioned: v1, v2, ... per model, never overwritten; a new
release or an accepted drift makes the next version, and the monitor follows the newest.

Stored as JSON under a location: a directory (drills, tests) or s3://bucket/prefix (`<model>/v000001.json`).
A version is created exclusively (a local hard link, an S3 conditional put), so two people accepting a drift at
once make two versions, not one lost write.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.config.drift import Drift
from components.release import fingerprint as content_fingerprint
from llmops.drift import stats
from llmops.drift.records import field as field_value
from llmops.drift.records import number, schema_fields
from llmops.retrieval.embed import Embedder

KIND = "llmops.drift.reference"
FORMAT = 1
MIN_RECORDS = 200  # fewer and the buckets' proportions are noise
MAX_RECORDS = 20_000  # a uniform sample of a longer window (reservoir)
MAX_EMBEDDED = 5_000  # prompts embedded for the centroid and the clusters
CLUSTERS = 8
SCHEMA_PRESENCE = 0.99  # a field in the reference's schema is in at least this share of its records


class ReferenceError(ValueError):
    """No reference can be built or read; the message names the input and what is wrong."""


@dataclass(frozen=True)
class FeatureReference:
    edges: list[float]
    proportions: list[float]
    count: int


@dataclass(frozen=True)
class EmbeddingReference:
    model: str
    dimension: int
    count: int
    centroid: list[float]
    squared: float  # the unbiased |mu|^2 (stats.squared_centroid)
    clusters: list[list[float]]  # unit centroids of the topics (spherical k-means)
    cluster_proportions: list[float]
    # Below this similarity to its nearest topic a prompt counts as a new topic (the reference's 2nd percentile).
    outlier_similarity: float


@dataclass(frozen=True)
class Reference:
    model: str
    release: str
    features: dict[str, FeatureReference]
    embedding: EmbeddingReference | None
    schema: dict[str, str]
    window: dict[str, Any]  # from, to (epoch seconds of the records' ts, when they carry one), records, sources
    reason: str  # initial | new-release | accepted-drift | <free text>
    created_at: float = field(default_factory=time.time)
    created_by: str = ""
    version: int = 0  # set by the store when written
    previous: int | None = None
    fingerprint: str = ""

    def content(self) -> dict[str, Any]:
        """What the fingerprint covers: the statistics, the model and the release -- not who or when."""
        data = asdict(self)
        return {k: data[k] for k in ("model", "release", "features", "embedding", "schema")}

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "format": FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Reference:
        if data.get("kind") != KIND or data.get("format") != FORMAT:
            raise ReferenceError(f"{where}: not a drift reference of format {FORMAT}")
        try:
            embedding = data["embedding"]
            reference = cls(model=data["model"], release=data["release"],
                            features={name: FeatureReference(**f) for name, f in data["features"].items()},
                            embedding=EmbeddingReference(**embedding) if embedding else None, schema=data["schema"],
                            window=data["window"], reason=data["reason"], created_at=data["created_at"],
                            created_by=data["created_by"], version=data["version"], previous=data["previous"],
                            fingerprint=data["fingerprint"])
        except (KeyError, TypeError) as error:
            raise ReferenceError(f"{where}: malformed drift reference ({error})") from None
        if content_fingerprint(reference.content(), length=64) != reference.fingerprint:
            raise ReferenceError(f"{where}: fingerprint mismatch: the reference was changed after it was written")
        return reference

    def centroid(self) -> stats.Vector:
        assert self.embedding is not None
        return np.asarray(self.embedding.centroid, dtype=np.float64)


def build_reference(records: Iterable[dict[str, Any]], *, model: str, drift: Drift, embedder: Embedder | None,
                    release: str, reason: str, created_by: str = "", sources: int = 0, seed: int = 0) -> Reference:
    """A reference from one model's request-log records (a uniform sample of at most MAX_RECORDS)."""
    rng = random.Random(seed)
    sample: list[dict[str, Any]] = []
    seen = 0
    first = last = None
    for record in records:
        seen += 1
        ts = _timestamp(record.get("ts"))
        if ts is not None:
            first, last = min(first or ts, ts), max(last or ts, ts)
        if len(sample) < MAX_RECORDS:
            sample.append(record)
        else:
            slot = rng.randrange(seen)
            if slot < MAX_RECORDS:
                sample[slot] = record
    if len(sample) < MIN_RECORDS:
        raise ReferenceError(f"{len(sample)} request-log record(s) of model {model!r}: a reference needs at least "
                             f"{MIN_RECORDS} (give a longer window of logs)")
    features: dict[str, FeatureReference] = {}
    for feature in drift.features:
        values = [v for v in (number(field_value(r, feature.field)) for r in sample) if v is not None]
        if len(values) < MIN_RECORDS:
            raise ReferenceError(f"field {feature.field!r}: a number in {len(values)} of {len(sample)} records of "
                                 f"model {model!r}; expected at least {MIN_RECORDS} (models[].drift.features)")
        edges = stats.bucket_edges(values)
        counts = Counter(stats.bucket_of(edges, v) for v in values)
        features[feature.field] = FeatureReference(edges=edges, count=len(values),
                                                   proportions=[counts.get(b, 0) / len(values)
                                                                for b in range(len(edges) + 1)])
    embedding = None
    if drift.embedding is not None:
        if embedder is None:
            raise ReferenceError(f"model {model!r} judges its prompts' embedding: an embedder is needed")
        texts = [t for t in (field_value(r, drift.embedding.field) for r in sample[:MAX_EMBEDDED]) if isinstance(t, str)]
        if len(texts) < MIN_RECORDS:
            raise ReferenceError(f"field {drift.embedding.field!r}: text in {len(texts)} records of model {model!r}; "
                                 f"expected at least {MIN_RECORDS} (models[].drift.embedding.field)")
        embedding = embedding_reference(np.asarray(embedder.embed(texts), dtype=np.float64), embedder.model, seed)
    presence = Counter(name for r in sample for name in dict(schema_fields(r)))
    types: dict[str, Counter[str]] = {}
    for r in sample:
        for name, kind in schema_fields(r):
            types.setdefault(name, Counter())[kind] += 1
    schema = {name: types[name].most_common(1)[0][0] for name, n in sorted(presence.items())
              if n >= SCHEMA_PRESENCE * len(sample)}
    reference = Reference(model=model, release=release, features=features, embedding=embedding, schema=schema,
                          window={"from": first, "to": last, "records": seen, "sampled": len(sample),
                                  "sources": sources},
                          reason=reason, created_by=created_by)
    return reference


def embedding_reference(vectors: stats.Vector, model: str, seed: int = 0) -> EmbeddingReference:
    count = len(vectors)
    total = vectors.sum(axis=0)
    squared = stats.squared_centroid(total, count, float((vectors * vectors).sum()))
    clusters, labels = stats.kmeans(vectors, CLUSTERS, seed=seed)
    nearest = np.max(vectors @ clusters.T, axis=1)
    shares = Counter(labels)
    return EmbeddingReference(model=model, dimension=int(vectors.shape[1]), count=count,
                              centroid=[float(v) for v in total / count], squared=squared,
                              clusters=[[float(v) for v in row] for row in clusters],
                              cluster_proportions=[shares.get(c, 0) / count for c in range(len(clusters))],
                              outlier_similarity=float(np.quantile(nearest, 0.02)))


def _timestamp(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime, timezone
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    return None


# --- the store ---------------------------------------------------------------------------------------------------------

class ReferenceStore:
    """Reference versions under a directory or an s3:// prefix."""

    def __init__(self, location: str, s3_client: Callable[[], Any] | None = None) -> None:
        self.location = location
        self._s3_client, self._s3 = s3_client, None
        if location.startswith("s3://"):
            bucket, _, prefix = location[len("s3://"):].partition("/")
            if not bucket:
                raise ReferenceError(f"{location!r}: expected s3://bucket/prefix")
            self.bucket, self.prefix = bucket, prefix.strip("/")
        else:
            self.root = Path(location).expanduser()

    @property
    def remote(self) -> bool:
        return self.location.startswith("s3://")

    def _client(self) -> Any:
        if self._s3 is None:
            if self._s3_client is None:
                raise ReferenceError(f"{self.location}: an S3 client is needed for s3:// references")
            self._s3 = self._s3_client()
        return self._s3

    def _key(self, model: str, version: int) -> str:
        name = f"{model}/v{version:06d}.json"
        return f"{self.prefix}/{name}" if self.remote and self.prefix else name

    def where(self, model: str, version: int) -> str:
        if self.remote:
            return f"s3://{self.bucket}/{self._key(model, version)}"
        return str(self.root / self._key(model, version))

    def versions(self, model: str) -> list[int]:
        names: list[str] = []
        if self.remote:
            prefix = self._key(model, 0).rsplit("/", 1)[0] + "/"
            for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                names += [o["Key"].rsplit("/", 1)[1] for o in page.get("Contents", [])]
        elif (self.root / model).is_dir():
            names = [p.name for p in (self.root / model).iterdir()]
        return sorted(int(n[1:7]) for n in names if len(n) == 12 and n.startswith("v") and n.endswith(".json")
                      and n[1:7].isdigit())

    def latest(self, model: str) -> Reference | None:
        versions = self.versions(model)
        return self.get(model, versions[-1]) if versions else None

    def get(self, model: str, version: int) -> Reference:
        where = self.where(model, version)
        try:
            if self.remote:
                body = self._client().get_object(Bucket=self.bucket, Key=self._key(model, version))["Body"].read()
            else:
                body = Path(where).read_bytes()
            data = json.loads(body)
        except (OSError, ValueError) as error:
            raise ReferenceError(f"{where}: cannot be read: {error}") from None
        reference = Reference.from_json(data, where)
        if reference.model != model or reference.version != version:
            raise ReferenceError(f"{where}: holds {reference.model} v{reference.version}, not {model} v{version}")
        return reference

    def put(self, reference: Reference) -> Reference:
        """Write the next version (exclusively; retried on a race); returns it with version and fingerprint set."""
        tried = 0
        for _ in range(100):  # each loss means another writer took that version: try the next one
            versions = self.versions(reference.model)
            version = max((versions[-1] if versions else 0) + 1, tried + 1)
            stored = Reference(**{**reference.__dict__, "version": version, "previous": version - 1 if version > 1 else None,
                                  "fingerprint": content_fingerprint(reference.content(), length=64)})
            body = json.dumps(stored.to_json(), sort_keys=True).encode()
            if self._create(reference.model, version, body):
                return stored
            tried = version
        raise ReferenceError(f"{self.location}: could not take a new version for {reference.model} (too many writers)")

    def _create(self, model: str, version: int, body: bytes) -> bool:
        if self.remote:
            from botocore.exceptions import ClientError

            try:
                self._client().put_object(Bucket=self.bucket, Key=self._key(model, version), Body=body,
                                          IfNoneMatch="*", ContentType="application/json")
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
            return True
        directory = self.root / model
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".v", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, directory / f"v{version:06d}.json")  # fails if the version exists
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(temporary)


@dataclass(frozen=True)
class ModelPolicy:
    """What a stack says about one model's drift: its policy, the embedding model its prompts are embedded with,
    and the release serving now (what a new reference belongs to)."""
    model: str
    drift: Drift
    embedding_model: str | None
    release: str


def model_policy(stack: Any, model: str) -> ModelPolicy:
    """From a components.config.StackConfig; ReferenceError when the model is unknown or has no drift policy."""
    from components.config.releases import release_of, retrieval_fingerprints

    models = {m.name: m for m in stack.models}
    if model not in models:
        raise ReferenceError(f"--model {model!r}: no such model in the stack; models: {', '.join(models)}")
    found = models[model]
    if found.drift is None:
        raise ReferenceError(f"--model {model!r}: the stack gives it no drift policy (models[].drift)")
    indexes = {index.name: index for index in stack.retrieval.indexes}
    embedding_model = indexes[found.drift.embedding.index].embedding_model if found.drift.embedding else None
    release = release_of(found, found.release, retrieval_fingerprints(stack.retrieval)).release_id
    return ModelPolicy(model=model, drift=found.drift, embedding_model=embedding_model, release=release)
