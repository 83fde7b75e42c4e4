"""`llmops drill rollback` as on-call runs it: stopped by a signal, it leaves no server listening and no
directory behind."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from tests.cli_fork import as_a_terminal_starts_it

ROOT = Path(__file__).resolve().parents[2]


def lines_of(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def wait_for_line(lines: queue.Queue, prefix: str, seen: list[str], timeout: float = 180) -> str:
    while True:
        line = lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"the drill ended before printing {prefix!r}:\n{''.join(seen)}")
        seen.append(line)
        if line.startswith(prefix):
            return line


def listening(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((parsed.hostname, parsed.port)) == 0


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has stopped; only its parent's reaping is left)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_server_the_drill_started_and_removes_its_directory(sig):
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "drill", "rollback"], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_a_terminal_starts_it)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lines_of, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        up = wait_for_line(lines, "drill: backends up:", seen)
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    urls = re.findall(r"(http://127\.0\.0\.1:\d+)", up)
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", up)]
    directory = Path(re.search(r"directory (\S+)", up).group(1))
    assert len(urls) >= 4 and len(pids) == 2, up
    assert process.returncode == 128 + sig, err
    assert "Traceback" not in err and f"stopped by {signal.Signals(sig).name}" in err
    assert [url for url in urls if listening(url)] == []
    assert [pid for pid in pids if running(pid)] == []
    assert not directory.exists()
