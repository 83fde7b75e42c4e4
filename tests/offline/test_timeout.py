"""A program that never finishes is stopped at --timeout (exit 1, naming the stack and the limit), and Ctrl-C ends
`llmops preview` at once with exit 130 and one line: no traceback, no process left running, nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.cli import main
from tests.cli_fork import as_a_terminal_starts_it

ROOT = Path(__file__).resolve().parents[2]
HANG = ROOT / "tests" / "fixtures" / "programs" / "hang"


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """Where the hanging program writes its process id once it is running."""
    path = tmp_path / "running.pid"
    monkeypatch.setenv("HANG_MARKER", str(path))
    return path


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def wait_for(path: Path, process: subprocess.Popen) -> int:
    """The id the program wrote once it was running; fails if the CLI ended before that."""
    deadline = time.monotonic() + 120
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"llmops ended (exit {process.returncode}) before the program ran: {process.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail("the program never started")
        time.sleep(0.05)
    return int(path.read_text())


def stopped_once_running(marker: Path, capsys, run) -> tuple[str, str, str]:
    """Runs `run(timeout)` with a short limit first, then longer ones while the program had not even started (its
    marker unwritten) when the limit struck: on a busy machine the evaluation may need more than a second to reach
    the hang, and the test is about a program that does. Returns the limit used and the captured output."""
    for timeout in ("1.5", "6", "30", "120"):
        code = run(timeout)
        captured = capsys.readouterr()
        assert code == 1, captured
        if marker.exists():
            return timeout, captured.out, captured.err
    pytest.fail(f"the program never reached its hang within 120 s: {captured}")


def test_a_program_that_hangs_in_an_apply_is_stopped_at_the_timeout(tmp_path, marker, capsys):
    plans = tmp_path / "plans" / "plan-{stack}.json"
    timeout, out, err = stopped_once_running(marker, capsys, lambda timeout: main(
        ["preview", "--program", str(HANG), "--stack", "quick", "--stack", "apply", "--timeout", timeout,
         "--json", str(plans)]))
    assert err == (f"llmops: stack apply: the program did not finish within {timeout} s (--timeout {timeout}); "
                   "it was stopped\n")
    assert "stack quick (hang): 1 resources" in out  # the stack before it was planned and written
    assert json.loads((tmp_path / "plans" / "plan-quick.json").read_text())["stack"] == "quick"
    assert sorted(p.name for p in (tmp_path / "plans").iterdir()) == ["plan-quick.json"]
    assert_gone(int(marker.read_text()))  # the program was running, and is no more


def test_a_program_that_sleeps_at_the_top_level_is_stopped_by_policy_check_too(marker, capsys):
    timeout, _, err = stopped_once_running(marker, capsys, lambda timeout: main(
        ["policy", "check", "--program", str(HANG), "--stack", "top", "--timeout", timeout]))
    assert err == (f"llmops: stack top: the program did not finish within {timeout} s (--timeout {timeout}); "
                   "it was stopped\n")
    assert_gone(int(marker.read_text()))


def test_a_program_that_ends_its_own_process_is_a_failed_program(capsys):
    assert main(["preview", "--program", str(HANG), "--stack", "exit"]) == 1
    assert capsys.readouterr().err == ("llmops: stack exit: the program failed: it ended the evaluation process "
                                       "(exit status 3) before declaring everything\n")


def test_no_limit_and_bad_limits(capsys):
    assert main(["preview", "--program", str(HANG), "--stack", "quick", "--timeout", "0"]) == 0
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit) as caught:
            main(["preview", "--program", str(HANG), "--stack", "quick", "--timeout", bad])
        assert caught.value.code == 2
    assert "--timeout: expected seconds, a number >= 0 (0: no limit)" in capsys.readouterr().err


@pytest.mark.parametrize("sent_to", ["the llmops process", "its process group, as a terminal does"])
def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing_behind(tmp_path, marker, sent_to):
    out = tmp_path / "plans"
    process = subprocess.Popen(
        [sys.executable, "-m", "llmops.cli", "preview", "--program", str(HANG), "--stack", "quick", "--stack", "apply",
         "--json", str(out / "plan-{stack}.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=as_a_terminal_starts_it)
    deadline = time.monotonic() + 120
    try:
        pid = wait_for(marker, process)
        while not (out / "plan-quick.json").exists():  # stacks are evaluated at once: quick's may finish after
            assert process.poll() is None and time.monotonic() < deadline, "quick's plan was never written"
            time.sleep(0.05)
        if sent_to == "the llmops process":
            process.send_signal(signal.SIGINT)
        else:
            os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr == "llmops: interrupted\n"
    assert "stack quick (hang): 1 resources" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["plan-quick.json"]  # complete, and nothing half-written
    assert_gone(pid)


def test_ctrl_c_while_files_are_written_waits_until_they_are_complete():
    from llmops.cli.programs import ctrl_c_deferred

    written = []
    # Python's own Ctrl-C handler, as in a terminal (a test run started in the background has SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_deferred():
                signal.raise_signal(signal.SIGINT)  # pending until the block ends
                written.append("the whole file")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert written == ["the whole file"]


def test_a_bad_policy_config_is_refused_before_any_program_runs(tmp_path, marker, capsys):
    config = tmp_path / "policy.json"
    config.write_text('{"k8s-image-digests": "advisory"}')
    # Checked after evaluation, this would be the timeout's exit 1 (the program never finishes).
    assert main(["policy", "check", "--program", str(HANG), "--stack", "top", "--policy-config", str(config),
                 "--timeout", "60"]) == 2
    assert f"{config}: no policy named k8s-image-digests" in capsys.readouterr().err
    assert not marker.exists()


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whoever adopts it, which may be slow to)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_worker_whose_cli_is_killed_stops_by_itself(tmp_path, marker):
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "preview", "--program", str(HANG), "--stack", "apply"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_a_terminal_starts_it)
    try:
        pid = wait_for(marker, process)
    finally:
        process.kill()  # SIGKILL: the CLI cannot clean up
        process.wait()
    deadline = time.monotonic() + 60
    while running(pid):
        assert time.monotonic() < deadline, "the worker outlived its CLI"
        time.sleep(0.05)


def test_output_paths_that_cannot_be_written_are_refused_before_any_program_runs(tmp_path, marker, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for option, target, expected in (
            ("--json", tmp_path, f"--json {tmp_path}: a directory; expected a file path for the plan JSON"),
            ("--json", a_file / "plan.json", f"--json {a_file / 'plan.json'}: {a_file} is a file; expected a directory"),
            ("--render", a_file, f"--render {a_file}: {a_file} is a file; expected a directory")):
        assert main(["preview", "--program", str(HANG), "--stack", "top", option, str(target), "--timeout", "60"]) == 2
        assert capsys.readouterr().err == f"llmops: {expected}\n"
    assert not marker.exists()
