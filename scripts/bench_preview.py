#!/usr/bin/env python3
"""Benchmark the offline plan as `scripts/dev.sh plan` runs it: every stack, cold, a fresh `llmops` process per run.

Two commands, their runs interleaved (so that a change in the machine's load hits both alike):

  plan           llmops preview --validate --render DIR --json DIR/plan-{stack}.json
  plan + policy  the same with --policy: the policy pack over the same plans (what dev.sh plan runs)

For each: wall time per run, median and worst; CPU time (user + sys of the command and every process it started,
median) -- steadier than wall time on a shared machine; and peak resident memory of the largest process. Target
(issue 17): plan + policy in at most 6 s on a 2-core machine, and no process above 400 MB; exit 1 if the worst
run misses it. The load average before and after is printed: figures taken while other work ran are not quiet ones.

    python scripts/bench_preview.py [--runs 5] [--only plan|plan+policy] [--jobs N] [--extra ARG ...]
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
ROOT = Path(__file__).resolve().parent.parent
PLAN = ["--validate", "--render", "{tmp}/manifests", "--json", "{tmp}/plan-{stack}.json"]
COMMANDS = {"plan": PLAN, "plan+policy": [*PLAN, "--policy"]}


def one_run(arguments: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (children, user + sys) and the largest child's peak RSS in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        args = [arg.replace("{tmp}", scratch) for arg in arguments]
        subprocess.run([sys.executable, "-m", "llmops.cli", "preview", *args], check=True,
                       stdout=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of children is the largest descendant so far (the worker's forked processes are reaped by the
    # worker, and count); runs grow or stay equal, so report it as is.
    return seconds, cpu, max(after.ru_maxrss, before.ru_maxrss) / 1024


def machine() -> str:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()}, {cores} cores{f' ({model})' if model else ''}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=sorted(COMMANDS), help="one of the two commands")
    parser.add_argument("--jobs", type=int, default=None, help="passed to llmops preview (default: its own)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more arguments for `llmops preview` ({tmp} is a scratch directory)")
    args = parser.parse_args()
    chosen = {name: [*arguments, *(["--jobs", str(args.jobs)] if args.jobs else []), *args.extra]
              for name, arguments in COMMANDS.items() if args.only in (None, name)}
    load_before = os.getloadavg()[0]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in chosen}
    for _ in range(args.runs):
        for name, arguments in chosen.items():
            results[name].append(one_run(arguments))
    print(f"machine: {machine()}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"stacks: every Pulumi.<stack>.yaml of this project; {args.runs} cold runs each, interleaved")
    missed = False
    for name, runs in results.items():
        times, cpus, peak = [t for t, _, _ in runs], [c for _, c, _ in runs], max(m for _, _, m in runs)
        print(f"{name}: llmops preview {' '.join(chosen[name])}")
        print("  runs (s): " + ", ".join(f"{t:.2f}" for t in times))
        print(f"  wall time: median {statistics.median(times):.2f} s, worst {max(times):.2f} s; "
              f"CPU time median {statistics.median(cpus):.2f} s; peak memory {peak:.0f} MB")
        if name == "plan+policy" or args.only:
            missed = missed or max(times) > TARGET_SECONDS or peak > TARGET_MB
    print(f"target: plan + policy at most {TARGET_SECONDS:.0f} s (worst run), {TARGET_MB:.0f} MB -- "
          + ("missed" if missed else "met"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
