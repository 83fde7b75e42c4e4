"""Every drill built on the modular interface (failover, reindex, pii-incident, shadow), stopped by on-call once its
world is up: SIGTERM ends it with 128 + 15 and one line, every process it started is gone and its scratch directory
removed; SIGKILL, which it cannot handle, still takes its servers with it (they die with their parent)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
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


def start_until_up(drill: str, scratch: Path) -> tuple[subprocess.Popen, list[str], set[int]]:
    """The drill, run until its world is up (its second line: the first is printed before anything starts)."""
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "drill", drill, "--report-dir", str(scratch / "r")],
                               cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "TMPDIR": str(scratch)}, preexec_fn=as_a_terminal_starts_it)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    while len(seen) < 2:
        line = lines.get(timeout=180)
        if line is None:
            process.kill()
            pytest.fail(f"drill {drill} ended before its world was up: {''.join(seen)}{process.stderr.read()}")
        seen.append(line)
    return process, seen, descendants(process.pid)


@pytest.mark.parametrize("drill", sorted(MODULAR_DRILLS))
def test_sigterm_stops_every_process_the_drill_started_and_removes_its_directory(drill, tmp_path):
    process, seen, started = start_until_up(drill, tmp_path)
    assert started, f"drill {drill} started no process of its own: {''.join(seen)}"  # moto, Prometheus at least
    try:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err, err
    assert wait_gone(started) == [], f"outlived the drill: {started} ({''.join(seen)})"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("llmops-")] == [], "its directory was left"


def test_sigkill_still_takes_the_drills_servers_with_it(tmp_path):
    process, seen, started = start_until_up("failover", tmp_path)
    assert started, f"the failover drill started no process of its own: {''.join(seen)}"
    process.kill()
    process.wait(timeout=60)
    assert wait_gone(started) == [], f"outlived the killed drill: {started}"
