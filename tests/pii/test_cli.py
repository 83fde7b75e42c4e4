"""`llmops pii scan|redact|corpus` as users run them: separate processes, files and a real S3 API (moto).
Every output is itself scanned: no PII value from the input may appear in it."""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from llmops.pii.corpus import generate
from llmops.pii.detectors import detect
from llmops.pii.redact import redact_file
from tests.cli_fork import as_a_terminal_starts_it

ROOT = Path(__file__).resolve().parents[2]


def llmops(*args: str, env: dict[str, str] | None = None, permissions_bind: bool = False) -> subprocess.CompletedProcess:
    """The CLI in its own process (forked from the pre-imported server: tests/cli_fork.py). permissions_bind: file
    permission bits apply to it even when the tests run as root (chmod 000 is then unreadable, a chmod 555 directory
    unwritable); that run starts Python afresh, to drop the capabilities before exec."""
    if not (permissions_bind and os.geteuid() == 0):
        from tests.cli_fork import run_llmops

        return run_llmops(list(args), env={**os.environ, **(env or {})}, cwd=ROOT, timeout=120)
    return subprocess.run([sys.executable, "-m", "llmops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120,
                          preexec_fn=_drop_permission_overrides if permissions_bind and os.geteuid() == 0 else None)


def _drop_permission_overrides() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from the bounding
    set, so root's process after exec has them no more and permission bits bind it like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def assert_no_pii(*outputs: str) -> None:
    for output in outputs:
        found = detect(output)
        assert not found, f"PII in an output: {[m.entity_type for m in found]}"


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "inference.jsonl"
    path.write_text("".join(text + "\n" for text, _ in generate(1500, seed=5, prose=2)))
    return path


def test_scan_prints_where_and_what_never_the_value(corpus_file):
    result = llmops("pii", "scan", str(corpus_file), "--output", "jsonl")
    assert result.returncode == 1, result.stderr  # findings: exit 1, for CI gates
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    assert findings and set(findings[0]) == {"path", "line", "start", "end", "entity_type", "detector"}
    lines = corpus_file.read_text().splitlines()
    labelled = {(label.line, label.start, label.end, label.entity_type)
                for _, labels in generate(1500, seed=5, prose=2) for label in labels}
    assert {(f["line"], f["start"], f["end"], f["entity_type"]) for f in findings} == labelled
    assert all(lines[f["line"] - 1][f["start"]:f["end"]] for f in findings)
    assert "MB/s" in result.stderr and "EMAIL_ADDRESS" in result.stderr
    assert_no_pii(result.stdout, result.stderr)


def test_fingerprints_come_from_a_key_in_the_environment_only(corpus_file):
    result = llmops("pii", "scan", str(corpus_file), "--output", "jsonl", "--fingerprint-key-env", "PII_KEY",
                    env={"PII_KEY": "s3cret-dedup-key"})
    prints = [json.loads(line)["fingerprint"] for line in result.stdout.splitlines()]
    assert all(p.startswith("hmac-sha256:") for p in prints) and len(set(prints)) > 100
    missing = llmops("pii", "scan", str(corpus_file), "--fingerprint-key-env", "UNSET_VAR_FOR_TEST")
    assert missing.returncode == 2 and "UNSET_VAR_FOR_TEST" in missing.stderr


def test_bad_input_exits_2_naming_it(tmp_path):
    result = llmops("pii", "scan", str(tmp_path / "missing.log"))
    assert result.returncode == 2 and "missing.log: no such file" in result.stderr
    result = llmops("pii", "corpus", str(tmp_path / "c.jsonl"), "--density", "1.5")
    assert result.returncode == 2 and "--density 1.5" in result.stderr
    result = llmops("pii", "scan", "s3://")
    assert result.returncode == 2 and "no bucket name" in result.stderr


def test_clean_input_exits_0(tmp_path):
    path = tmp_path / "clean.log"
    path.write_text("the model answered in 230 ms\nversion 1.2.3 at 2026-11-22T03:00:00Z\n")
    result = llmops("pii", "scan", str(path))
    assert result.returncode == 0 and result.stdout == "" and "nothing found" in result.stderr


def test_redacted_copy_keeps_json_lines_valid_and_holds_nothing(corpus_file, tmp_path):
    target = tmp_path / "redacted.jsonl.gz"
    result = llmops("pii", "redact", str(corpus_file), str(target))
    assert result.returncode == 0, result.stderr
    original = corpus_file.read_text().splitlines()
    with gzip.open(target, "rt") as handle:
        redacted = handle.read().splitlines()
    assert len(redacted) == len(original)
    for before, after in zip(original, redacted, strict=True):
        assert json.loads(after).keys() == json.loads(before).keys()
    assert any("<EMAIL_ADDRESS>" in line for line in redacted)
    assert llmops("pii", "scan", str(target)).returncode == 0  # a re-scan finds nothing
    assert_no_pii(result.stdout, result.stderr)
    again = llmops("pii", "redact", str(corpus_file), str(target))
    assert again.returncode == 2 and "--force" in again.stderr  # never overwritten silently
    same = llmops("pii", "redact", str(corpus_file), str(corpus_file), "--force")
    assert same.returncode == 2 and corpus_file.read_text().splitlines() == original


def test_a_value_outside_any_json_string_is_redacted_through_the_parsed_document(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"card": 4111111111111111, "note": "mail jane@example.com", "n": 3}\n'
                      'not json: call 415-555-0132\n')
    result = redact_file(source, target)
    first, second = target.read_text().splitlines()
    assert json.loads(first) == {"card": "<CREDIT_CARD>", "note": "mail <EMAIL_ADDRESS>", "n": 3}
    assert second == "not json: call <PHONE_NUMBER>"
    assert result.json_rewritten == 1 and dict(result.counts) == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1,
                                                                 "PHONE_NUMBER": 1}


def test_scan_an_s3_prefix_in_parallel(aws_env, tmp_path):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="logs")
    labels = 0
    for index in range(6):
        lines = list(generate(300, seed=100 + index))
        labels += sum(len(found) for _, found in lines)
        body = "".join(text + "\n" for text, _ in lines).encode()
        s3.put_object(Bucket="logs", Key=f"inference/2026/11/22/part-{index}.jsonl" + (".gz" if index % 2 else ""),
                      Body=gzip.compress(body) if index % 2 else body)
    s3.put_object(Bucket="logs", Key="other/skip.jsonl", Body=b"mail jane@example.com\n")
    result = llmops("pii", "scan", "s3://logs/inference/", "--output", "jsonl", "--workers", "3",
                    "--endpoint-url", aws_env)
    assert result.returncode == 1, result.stderr
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(findings) == labels
    assert {f["path"] for f in findings} == {f"s3://logs/inference/2026/11/22/part-{i}.jsonl" + (".gz" if i % 2 else "")
                                             for i in range(6)}
    assert "6 file(s)" in result.stderr
    assert_no_pii(result.stdout, result.stderr)
    empty = llmops("pii", "scan", "s3://logs/nothing-here/", "--endpoint-url", aws_env)
    assert empty.returncode == 2 and "no objects under this prefix" in empty.stderr


def test_a_scheduled_scan_feeds_the_alerts_through_the_pushgateway(corpus_file, tmp_path):
    from llmops.drill.backends import PushgatewayServer

    try:
        gateway = PushgatewayServer().start()
    except RuntimeError as error:  # a backend that cannot start fails the test, with what is missing
        pytest.fail(str(error))
    try:
        for _ in range(2):  # two runs: the counter continues, it does not restart
            result = llmops("pii", "scan", str(corpus_file), "--output", "none", "--pushgateway", gateway.url,
                            "--source-label", "inference-logs")
            assert result.returncode == 1, result.stderr
        metrics = gateway.metrics()
    finally:
        gateway.stop()
    expected = sum(len(found) for _, found in generate(1500, seed=5, prose=2))
    lines = [line for line in metrics.splitlines() if line.startswith("llmops_pii_findings_total{")]
    assert len(lines) == 8, lines
    assert all('source="inference-logs"' in line for line in lines)
    assert sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 2 * expected
    assert 'llmops_pii_scan_last_success_timestamp_seconds{instance="",job="llmops_pii_scan",source="inference-logs"}' in metrics
    assert_no_pii(metrics)


@pytest.mark.parametrize("command,expected", [("scan", {0, 1, 2, 3, 4, 5}), ("redact", {0, 2, 4, 130})])
def test_help_lists_every_exit_code(command, expected):
    result = llmops("pii", command, "--help")
    section = result.stdout.split(f"exit codes of {command}")[1]
    codes = {int(line.split()[0]) for line in section.splitlines() if line[:5].strip().isdigit()}
    assert result.returncode == 0 and codes == expected

def test_a_push_to_an_unreachable_pushgateway_is_a_clear_error_with_its_own_exit_code(corpus_file):
    import socket

    closed = socket.socket()  # bound, never listening: connecting to it is refused, and no one else gets the port
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    try:
        result = llmops("pii", "scan", str(corpus_file), "--output", "none", "--pushgateway", url)
    finally:
        closed.close()
    assert result.returncode == 5, result.stderr  # not 1 (found), though it found PII: the alerts did not hear of it
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "could not push" in line]
    assert url in line and "refused" in line.lower()
    assert "EMAIL_ADDRESS" in result.stderr  # the scan's summary came first


def test_a_malformed_pushgateway_url_is_refused_before_scanning(corpus_file):
    result = llmops("pii", "scan", str(corpus_file), "--pushgateway", "ftp://gateway:9091")
    assert result.returncode == 2 and "--pushgateway ftp://gateway:9091" in result.stderr
    assert "MB/s" not in result.stderr  # nothing was scanned


def test_an_incomplete_scan_pushes_its_findings_but_not_a_last_success(corpus_file, tmp_path):
    from llmops.drill.backends import PushgatewayServer

    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    try:
        gateway = PushgatewayServer().start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        complete = llmops("pii", "scan", str(corpus_file), "--output", "none", "--pushgateway", gateway.url,
                          "--source-label", "logs")
        assert complete.returncode == 1, complete.stderr
        before = gateway.metrics()
        partial = llmops("pii", "scan", str(corpus_file), str(broken), "--output", "none",
                         "--pushgateway", gateway.url, "--source-label", "logs")
        after = gateway.metrics()
    finally:
        gateway.stop()
    assert partial.returncode == 4, partial.stderr

    def sample(metrics: str, prefix: str) -> list[float]:
        return [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix)]

    expected = sum(len(found) for _, found in generate(1500, seed=5, prose=2))
    assert sum(sample(after, "llmops_pii_findings_total{")) == 2 * expected  # its findings are real: counted
    success = "llmops_pii_scan_last_success_timestamp_seconds{"
    assert sample(after, success) == sample(before, success) != []  # but it did not succeed: PiiScanStale can fire


def test_ctrl_c_during_a_scan_exits_130_with_one_line(tmp_path):
    import signal
    import socket

    # An S3 endpoint that accepts the connection and never answers: the scan is surely in progress when the
    # signal arrives (no timing involved).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
        process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "pii", "scan", "s3://logs/chat/",
                                    "--endpoint-url", f"http://127.0.0.1:{port}"], cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_a_terminal_starts_it)
        silent.settimeout(120)
        connection, _ = silent.accept()
        with connection:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "llmops: interrupted" and "Traceback" not in err
