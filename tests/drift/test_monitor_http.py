"""`llmops drift watch` as it runs in the pod: its own process, HTTP in, Prometheus metrics out; bad lines counted
and dropped; a new reference followed; and nothing of a prompt kept (its state scanned with the PII scanner)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.drift import traffic
from llmops.drift.reference import ReferenceStore, build_reference
from llmops.pii.scanner import Summary, scan_lines
from tests.drift.world import EMBEDDING_MODEL, MODEL, DriftWorld

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post(url, body: bytes):
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def metrics(url):
    _, body = get(url + "/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


@pytest.fixture
def monitor(tmp_path):
    """The monitor's own process with a fast policy (1 s windows of 20 samples, 2 in a row) and no reference yet."""
    world = DriftWorld(tmp_path)
    policy = world.policy().model_copy(update={"window_seconds": 1, "min_samples": 20, "consecutive_windows": 2})
    settings = {"environment": "drift-test", "region": "us-east-1", "references": str(world.references),
                "referencePollSeconds": 0.2, "maxBodyBytes": 200_000,
                "models": {MODEL: {"drift": policy.model_dump(by_alias=True, mode="json"),
                                   "embeddingModel": EMBEDDING_MODEL}}}
    config = tmp_path / "drift-monitor.json"
    config.write_text(json.dumps(settings))
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "drift", "watch", "--config", str(config),
                                "--listen", "127.0.0.1:0"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = ""
        while "listening on" not in line:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                pytest.fail(f"llmops drift watch exited with {process.returncode} before listening")
        url = "http://" + line.split("listening on ")[1].split(" ")[0]
        yield world, policy, url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        process.stderr.close()


def write_reference(world, policy, embedder, seed=1):
    records = traffic.log_lines(random.Random(seed), 1000, model=MODEL)
    reference = build_reference(records, model=MODEL, drift=policy, embedder=embedder, release="r1", reason="initial")
    return ReferenceStore(str(world.references)).put(reference)


def lines(count, shape=traffic.BASE, seed=0):
    rng = random.Random(seed)
    return [json.dumps(traffic.record(rng, shape, ts=time.time(), model=MODEL)).encode() for _ in range(count)]


def version(url):
    return metrics(url)[("llmops_drift_reference_version", (("model", MODEL),))]


def test_without_a_reference_it_says_so_and_follows_new_versions(monitor, embedder):
    world, policy, url = monitor
    # Ready (the references were read) though this model has none yet: it is listed, its samples dropped, its
    # reference version 0 (the DriftReferenceMissing alert reads that).
    status, body = wait_for(lambda: (lambda answer: answer[0] == 200 and answer)(get(url + "/readyz")), what="ready")
    assert json.loads(body)["waiting_for_reference"] == [MODEL] and version(url) == 0
    assert post(url + "/v1/samples", b"\n".join(lines(5)))[1] == {"accepted": 5, "rejected": {}}
    assert metrics(url)[("llmops_drift_rejected_lines_total", (("reason", "no_reference"),))] == 5
    write_reference(world, policy, embedder)
    wait_for(lambda: version(url) == 1, what="v1")
    assert json.loads(get(url + "/readyz")[1])["waiting_for_reference"] == []
    write_reference(world, policy, embedder, seed=2)
    wait_for(lambda: version(url) == 2, what="v2")


def test_bad_lines_are_counted_by_reason_and_dropped_never_fatal(monitor, embedder):
    world, policy, url = monitor
    write_reference(world, policy, embedder)
    wait_for(lambda: version(url) == 1, what="the reference")
    fluent_bit = json.dumps({"log": lines(1)[0].decode(), "kubernetes": {"pod_name": "vllm-0"}}).encode()
    body = b"\n".join([*lines(3), b"not json", b"[1, 2]", b'{"prompt": "no model"}', b'{"model": "other"}',
                       b"\xff\xfe\x00", b"{" * 10_000, fluent_bit, b""])
    status, answer = post(url + "/v1/samples", body)
    assert status == 200
    assert answer == {"accepted": 4, "rejected": {"not_json": 3, "not_an_object": 1, "no_model": 1,
                                                  "unknown_model": 1}}
    status, answer = post(url + "/v1/samples", b"x" * 200_001)
    assert status == 413 and "at most 200000" in answer["error"]
    assert get(url + "/healthz")[0] == 200  # still serving
    seen = metrics(url)
    assert seen[("llmops_drift_samples_total", (("model", MODEL),))] == 4
    assert seen[("llmops_drift_rejected_lines_total", (("reason", "not_json"),))] == 3


def test_a_topic_shift_is_judged_drift_over_http(monitor, embedder):
    world, policy, url = monitor
    write_reference(world, policy, embedder)
    wait_for(lambda: version(url) == 1, what="the reference")
    shift = traffic.Shape(topics=("health", "gaming"))
    status = ("llmops_drift_status", (("model", MODEL), ("signal", "embedding")))

    def drifting():
        post(url + "/v1/samples", b"\n".join(lines(40, shift, seed=random.randrange(10**6))))
        return metrics(url).get(status) == 2
    wait_for(drifting, timeout=60, what="the embedding signal at drift")
    seen = metrics(url)
    assert seen[("llmops_drift_embedding_similarity", (("model", MODEL),))] < policy.embedding.drift
    assert seen[("llmops_drift_window_samples", (("model", MODEL),))] >= policy.min_samples


def test_the_monitor_keeps_no_personal_data(monitor, embedder):
    world, policy, url = monitor
    write_reference(world, policy, embedder)
    wait_for(lambda: version(url) == 1, what="the reference")
    with_pii = lines(200, traffic.Shape(pii_share=1.0), seed=5)
    assert b"jane.doe@example.com" in b"".join(with_pii) or b"4111 1111" in b"".join(with_pii)
    assert post(url + "/v1/samples", b"\n".join(with_pii))[1]["accepted"] == 200
    wait_for(lambda: json.loads(get(url + "/v1/state")[1])["models"][MODEL]["window"]["samples_total"] == 200,
             what="the samples in the window")
    state = get(url + "/v1/state")[1].decode()
    exposition = get(url + "/metrics")[1].decode()
    for name, text in (("state", state), ("metrics", exposition)):
        summary = Summary()
        findings = list(scan_lines(name, text.splitlines(), summary=summary))
        assert summary.bytes > 1000 and findings == [], f"personal data in the monitor's {name}"
    # and the scanner does find them in what was sent: the check can fail
    assert list(scan_lines("sent", [line.decode() for line in with_pii]))
