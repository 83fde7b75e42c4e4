"""Build an index version from a corpus snapshot, and measure one on golden queries.

A corpus snapshot is the list of (key, version id, ETag) of every document object under a prefix,
and its id is a hash of that list: the index version records it, so what was indexed is known
exactly. Golden queries are JSON lines `{"query": "...", "expected": ["doc key", ...]}`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmops.retrieval.embed import Embedder
from llmops.retrieval.store import IndexStore, chunk_id
from llmops.retrieval.text import chunk, normalise

BATCH = 256


@dataclass(frozen=True)
class SnapshotEntry:
    key: str
    version_id: str | None
    etag: str
    modified: float


def snapshot_id(entries: Iterable[SnapshotEntry]) -> str:
    listing = sorted((e.key, e.version_id or "", e.etag) for e in entries)
    return "sha256:" + hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:32]


def s3_snapshot(s3: Any, bucket: str, prefix: str) -> list[SnapshotEntry]:
    """The current version of every object under the prefix (folders and empty objects left out)."""
    entries = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            if version["IsLatest"] and version["Size"] > 0 and not version["Key"].endswith("/"):
                entries.append(SnapshotEntry(version["Key"], version.get("VersionId"), version["ETag"].strip('"'),
                                             version["LastModified"].timestamp()))
    return sorted(entries, key=lambda e: e.key)


@dataclass
class Built:
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0


def build(store: IndexStore, collection: str, documents: Iterable[tuple[SnapshotEntry, str]], config: Mapping[str, Any],
          embedder: Embedder, progress: Callable[[Built], None] = lambda built: None) -> Built:
    """Chunk, embed and upsert every document. Point ids are deterministic, so building again into the same
    collection (after a crash) rewrites the same points."""
    built, began = Built(), time.perf_counter()
    pending: list[tuple[str, str, dict[str, Any]]] = []

    def flush() -> None:
        vectors = embedder.embed([text for _, text, _ in pending])
        built.chunks += store.upsert(collection, [(pid, vector, payload)
                                                  for (pid, _, payload), vector in zip(pending, vectors, strict=True)])
        pending.clear()
        progress(built)

    for entry, text in documents:
        pieces = chunk(normalise(text, config["normalisation"]), config["chunker"], config["chunkSize"],
                       config["chunkOverlap"])
        for number, piece in enumerate(pieces or [""]):
            pending.append((chunk_id(entry.key, number), piece,
                            {"doc_id": entry.key, "chunk": number, "etag": entry.etag, "text": piece}))
            if len(pending) >= BATCH:
                flush()
        built.documents += 1
    if pending:
        flush()
    built.seconds = time.perf_counter() - began
    return built


def load_golden(lines: Iterable[str], source: str) -> list[dict[str, Any]]:
    queries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{source}:{number}: not JSON: {error}") from None
        if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not isinstance(item.get("expected"), list) \
                or not item["expected"]:
            raise ValueError(f'{source}:{number}: expected {{"query": "...", "expected": ["doc key", ...]}}')
        queries.append(item)
    if not queries:
        raise ValueError(f"{source}: no golden queries")
    return queries


def recall_at_k(store: IndexStore, collection: str, queries: Sequence[Mapping[str, Any]], config: Mapping[str, Any],
                embedder: Embedder) -> float:
    """Mean share of each query's expected documents among the top-k, the query normalised as documents are."""
    k = config["topK"]
    vectors = embedder.embed([normalise(q["query"], config["normalisation"]) for q in queries])
    total = 0.0
    for query, vector in zip(queries, vectors, strict=True):
        found = set(store.search(collection, vector, k))
        total += len(found & set(query["expected"])) / len(query["expected"])
    return round(total / len(queries), 4)
