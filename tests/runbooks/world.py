"""What every runbook test world shares: run the CLI as on-call does (its own process, the world's
targets), and read back the run's journal, gate and evidence."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.cli_fork import run_llmops

ROOT = Path(__file__).resolve().parents[2]


class RunbookWorld:
    runbook = ""
    env = ""
    workdir: Path

    def environment(self) -> dict[str, str]:
        raise NotImplementedError

    def cli(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.environment()}
        env.pop("LLMOPS_CRASH_AT", None)
        if crash_at:
            env["LLMOPS_CRASH_AT"] = crash_at
        return run_llmops(["runbook", "run", self.runbook, "--env", self.env, *args], env=env, timeout=300)

    def run_ids(self) -> list[str]:
        return sorted(p.parent.name for p in (self.workdir / "state").glob("*/journal.jsonl"))

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        path = self.workdir / "state" / run_id / "journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def gate_hash(self, run_id: str) -> str | None:
        waits = [e for e in self.journal(run_id) if e["event"] == "awaiting_approval"]
        return waits[-1]["gate_hash"] if waits else None

    def evidence(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.workdir / "evidence" / "evidence" / f"{run_id}.json").read_text())
