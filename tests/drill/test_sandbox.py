"""`llmops sandbox up|status|down`: a long-lived world a runbook reaches with `--env sandbox` as written (no exported
keys), idempotent up and down, and nothing left behind -- also after the supervisor is killed or `up` is stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from llmops.drill import sandbox
from tests.cli_fork import run_llmops

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def where(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_SANDBOX_DIR", str(tmp_path / "sandbox"))
    monkeypatch.setenv("LLMOPS_TARGETS_DIR", str(tmp_path / "targets"))
    yield tmp_path
    sandbox.down()


def listening(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((parsed.hostname, parsed.port)) == 0


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def nothing_left(found: dict) -> None:
    urls = [s["url"] for s in found["services"].values() if s["url"].startswith("http")]
    pids = [found["pid"], *found["pids"]]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (any(map(alive, pids)) or any(map(listening, urls))):
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], "a process outlived the sandbox"
    assert not [u for u in urls if listening(u)], "a port is still taken"
    assert not Path(found["targets"]).exists() and sandbox.state() is None


# The README's runbook sections, as written there but for --env sandbox: each finds what it acts on in the sandbox.
README_COMMANDS = (
    (["promote", "--env", "sandbox", "--service", "chat-small", "--weight", "25"], "chat-small-canary"),
    (["rollback-canary", "--env", "sandbox", "--service", "chat-small", "--reason", "5xx 10x stable"], "chat-small"),
    (["reindex", "--env", "sandbox", "--index", "docs", "--corpus", "s3://llmops-prod-corpus/docs/"], "docs"),
    (["failover", "--env", "sandbox", "--from", "us-east-1", "--to", "us-west-2"], "us-west-2"),
    (["pii-incident", "--env", "sandbox", "--incident", "INC-2041", "--source", "s3://inference-logs/chat/2026/11/22/",
      "--since", "2026-11-22T00:00:00Z"], "INC-2041"),
)


def test_up_is_idempotent_a_runbook_runs_with_env_sandbox_and_down_leaves_nothing(where):
    """Then a second up in the same directory starts afresh (it used to be refused by what the first world left), and
    down after that supervisor was SIGKILLed leaves nothing either."""
    found = sandbox.up()
    assert not found["already_running"] and Path(found["targets"]).is_file()
    again = sandbox.up()
    assert again["already_running"] and again["pid"] == found["pid"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # as a new user's shell: no keys
    plan = run_llmops(["runbook", "run", "rollback", "--env", "sandbox", "--service", "chat-small", "--dry-run"],
                      env=env, timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert "patch-deployment: point Deployment serving/chat-small at release" in plan.stdout + plan.stderr
    prod = run_llmops(["runbook", "run", "rollback", "--env", "sandbox", "--service", "chat", "--dry-run"],
                      env=env, timeout=120)  # the README's prod example, as written there but for --env sandbox
    assert prod.returncode == 0, prod.stderr
    assert "move alias production of llama-3-1-70b-instruct from version 9 to 8" in prod.stdout, prod.stdout[-2000:]
    for command, expected in README_COMMANDS:  # each runbook section's command as written, with --env sandbox
        done = run_llmops(["runbook", "run", *command, "--dry-run"], env=env, timeout=180)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        assert expected in done.stdout + done.stderr, (command, expected, done.stdout[-2000:])
    status = run_llmops(["sandbox", "status"], env=env, timeout=60)
    assert status.returncode == 0 and "prometheus" in status.stdout and str(found["pid"]) in status.stdout
    assert found["pid"] in sandbox.down()  # the supervisor stops its servers itself
    nothing_left(found)
    assert sandbox.down() == []  # down again: nothing to do
    stopped = run_llmops(["sandbox", "status"], env=env, timeout=60)
    assert stopped.returncode == 1 and "not running" in stopped.stdout
    again = sandbox.up()  # in the directory the first world used: seeded afresh, not refused by what it left
    assert not again["already_running"] and again["pid"] != found["pid"]
    os.kill(again["pid"], signal.SIGKILL)  # the supervisor dies without stopping anything itself
    sandbox.down()
    nothing_left(again)


def test_down_after_up_itself_was_stopped_leaves_nothing(where):
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "sandbox", "up"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = Path(os.environ["LLMOPS_SANDBOX_DIR"]) / "sandbox.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "up never wrote its pid file"
    process.send_signal(signal.SIGTERM)  # `up` stopped while the servers start
    process.wait(timeout=30)
    supervisor = int(pid_file.read_text())
    deadline = time.monotonic() + 120  # the supervisor goes on: wait until it has published its servers or died
    while sandbox.state() is None and alive(supervisor) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = sandbox.state() or {"pid": supervisor, "pids": [], "services": {}, "targets": str(sandbox.targets_path())}
    sandbox.down()
    nothing_left(found)
