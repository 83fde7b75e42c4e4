#!/usr/bin/env python3
"""Benchmark the offline plan: `llmops preview` of every stack, cold, in a fresh process each run.

Reports wall time and peak resident memory (the child's max RSS) per run, and the
median and worst over the runs. Target (issue 2): all three stacks in at most 6 s and
400 MB on a 2-core machine. Exit 1 if the worst run misses the target.

    python scripts/bench_preview.py [--runs 5] [--extra --validate --render build/manifests]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS, TARGET_MB = 6.0, 400.0


def one_run(extra: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        args = [arg.replace("{tmp}", scratch) for arg in extra]
        subprocess.run([sys.executable, "-m", "llmops.cli", "preview", *args], check=True,
                       stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far; runs grow or stay equal, so report it as is.
    return seconds, max(peak_kb, before) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="arguments for `llmops preview` ({tmp} is a scratch directory)")
    args = parser.parse_args()
    results = [one_run(args.extra) for _ in range(args.runs)]
    times = [t for t, _ in results]
    peak = max(m for _, m in results)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"command: llmops preview {' '.join(args.extra)}  (stacks: dev, staging, prod; {args.runs} cold runs)")
    print("runs (s): " + ", ".join(f"{t:.2f}" for t in times))
    print(f"wall time: median {statistics.median(times):.2f} s, worst {max(times):.2f} s (target <= {TARGET_SECONDS:.0f} s)")
    print(f"peak memory: {peak:.0f} MB (target <= {TARGET_MB:.0f} MB)")
    return 0 if max(times) <= TARGET_SECONDS and peak <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
