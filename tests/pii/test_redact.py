"""`llmops pii redact` when something goes wrong: the destination is a directory or not writable, the
source cannot be read to the end, the detectors fail, the user interrupts. Each is a clear error with
nothing written: no redacted copy and no temporary file left beside it."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from llmops.pii.corpus import generate
from llmops.pii.detectors import DETECTORS, Detector, Engine
from llmops.pii.redact import redact_file
from tests.cli_fork import as_a_terminal_starts_it
from tests.pii.test_cli import ROOT, llmops

EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 2, 4, 130


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in" / "inference.jsonl"
    path.parent.mkdir()
    path.write_text("".join(text + "\n" for text, _ in generate(400, seed=9)))
    return path


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("force", [False, True])
def test_a_destination_that_is_a_directory_is_named(source, tmp_path, force):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    result = llmops("pii", "redact", str(source), str(target), *(["--force"] if force else []))
    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"{target}: is a directory" in result.stderr and "Traceback" not in result.stderr
    assert leftovers(tmp_path) == ["in", "out"] and leftovers(target) == ["keep.txt"]


def test_a_read_only_destination_directory_is_named(source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = llmops("pii", "redact", str(source), str(out / "redacted.jsonl"), permissions_bind=True)
    finally:
        out.chmod(0o755)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"{out}: " in result.stderr and "Permission denied" in result.stderr
    assert "Traceback" not in result.stderr and leftovers(out) == []


def test_a_source_that_ends_mid_way_leaves_nothing(source, tmp_path):
    truncated = tmp_path / "in" / "truncated.jsonl.gz"
    compressed = gzip.compress(source.read_bytes() * 20)
    truncated.write_bytes(compressed[:len(compressed) * 3 // 4])
    out = tmp_path / "out"
    result = llmops("pii", "redact", str(truncated), str(out / "redacted.jsonl.gz"))
    assert result.returncode == EXIT_INCOMPLETE, result.stderr
    assert f"{truncated}: " in result.stderr and "truncated" in result.stderr and "Traceback" not in result.stderr
    assert leftovers(out) == []


def test_an_interrupt_during_the_copy_leaves_nothing(tmp_path):
    """The source is a pipe the test writes to: the copy has begun (its temporary file exists) and is
    waiting for more input when the interrupt comes, so the interrupt lands mid-copy every time."""
    pipe, out = tmp_path / "pipe", tmp_path / "out"
    os.mkfifo(pipe)
    out.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "pii", "redact", str(pipe), str(out / "r.jsonl")],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_a_terminal_starts_it)
    deadline = time.monotonic() + 60
    while True:  # the pipe opens for writing once the redactor has opened it for reading
        try:
            writer = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:  # ENXIO: no reader yet
            assert process.poll() is None and time.monotonic() < deadline, "the redactor never opened its source"
            time.sleep(0.01)
    os.set_blocking(writer, True)
    try:
        os.write(writer, "".join(text + "\n" for text, _ in generate(100, seed=4)).encode())
        while not any(re.fullmatch(r"\.r\.jsonl\..*\.tmp", name) for name in leftovers(out)):
            assert process.poll() is None and time.monotonic() < deadline, "the copy never began"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        os.close(writer)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert leftovers(out) == []


class Broken(Exception):
    pass


def _failing(error: BaseException) -> Engine:
    """The real detectors, with the e-mail validator failing (a bug, an interrupt) on the first candidate."""
    def validate(value: bytes) -> bool:
        raise error
    email = DETECTORS[0]
    return Engine((Detector(email.entity_type, email.name, email.hint, email.pattern, email.before, email.after,
                            validate), *DETECTORS[1:]))


@pytest.mark.parametrize("error", [Broken("detector bug"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_a_failure_in_the_detectors_leaves_nothing(source, tmp_path, error):
    out = tmp_path / "out"
    with pytest.raises(type(error)):
        redact_file(source, out / "redacted.jsonl.gz", engine=_failing(error))
    assert leftovers(out) == []
