#!/usr/bin/env python3
"""Benchmark the rollback runbook's own overhead against the local backends of `llmops drill rollback`.

For each run (the bad release live again before each): wall time from start to verified and
pinned, minus the time the rollout itself takes (wait-for-rollout) and minus the verification
window (the runbook must watch a full window of traffic after the rollout; that is not
overhead). Runs in-process (warm) and as the CLI (cold process, imports included).
Target (issue 6): overhead under 5 s, for the runbook itself (in-process). The cold CLI figure adds
the Python process and its imports (MLflow's alone is about 2.3 s) and is reported beside it.
Exit 1 if the worst in-process run misses the target.

    python scripts/bench_rollback.py [--runs 5] [--cold-runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmops.drill.rollback_drill import SERVICE, DrillSettings, scratch_drill  # noqa: E402
from runbooks.engine.runner import RunOptions  # noqa: E402
from runbooks.launch import launch  # noqa: E402

TARGET_SECONDS = 5.0
WINDOW = 2


def overhead(total: float, steps: list[dict]) -> float:
    waited = sum(s.get("seconds") or 0 for s in steps if s["step"] == "wait-for-rollout")
    return total - waited - WINDOW


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=2)
    args = parser.parse_args()
    drill = scratch_drill(DrillSettings(verification_window_seconds=WINDOW)).start()
    warm, cold = [], []
    try:
        os.environ.update(drill.environment())
        for _ in range(args.runs):
            drill.reset()
            began = time.monotonic()
            result = launch("rollback", "drill", {"service": SERVICE, "to": None}, RunOptions(yes=True), lambda m: None)
            total = time.monotonic() - began
            assert result.status == "succeeded", result.error
            warm.append((total, overhead(total, result.steps)))
        for _ in range(args.cold_runs):
            drill.reset()
            began = time.monotonic()
            completed = subprocess.run([sys.executable, "-m", "llmops.cli", "runbook", "run", "rollback", "--env", "drill",
                                        "--service", SERVICE, "--yes", "--output", "json"],
                                       cwd=ROOT, env={**os.environ, **drill.environment()}, capture_output=True, text=True)
            total = time.monotonic() - began
            assert completed.returncode == 0, completed.stderr
            cold.append((total, overhead(total, json.loads(completed.stdout)["steps"])))
    finally:
        drill.stop()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"backends: MLflow SQLite store, kmock Kubernetes API, Prometheus {WINDOW}s verification window, moto")
    for label, runs in (("in-process", warm), ("CLI, cold", cold)):
        if not runs:
            continue
        overheads = [o for _, o in runs]
        print(f"{label}: total median {statistics.median(t for t, _ in runs):.2f}s; overhead median "
              f"{statistics.median(overheads):.2f}s, worst {max(overheads):.2f}s (target < {TARGET_SECONDS:.0f}s)")
    worst = max(o for _, o in warm)
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
