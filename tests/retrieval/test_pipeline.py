"""The retrieval pipeline's pieces: normalisation and chunking as the config names them, the embedders
(the local one, and the OpenAI-compatible client against an HTTP server speaking that API), and the
freshness metrics -- computed on embedded Qdrant and moto's S3, pushed to Debian's Pushgateway."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import boto3
import pytest

from llmops.retrieval.build import build, s3_snapshot
from llmops.retrieval.embed import LocalEmbedder, OpenAIEmbedder, embedder_for
from llmops.retrieval.freshness import freshness
from llmops.retrieval.store import IndexStore, chunk_id, version_name
from llmops.retrieval.text import chunk, normalise

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"normalisation": "nfkc-lower", "chunker": "recursive", "chunkSize": 20, "chunkOverlap": 4, "topK": 3}


def test_normalisation():
    assert normalise("Ｆｕｌｌ Width ﬁle", "nfkc-lower") == "full width file"
    assert normalise("Ｆｕｌｌ", "nfkc") == "Full" and normalise("Ｆｕｌｌ", "none") == "Ｆｕｌｌ"
    with pytest.raises(ValueError, match="normalisation 'nfc'"):
        normalise("x", "nfc")


def test_fixed_windows_overlap_by_the_configured_words():
    words = " ".join(f"w{i}" for i in range(25))
    chunks = [c.split() for c in chunk(words, "fixed", 10, 3)]
    assert [c[0] for c in chunks] == ["w0", "w7", "w14", "w21"] and chunks[0][-3:] == chunks[1][:3]
    assert chunks[-1][-1] == "w24" and all(len(c) <= 10 for c in chunks)


def test_sentence_and_recursive_chunks_keep_whole_sentences_and_paragraphs():
    text = "One two three four. Five six seven eight. Nine ten eleven twelve.\n\nThirteen fourteen fifteen sixteen."
    assert chunk(text, "sentence", 8, 4) == ["One two three four. Five six seven eight.",
                                             "Five six seven eight. Nine ten eleven twelve.",
                                             "Nine ten eleven twelve. Thirteen fourteen fifteen sixteen."]
    assert chunk(text, "recursive", 12, 0) == ["One two three four. Five six seven eight. Nine ten eleven twelve.",
                                               "Thirteen fourteen fifteen sixteen."]
    with pytest.raises(ValueError, match="chunk overlap 8"):
        chunk(text, "fixed", 8, 8)


def test_the_local_embedder_is_deterministic_normalised_and_lexical():
    embedder = LocalEmbedder("local:hashing-256")
    a, b, c = embedder.embed(["refund my invoice", "refund my invoice", "gpu latency timeout"])
    assert a == b and math.isclose(sum(v * v for v in a), 1.0) and len(a) == 256
    near = sum(x * y for x, y in zip(a, embedder.embed(["invoice refund please"])[0], strict=True))
    far = sum(x * y for x, y in zip(a, c, strict=True))
    assert near > 0.3 and near > far + 0.3
    with pytest.raises(ValueError, match="expected local:hashing-<dim>"):
        LocalEmbedder("local:hashing-4")
    with pytest.raises(ValueError, match="served remotely"):
        embedder_for("BAAI/bge-small-en-v1.5")


def test_the_openai_compatible_client_batches_and_checks_dimensions():
    """vLLM cannot run here; an HTTP server answering /v1/embeddings in the OpenAI format stands in for it."""
    local, seen = LocalEmbedder("local:hashing-32"), []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body["model"], len(body["input"]), self.headers.get("Authorization")))
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(local.embed(body["input"]))]
            payload = json.dumps({"object": "list", "data": list(reversed(data)), "model": body["model"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        os.environ["EMBED_KEY_FOR_TEST"] = "k"
        remote = OpenAIEmbedder(url, "bge-small", dimension=32, api_key_env="EMBED_KEY_FOR_TEST", batch=2)
        texts = ["a b", "c d", "e f"]
        assert remote.embed(texts) == local.embed(texts)  # in input order, whatever order the server answered in
        assert seen == [("/v1/embeddings", "bge-small", 2, "Bearer k"), ("/v1/embeddings", "bge-small", 1, "Bearer k")]
        with pytest.raises(ValueError, match="returned 32 dimensions, expected 64"):
            OpenAIEmbedder(url, "bge-small", dimension=64).embed(["x"])
    finally:
        server.shutdown()
        os.environ.pop("EMBED_KEY_FOR_TEST", None)


def test_freshness_counts_new_changed_and_gone_documents(aws_env, tmp_path):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="fresh")
    s3.put_bucket_versioning(Bucket="fresh", VersioningConfiguration={"Status": "Enabled"})
    for i in range(10):
        s3.put_object(Bucket="fresh", Key=f"docs/{i}.txt", Body=f"document {i} about refunds and invoices".encode())
    snapshot = s3_snapshot(s3, "fresh", "docs/")
    store = IndexStore(path=str(tmp_path / "q"))
    embedder = LocalEmbedder("local:hashing-64")
    collection = version_name("docs", 1)
    store.create(collection, 64, {"fingerprint": "fp-1", "snapshot_at": max(e.modified for e in snapshot) + 0.001})
    texts = {e.key: s3.get_object(Bucket="fresh", Key=e.key)["Body"].read().decode() for e in snapshot}
    built = build(store, collection, [(e, texts[e.key]) for e in snapshot], CONFIG, embedder)
    assert built.documents == 10 and store.count(collection) == built.chunks
    again = build(store, collection, [(e, texts[e.key]) for e in snapshot], CONFIG, embedder)
    assert store.count(collection) == again.chunks == built.chunks  # deterministic ids: a rebuild rewrites
    assert chunk_id("docs/1.txt", 0) == chunk_id("docs/1.txt", 0) != chunk_id("docs/1.txt", 1)
    assert freshness(store, collection, snapshot, "fp-1") | {"age_seconds": 0} == {
        "age_seconds": 0, "corpus_newer_objects": 0.0, "stale_fraction": 0.0, "config_mismatch": 0.0,
        "indexed_documents": 10.0}
    s3.put_object(Bucket="fresh", Key="docs/1.txt", Body=b"changed")
    s3.delete_object(Bucket="fresh", Key="docs/2.txt")
    s3.put_object(Bucket="fresh", Key="docs/new.txt", Body=b"new")
    metrics = freshness(store, collection, s3_snapshot(s3, "fresh", "docs/"), "fp-2")
    assert metrics["stale_fraction"] == 0.2 and metrics["corpus_newer_objects"] == 2 and metrics["config_mismatch"] == 1
    store.flip("docs", collection)
    store.close()

    from llmops.drill.backends import PushgatewayServer

    try:
        gateway = PushgatewayServer().start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "llmops.cli", "retrieval", "freshness", "--index", "docs", "--corpus", "s3://fresh/docs/",
             "--serving-fingerprint", "fp-1", "--qdrant-path", str(tmp_path / "q"), "--pushgateway", gateway.url,
             "--endpoint-url", aws_env], cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ)
        assert result.returncode == 0, result.stderr
        printed = json.loads(result.stdout)
        assert printed["collection"] == "docs--v1" and printed["stale_fraction"] == 0.2
        exposed = gateway.metrics()
    finally:
        gateway.stop()
    assert 'llmops_index_stale_fraction{index="docs",instance="",job="llmops_index_freshness"} 0.2' in exposed
    assert 'llmops_index_corpus_newer_objects{index="docs",instance="",job="llmops_index_freshness"} 2' in exposed
    assert 'llmops_index_config_mismatch{index="docs",instance="",job="llmops_index_freshness"} 0' in exposed
    assert "llmops_index_age_seconds{" in exposed
