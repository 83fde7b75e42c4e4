"""A retrieval corpus in moto's S3, an embedded Qdrant directory, golden queries, and the prod stack file
with the docs index on the local embedder: what the reindex runbook needs, for tests and the benchmark."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import yaml

from llmops.retrieval.corpus import documents, golden
from tests.runbooks.world import RunbookWorld

ROOT = Path(__file__).resolve().parents[2]
ENV = "retrieval-drill"
INDEX = "docs"
LOCAL_MODEL = "local:hashing-1024"


class ReindexWorld(RunbookWorld):
    runbook, env = "reindex", ENV

    def __init__(self, endpoint: str, workdir: Path, documents_count: int = 120) -> None:
        self.endpoint, self.workdir, self.count = endpoint, workdir, documents_count
        self.bucket = f"corpus-{uuid.uuid4().hex[:8]}"
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.qdrant = workdir / "qdrant"

    def build(self) -> ReindexWorld:
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        for key, text, _ in documents(self.count):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode())
        stack = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
        index = stack["config"]["llmops:retrieval"]["indexes"][0]
        index.update({"embeddingModel": LOCAL_MODEL, "chunkSize": 128, "chunkOverlap": 16})
        self.stack_file = self.workdir / "Pulumi.prod.yaml"
        self.stack_file.write_text(yaml.safe_dump(stack, sort_keys=False))
        golden_dir, config_dir = self.workdir / "golden", self.workdir / "retrieval-configs" / INDEX
        golden_dir.mkdir(parents=True)
        config_dir.mkdir(parents=True)
        (golden_dir / f"{INDEX}.jsonl").write_text("".join(json.dumps(q) + "\n" for q in golden(self.count, queries=30)))
        # A config version that fragments documents into 32-word windows with a tiny embedding.
        (config_dir / "v-small.yaml").write_text(yaml.safe_dump({
            "embeddingModel": "local:hashing-16", "chunker": "fixed", "chunkSize": 32, "chunkOverlap": 0,
            "normalisation": "none", "topK": 8}))
        targets = self.workdir / "targets"
        targets.mkdir()
        (targets / f"{ENV}.yaml").write_text(yaml.safe_dump({
            "environment": ENV, "stack_file": str(self.stack_file),
            "aws": {"region": "us-east-1", "endpoint_url": self.endpoint},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"),
            "retrieval": {"qdrant_path": str(self.qdrant), "golden_dir": str(golden_dir),
                          "config_dir": str(self.workdir / "retrieval-configs"), "keep_versions": 1}}))
        self.targets_dir = targets
        return self

    @property
    def corpus(self) -> str:
        return f"s3://{self.bucket}/docs/"

    def environment(self) -> dict[str, str]:
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "LLMOPS_OPERATOR": "oncall@test"}

    def reindex(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
        """A full rebuild: run, then approve the flip it pauses at."""
        first = self.cli("--index", INDEX, "--corpus", self.corpus, "--yes", *args, crash_at=crash_at)
        if first.returncode != 3:
            return first
        run_id = self.run_ids()[-1]
        return self.cli("--resume", run_id, "--approve", self.gate_hash(run_id))

    def state(self) -> dict[str, Any]:
        """Collections, the alias and metadata, read with the store closed again (one process at a time)."""
        from llmops.retrieval.store import IndexStore

        store = IndexStore(path=str(self.qdrant))
        try:
            versions = store.versions(INDEX)
            return {"versions": versions, "live": store.live(INDEX),
                    "metadata": {name: store.metadata(name) for name in versions.values()},
                    "counts": {name: store.count(name) for name in versions.values()}}
        finally:
            store.close()
