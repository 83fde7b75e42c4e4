#!/usr/bin/env python3
"""Benchmark a reindex: documents and chunks per second through the runbook's own build path.

Generates a corpus (`llmops.retrieval.corpus`, default 10,000 documents of ~220 words), then
normalises, chunks, embeds (the deterministic local embedder) and writes a new Qdrant collection
version with `llmops.retrieval.build.build` -- the function the reindex runbook's build step calls --
and measures recall@k on golden queries. Reads come from memory, not S3, so the figure is the
pipeline's, not the network's. Qdrant runs embedded: `--qdrant memory` (default) or `--qdrant disk`
(embedded on disk, as the tests run it; it commits every point to SQLite, so it is far slower than a
Qdrant server would be). Pinned to one core.

    .venv/bin/python scripts/bench_reindex.py [--documents 10000] [--qdrant memory|disk] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.retrieval.build import SnapshotEntry, build, recall_at_k  # noqa: E402
from llmops.retrieval.corpus import documents, golden  # noqa: E402
from llmops.retrieval.embed import LocalEmbedder  # noqa: E402
from llmops.retrieval.store import IndexStore, version_name  # noqa: E402

CONFIG = {"normalisation": "nfkc-lower", "chunker": "recursive", "chunkSize": 128, "chunkOverlap": 16, "topK": 8,
          "embeddingModel": "local:hashing-1024"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--qdrant", choices=("memory", "disk"), default="memory")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    corpus = [(SnapshotEntry(key, "v1", "etag", 0.0), text) for key, text, _ in documents(args.documents)]
    megabytes = sum(len(text.encode()) for _, text in corpus) / 1e6
    with tempfile.TemporaryDirectory() as scratch:
        store = IndexStore(path=":memory:" if args.qdrant == "memory" else scratch)
        embedder = LocalEmbedder(str(CONFIG["embeddingModel"]))
        collection = version_name("bench", 1)
        store.create(collection, embedder.dimension, {"bench": True})
        began = time.perf_counter()
        built = build(store, collection, corpus, CONFIG, embedder)
        seconds = time.perf_counter() - began
        queries = golden(args.documents, queries=100)
        began = time.perf_counter()
        recall = recall_at_k(store, collection, queries, CONFIG, embedder)
        query_seconds = time.perf_counter() - began
        store.close()
    result = {"documents": built.documents, "chunks": built.chunks, "megabytes": round(megabytes, 2),
              "seconds": round(seconds, 2), "documents_per_second": round(built.documents / seconds, 1),
              "chunks_per_second": round(built.chunks / seconds, 1), "recall_at_8": recall,
              "queries_per_second": round(len(queries) / query_seconds, 1), "qdrant": args.qdrant,
              "machine": f"{platform.machine()}, CPU {cpu} of {os.cpu_count()}, Python {platform.python_version()}"}
    print(f"machine: {result['machine']}; qdrant embedded in {args.qdrant}")
    print(f"corpus: {built.documents} documents, {megabytes:.1f} MB -> {built.chunks} chunks ({CONFIG['chunker']}, "
          f"{CONFIG['chunkSize']} words, overlap {CONFIG['chunkOverlap']}; {CONFIG['embeddingModel']})")
    print(f"reindex: {seconds:.1f} s = {result['documents_per_second']} documents/s, {result['chunks_per_second']} chunks/s")
    print(f"golden queries: recall@8 {recall} over {len(queries)} queries, {result['queries_per_second']} queries/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
