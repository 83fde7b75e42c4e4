"""Every drill built on the modular interface (failover, reindex, pii-incident, shadow), stopped by on-call while
its world is half started (its first server runs): SIGTERM ends it with 128 + 15 and one line, every process it
started is gone and its scratch directory removed; SIGKILL, which it cannot handle, still takes its servers with it
(they die with their parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.cli.drill import MODULAR_DRILLS
from tests.cli_fork import as_a_terminal_starts_it

ROOT = Path(__file__).resolve().parents[2]


def descendants(root: int) -> set[int]:
    """Every live process below `root`, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def wait_gone(pids: set[int], timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return sorted(p for p in pids if running(p))


def start_until_a_server_runs(drill: str, scratch: Path, servers: int = 1) -> tuple[subprocess.Popen, set[int]]:
    """The drill, run until `servers` processes of its world run. One: it is still starting the others, the moment a
    signal finds the most half-done."""
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "drill", drill, "--report-dir", str(scratch / "r")],
                               cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "TMPDIR": str(scratch)}, preexec_fn=as_a_terminal_starts_it)
    deadline = time.monotonic() + 180
    while len(seen := descendants(process.pid)) < servers:
        if process.poll() is not None:
            pytest.fail(f"drill {drill} ended (exit {process.returncode}) before starting a server: "
                        f"{process.stderr.read()}")
        assert time.monotonic() < deadline, f"drill {drill} did not start {servers} servers within 180 s"
        time.sleep(0.02)
    return process, seen


def until_it_ends(process: subprocess.Popen, seen: set[int], timeout: float = 120) -> set[int]:
    """Every process seen below the drill until it ended (it may start more while the signal is handled)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        assert time.monotonic() < deadline, "the drill did not end after the signal"
        seen |= descendants(process.pid)
        time.sleep(0.02)
    return seen


@pytest.mark.parametrize("drill", sorted(MODULAR_DRILLS))
def test_sigterm_while_the_world_starts_stops_every_process_and_removes_its_directory(drill, tmp_path):
    process, seen = start_until_a_server_runs(drill, tmp_path)
    try:
        process.send_signal(signal.SIGTERM)
        started = until_it_ends(process, seen)
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err, err
    assert wait_gone(started) == [], f"outlived the drill: {started}"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("llmops-")] == [], "its directory was left"


def test_sigkill_still_takes_every_server_of_the_drills_world_with_it(tmp_path):
    process, seen = start_until_a_server_runs("failover", tmp_path, servers=3)  # moto, a Prometheus per region
    process.kill()
    started = until_it_ends(process, seen)
    assert wait_gone(started) == [], f"outlived the killed drill: {started}"
