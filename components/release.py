"""Release identity: one stable hash over everything that changes what a served model answers.

Weights (registry version), the image digest, the serving args, the prompt/config version,
the feature view and the retrieval config's fingerprint all go in; a change to any one of
them is a new release, so a changed feature view can never hide behind unchanged weights.
Plain Python (no Pulumi): the runbooks compute the same ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

RELEASE_ID_LENGTH = 16
# Tags the release pipeline writes on a registry version: its release manifest (these parts, as JSON), and that it
# passed validation. The rollback runbook chooses known-good versions by them.
RELEASE_TAG = "llmops.release"
# On a canary's registry version while the release controller holds it for review: {"reason", "at", "by"}.
PAUSED_TAG = "llmops.release.paused"
VALIDATED_TAG, VALIDATED_VALUE = "validation_status", "passed"


def fingerprint(parts: Mapping[str, Any], length: int = RELEASE_ID_LENGTH) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace), truncated to `length` hex digits."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def retrieval_fingerprint(*, embedding_model: str, chunker: str, chunk_size: int, chunk_overlap: int,
                          normalisation: str, top_k: int) -> str:
    """The fingerprint of how an index is built and queried; the index records it, releases include it."""
    return fingerprint({"embedding_model": embedding_model, "chunker": chunker, "chunk_size": chunk_size,
                        "chunk_overlap": chunk_overlap, "normalisation": normalisation, "top_k": top_k})


@dataclass(frozen=True)
class ReleaseParts:
    registered_model: str
    model_version: str
    image_digest: str  # sha256:<hex>
    serving_args: tuple[str, ...]
    prompt_version: str
    feature_view: str | None
    retrieval_fingerprint: str | None

    def to_dict(self) -> dict[str, Any]:
        parts = asdict(self)
        parts["serving_args"] = list(self.serving_args)
        return parts

    @property
    def release_id(self) -> str:
        return fingerprint(self.to_dict())


def image_digest(image: str) -> str:
    return image.rsplit("@", 1)[1]


def release_parts(*, registered_model: str, model_version: str, image: str, serving_args: Sequence[str],
                  prompt_version: str, feature_view: str | None, retrieval_fingerprint: str | None) -> ReleaseParts:
    return ReleaseParts(registered_model=registered_model, model_version=model_version, image_digest=image_digest(image),
                        serving_args=tuple(serving_args), prompt_version=prompt_version, feature_view=feature_view,
                        retrieval_fingerprint=retrieval_fingerprint)


def index_fingerprint(index: Any) -> str:
    """The fingerprint of an index's retrieval config (a components.config.IndexConfig)."""
    return retrieval_fingerprint(embedding_model=index.embedding_model, chunker=index.chunker,
                                 chunk_size=index.chunk_size, chunk_overlap=index.chunk_overlap,
                                 normalisation=index.normalisation, top_k=index.top_k)


def recorded_config(index: Any) -> dict:
    """The config as recorded beside the index (ConfigMap, collection metadata), with its fingerprint."""
    return {**index.model_dump(by_alias=True), "fingerprint": index_fingerprint(index)}
