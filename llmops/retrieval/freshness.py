"""How fresh the live index is against its corpus, as the metrics the index alerts read:

- `llmops_index_age_seconds`: since the corpus snapshot the live version was built from;
- `llmops_index_corpus_newer_objects`: corpus objects the index has not got, or has an older ETag of;
- `llmops_index_stale_fraction`: indexed documents whose object changed (another ETag) or is gone;
- `llmops_index_config_mismatch`: 1 when the version's config fingerprint is not the one serving uses.

`llmops retrieval freshness` computes them and pushes them to a Pushgateway (a CronJob in the cluster
does this on a schedule); the reindex runbook pushes them after a flip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from llmops.retrieval.build import SnapshotEntry
from llmops.retrieval.store import IndexStore

JOB = "llmops_index_freshness"


def freshness(store: IndexStore, collection: str | None, corpus: Iterable[SnapshotEntry],
              serving_fingerprint: str | None, now: float | None = None) -> dict[str, float]:
    now = time.time() if now is None else now
    current = {e.key: e for e in corpus}
    if collection is None:
        return {"age_seconds": float("nan"), "corpus_newer_objects": float(len(current)), "stale_fraction": 1.0,
                "config_mismatch": 1.0, "indexed_documents": 0.0}
    meta = store.metadata(collection)
    snapshot_at = float(meta.get("snapshot_at") or 0)
    indexed = dict(store.documents(collection))
    stale = sum(1 for doc, etag in indexed.items() if doc not in current or current[doc].etag != etag)
    return {
        "age_seconds": round(now - snapshot_at, 3),
        # By content, not by clock: an object is newer if the index has not got it, or has another ETag of it.
        "corpus_newer_objects": float(sum(1 for e in current.values() if indexed.get(e.key, None) != e.etag)),
        "stale_fraction": round(stale / len(indexed), 6) if indexed else 1.0,
        "config_mismatch": 0.0 if serving_fingerprint and meta.get("fingerprint") == serving_fingerprint else 1.0,
        "indexed_documents": float(len(indexed)),
    }


def push(url: str, index: str, metrics: Mapping[str, Any], timeout: float = 10) -> None:
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    helps = {"age_seconds": "Seconds since the corpus snapshot the live index version was built from",
             "corpus_newer_objects": "Corpus objects the live version has not indexed, or indexed at another ETag",
             "stale_fraction": "Share of indexed documents whose object changed or is gone",
             "config_mismatch": "1 when the live version's retrieval config is not the one serving uses"}
    for name, description in helps.items():
        Gauge(f"llmops_index_{name}", description, ["index"], registry=registry).labels(index).set(float(metrics[name]))
    base = url if url.startswith(("http://", "https://")) else f"http://{url}"
    push_to_gateway(base, job=JOB, grouping_key={"index": index}, registry=registry, timeout=timeout)
