"""Inputs that cannot be scanned (corrupt gzip, special files, broken links, unreadable files, S3 objects
that fail) are each reported and never hide the others; paths that hold personal data are shown with
placeholders. The CLI in its own process, real files, a real S3 API (moto's server)."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import socket
import struct
import subprocess
import sys
import termios

import boto3
import pytest
from botocore.exceptions import ClientError

from llmops.pii.corpus import generate
from llmops.pii.sources import resolve, scan_sources
from tests.pii.test_cli import ROOT, assert_no_pii, llmops

EXIT_FOUND, EXIT_USAGE, EXIT_INCOMPLETE = 1, 2, 4
EMAIL_IN_PATH = "jane.doe@example.com"


def corpus(seed: int, lines: int = 200) -> tuple[bytes, list[tuple[int, int, int, str]]]:
    pairs = list(generate(lines, seed=seed))
    body = "".join(text + "\n" for text, _ in pairs).encode()
    return body, [(label.line, label.start, label.end, label.entity_type) for _, found in pairs for label in found]


def findings_by_path(stdout: str) -> dict[str, set[tuple[int, int, int, str]]]:
    found: dict[str, set[tuple[int, int, int, str]]] = {}
    for line in stdout.splitlines():
        f = json.loads(line)  # every stdout line is a finding: no error is mixed in
        found.setdefault(f["path"], set()).add((f["line"], f["start"], f["end"], f["entity_type"]))
    return found


@pytest.fixture
def broken_tree(tmp_path):
    """Two good files with PII among five inputs that cannot be scanned, in the order a walk lists them."""
    logs = tmp_path / "logs"
    logs.mkdir()
    good, good_labels = corpus(21)
    plain, plain_labels = corpus(23)
    (logs / "a-good.jsonl").write_bytes(good)
    truncated, truncated_labels = corpus(22, lines=3000)
    compressed = gzip.compress(truncated)
    (logs / "b-truncated.jsonl.gz").write_bytes(compressed[:len(compressed) // 2])
    (logs / "c-fake.jsonl.gz").write_bytes(b"\x1f\x8b" + b"this is not deflate data at all\n" * 20)
    os.mkfifo(logs / "d-fifo")  # opening it would block until a writer came: it must not be opened
    (logs / "e-dangling").symlink_to(logs / "no-such-target")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(logs / "f-socket"))
    (logs / "g-good.log").write_bytes(plain)
    yield logs, {str(logs / "a-good.jsonl"): set(good_labels), str(logs / "g-good.log"): set(plain_labels)}, \
        set(truncated_labels)
    listener.close()


BAD = {"b-truncated.jsonl.gz": "truncated", "c-fake.jsonl.gz": "gzip", "d-fifo": "not a regular file",
       "e-dangling": "broken symbolic link", "f-socket": "not a regular file"}


def assert_each_bad_input_reported(stderr: str, logs) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "could not scan" in line]
    for name, reason in BAD.items():
        (line,) = [e for e in errors if f"{logs / name}:" in e]
        assert reason in line, line
    assert len(errors) == len(BAD)
    assert "5 of 7 input(s) could not be scanned" in stderr


def test_every_bad_input_is_reported_and_every_good_one_scanned_jsonl(broken_tree):
    logs, expected, truncated_labels = broken_tree
    result = llmops("pii", "scan", str(logs), "--output", "jsonl")
    assert result.returncode == EXIT_INCOMPLETE, result.stderr  # not 1: a partial scan must not look complete
    found = findings_by_path(result.stdout)
    for path, labels in expected.items():
        assert found.pop(path) == labels
    assert set(found) <= {str(logs / "b-truncated.jsonl.gz")}  # only what was read before the gzip ended
    assert found.get(str(logs / "b-truncated.jsonl.gz"), set()) <= truncated_labels
    assert_each_bad_input_reported(result.stderr, logs)
    assert_no_pii(result.stderr)


def test_every_bad_input_is_reported_in_text_output_too(broken_tree):
    logs, expected, _ = broken_tree
    result = llmops("pii", "scan", str(logs))
    assert result.returncode == EXIT_INCOMPLETE, result.stderr
    printed = {line.split(":", 1)[0] for line in result.stdout.splitlines()}
    assert set(expected) <= printed <= set(expected) | {str(logs / "b-truncated.jsonl.gz")}
    assert_each_bad_input_reported(result.stderr, logs)


def test_an_incomplete_scan_that_found_nothing_is_not_clean(tmp_path):
    (tmp_path / "clean.log").write_text("the model answered in 230 ms\n")
    (tmp_path / "fake.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    result = llmops("pii", "scan", str(tmp_path))
    assert result.returncode == EXIT_INCOMPLETE and "nothing found" in result.stderr
    assert f"{tmp_path / 'fake.gz'}: " in result.stderr and "Traceback" not in result.stderr


def test_a_file_that_cannot_be_opened_is_reported_and_the_rest_scanned(tmp_path):
    body, labels = corpus(31)
    (tmp_path / "a.jsonl").write_bytes(body)
    (tmp_path / "b.jsonl").write_bytes(body)
    (tmp_path / "b.jsonl").chmod(0)
    result = llmops("pii", "scan", str(tmp_path), "--output", "jsonl", permissions_bind=True)
    assert result.returncode == EXIT_INCOMPLETE, result.stderr
    assert findings_by_path(result.stdout) == {str(tmp_path / "a.jsonl"): set(labels)}
    (line,) = [line for line in result.stderr.splitlines() if "could not scan" in line]
    assert f"{tmp_path / 'b.jsonl'}: " in line and "Permission denied" in line and "Traceback" not in result.stderr


def test_a_named_file_that_cannot_be_looked_at_does_not_stop_the_others(tmp_path):
    body, labels = corpus(33)
    (tmp_path / "a.jsonl").write_bytes(body)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.jsonl").write_bytes(body)
    locked.chmod(0)
    try:
        result = llmops("pii", "scan", str(tmp_path / "a.jsonl"), str(locked / "b.jsonl"), "--output", "jsonl",
                        permissions_bind=True)
    finally:
        locked.chmod(0o755)
    assert result.returncode == EXIT_INCOMPLETE, result.stderr
    assert findings_by_path(result.stdout) == {str(tmp_path / "a.jsonl"): set(labels)}
    assert f"could not scan {locked / 'b.jsonl'}: Permission denied" in result.stderr
    assert "Traceback" not in result.stderr


def test_s3_objects_that_fail_are_reported_and_the_others_scanned(aws_env):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="partial")
    body, labels = corpus(41)
    s3.put_object(Bucket="partial", Key="logs/a.jsonl", Body=body)
    s3.put_object(Bucket="partial", Key=f"logs/users/{EMAIL_IN_PATH}/cold.jsonl", Body=body,
                  StorageClass="GLACIER")  # archived: GetObject fails with InvalidObjectState
    s3.put_object(Bucket="partial", Key="logs/b.jsonl.gz", Body=b"\x1f\x8b\x08\x00" + bytes(range(7, 71)))
    s3.put_object(Bucket="partial", Key="logs/c.jsonl", Body=body)
    result = llmops("pii", "scan", "s3://partial/logs/", "--output", "jsonl", "--workers", "2",
                    "--endpoint-url", aws_env)
    assert result.returncode == EXIT_INCOMPLETE, result.stderr
    assert findings_by_path(result.stdout) == {"s3://partial/logs/a.jsonl": set(labels),
                                               "s3://partial/logs/c.jsonl": set(labels)}
    errors = [line for line in result.stderr.splitlines() if "could not scan" in line]
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert any("s3://partial/logs/users/<EMAIL_ADDRESS>/cold.jsonl: " in e and "InvalidObjectState" in e
               for e in errors)
    assert any("s3://partial/logs/b.jsonl.gz: " in e and "gzip" in e for e in errors)
    assert EMAIL_IN_PATH not in result.stdout + result.stderr
    assert_no_pii(result.stdout, result.stderr)


def test_an_object_deleted_between_listing_and_reading_is_reported_and_the_rest_scanned(aws_env):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="racing")
    body, labels = corpus(51)
    for name in ("a", "b", "c"):
        s3.put_object(Bucket="racing", Key=f"logs/{name}.jsonl", Body=body)
    sources = resolve(["s3://racing/logs/"], lambda: s3)  # listed
    s3.delete_object(Bucket="racing", Key="logs/b.jsonl")  # then gone before it is read
    results = list(scan_sources(sources, workers=2, keep_going=True))
    assert [r.source.name for r in results] == [f"s3://racing/logs/{n}.jsonl" for n in "abc"]
    assert [r.error is None for r in results] == [True, False, True]
    assert "NoSuchKey" in results[1].error and results[1].summary.unreadable == 1
    for result in (results[0], results[2]):
        assert {(f.line, f.start, f.end, f.entity_type) for f in result.findings} == set(labels)
    with pytest.raises(ClientError):  # without keep_going (the pii-incident runbook), a failure stops the scan
        list(scan_sources(sources, workers=2))


@pytest.fixture
def personal_tree(tmp_path):
    folder = tmp_path / "users" / EMAIL_IN_PATH
    folder.mkdir(parents=True)
    body, _ = corpus(61, lines=50)
    (folder / "a.jsonl").write_bytes(body)
    (folder / "broken.jsonl.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    return tmp_path


@pytest.mark.parametrize("output", ["text", "jsonl"])
def test_personal_data_in_paths_is_shown_as_placeholders(personal_tree, output):
    result = llmops("pii", "scan", str(personal_tree), "--output", output)
    assert result.returncode == EXIT_INCOMPLETE, result.stderr
    shown = str(personal_tree / "users" / "<EMAIL_ADDRESS>")
    assert f"{shown}/a.jsonl" in result.stdout and f"{shown}/broken.jsonl.gz: " in result.stderr
    assert EMAIL_IN_PATH not in result.stdout + result.stderr
    assert_no_pii(result.stdout, result.stderr)


def test_raw_paths_keeps_them_when_asked(personal_tree):
    result = llmops("pii", "scan", str(personal_tree), "--output", "jsonl", "--raw-paths")
    raw = personal_tree / "users" / EMAIL_IN_PATH
    assert result.returncode == EXIT_INCOMPLETE
    assert {json.loads(line)["path"] for line in result.stdout.splitlines()} == {str(raw / "a.jsonl")}
    assert f"{raw / 'broken.jsonl.gz'}: " in result.stderr


def test_on_a_terminal_the_progress_bar_and_everything_else_show_placeholders(personal_tree):
    """On a terminal (a pseudo-terminal here) the progress bar is drawn: nothing on it names the raw path."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))  # a size, as terminals have
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "pii", "scan", str(personal_tree)], cwd=ROOT,
                               stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every copy of the terminal's other end is closed
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert process.wait(timeout=60) == EXIT_INCOMPLETE
    text = screen.decode("utf-8", "replace")
    assert "<EMAIL_ADDRESS>" in text and "scanning:" in text  # findings, errors and the bar were drawn
    assert EMAIL_IN_PATH not in text
