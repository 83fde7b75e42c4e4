#!/usr/bin/env python3
"""Throughput of a sharded PII scan: N shard processes (`llmops pii scan --shards N --results ...`, the index in
JOB_COMPLETION_INDEX as Kubernetes sets it) over the same S3 prefix on moto's server, for N = 1 and 2 by default.

For each N: wall time (first start to last exit), MB/s over the objects' stored bytes (uncompressed corpus here),
the scaling against N = 1, and the CPU seconds of the shard processes, whence a per-core rate (MB per CPU second)
that holds on a busy machine too. Runs are interleaved (1, 2, 1, 2, ...) so a change in load hits both alike; the
load average before and after is printed. moto's server runs on the same cores and serves every GET: its CPU is
not counted in the per-core rate, but it competes with the shards for wall time.

    python scripts/bench_pii_shards.py [--megabytes 60] [--objects 24] [--runs 3] [--shards 1 2]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=60, help="total size of the objects (default 60)")
    parser.add_argument("--objects", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import boto3

    from llmops.drill.backends import MotoServer
    from llmops.pii.corpus import write

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    os.environ.update(env)
    server = MotoServer().start()
    try:
        s3 = boto3.client("s3", endpoint_url=server.url)
        s3.create_bucket(Bucket="bench")
        per_object = int(args.megabytes * 1e6 / args.objects)
        with tempfile.TemporaryDirectory() as scratch:
            sample = Path(scratch) / "sample.jsonl"
            write(str(sample), 4000, seed=11, prose=2)
            data = sample.read_bytes()
        total = 0
        for index in range(args.objects):
            body = (data * (per_object // len(data) + 1))[:per_object]
            body = body[:body.rfind(b"\n") + 1]
            s3.put_object(Bucket="bench", Key=f"logs/part-{index:04d}.jsonl", Body=body)
            total += len(body)
        print(f"{args.objects} objects, {total / 1e6:.1f} MB under s3://bench/logs/ on {platform.node()} "
              f"({os.cpu_count()} CPUs); load average before: {_load()}", flush=True)
        results: dict[int, list[tuple[float, float]]] = {n: [] for n in args.shards}
        for run in range(args.runs):
            for shards in args.shards:
                wall, cpu = _run(server.url, shards, f"run-{run}-{shards}", env)
                results[shards].append((wall, cpu))
                print(f"  run {run + 1}: {shards} shard(s): {wall:.2f} s wall, {cpu:.2f} s CPU, "
                      f"{total / 1e6 / wall:.1f} MB/s", flush=True)
        print(f"load average after: {_load()}")
        base = statistics.median(w for w, _ in results[args.shards[0]])
        print(f"{'shards':>6} {'wall s (median)':>16} {'MB/s':>7} {'scaling':>8} {'CPU s':>7} {'MB per CPU s':>13}")
        for shards, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"{shards:>6} {wall:>16.2f} {total / 1e6 / wall:>7.1f} {base / wall:>7.2f}x {cpu:>7.2f} "
                  f"{total / 1e6 / cpu:>13.1f}")
    finally:
        server.stop()
    return 0


def _run(endpoint: str, shards: int, scan_id: str, env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    processes = [subprocess.Popen(
        [sys.executable, "-m", "llmops.cli", "pii", "scan", "s3://bench/logs/", "--shards", str(shards),
         "--results", f"s3://bench/results/{scan_id}/", "--output", "none", "--endpoint-url", endpoint],
        cwd=ROOT, env={**env, "JOB_COMPLETION_INDEX": str(index)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for index in range(shards)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a shard failed ({process.returncode}): {err.decode()[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
