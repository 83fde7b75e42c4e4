"""A drift world for CLI and runbook tests: the dev stack with its docs index on the local embedder, request logs of
the reference traffic and of drifted traffic, a reference directory, a targets file, and a real drift monitor
(`MonitorServer`: HTTP on 127.0.0.1) that follows the references."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from components import config as stack_config
from llmops.drift import traffic
from llmops.drift.monitor import Monitor
from llmops.drift.reference import ReferenceStore
from llmops.drift.server import MonitorServer, embedders_for
from llmops.drift.settings import MonitorSettings
from tests.runbooks.world import RunbookWorld

ROOT = Path(__file__).resolve().parents[2]
ENV = "drift-test"
MODEL = "chat-small"
EMBEDDING_MODEL = "local:hashing-256"


def stack_with_local_embedder(path: Path) -> Path:
    stack = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    stack["config"]["llmops:retrieval"]["indexes"][0]["embeddingModel"] = EMBEDDING_MODEL
    stack["config"]["llmops:driftMonitor"].pop("embeddings", None)
    for model in stack["config"]["llmops:models"]:
        model["drift"] = {"features": [{"field": "prompt_tokens"}, {"field": "completion_tokens"},
                                       {"field": "retrieval_top_score"}],
                          "embedding": {"index": "docs"}, "retraining": {"volume": 1000}}
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path


def write_log(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


class DriftWorld(RunbookWorld):
    runbook, env = "drift-review", ENV

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stack_file = stack_with_local_embedder(workdir / "Pulumi.dev.yaml")
        self.references = workdir / "references"
        self.logs = workdir / "logs"
        self.server: MonitorServer | None = None
        self.url: str | None = None

    def policy(self) -> Any:
        stack = stack_config.load_file(self.stack_file)
        return next(m for m in stack.models if m.name == MODEL).drift

    def write_targets(self, **drift: Any) -> None:
        targets = self.workdir / "targets"
        targets.mkdir(exist_ok=True)
        (targets / f"{ENV}.yaml").write_text(yaml.safe_dump({
            "environment": ENV, "stack_file": str(self.stack_file), "aws": {"region": "us-east-1"},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"),
            "drift": {"references": str(self.references), "logs": str(self.logs), **drift}}))
        self.targets_dir = targets

    def environment(self) -> dict[str, str]:
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "LLMOPS_OPERATOR": "oncall@test",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def settings(self) -> MonitorSettings:
        return MonitorSettings.model_validate({
            "environment": ENV, "region": "us-east-1", "references": str(self.references),
            "referencePollSeconds": 0.2,
            "models": {MODEL: {"drift": self.policy().model_dump(by_alias=True, mode="json"),
                               "embeddingModel": EMBEDDING_MODEL}}})

    def start_monitor(self) -> str:
        settings = self.settings()
        monitor = Monitor(settings, ReferenceStore(str(self.references)), embedders_for(settings))
        self.server = MonitorServer(("127.0.0.1", 0), monitor)
        self.server.run_background()
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop_monitor(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def feed(self, seconds: int, shape: traffic.Shape, *, rate: int = 20, seed: int = 0) -> None:
        """`seconds` of traffic into the monitor, stamped in the past so the windows are whole at once."""
        assert self.server is not None
        rng = random.Random(seed)
        now = time.time()
        monitor = self.server.monitor
        for second in range(seconds):
            at = now - seconds + second
            lines = [json.dumps(traffic.record(rng, shape, ts=at, model=MODEL)).encode() for _ in range(rate)]
            batch = monitor.read(lines)
            with self.server.lock:
                monitor.add(batch, now=at)
        with self.server.lock:
            for _ in range(self.policy().consecutive_windows):
                monitor.tick(now)

    def recent_log(self, name: str, count: int, shape: traffic.Shape, *, seed: int = 1) -> Path:
        rng = random.Random(seed)
        now = time.time()
        return write_log(self.logs / name, [traffic.record(rng, shape, ts=now - 600 + i * 600 / count, model=MODEL)
                                            for i in range(count)])
