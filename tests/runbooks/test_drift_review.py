"""The drift-review runbook end to end, as on-call runs it (its own process) against a real drift monitor (HTTP)
and real reference and record stores: evidence before any approval, each decision, refusals, crash and resume."""

from __future__ import annotations

import json
import random
import time

import pytest

from llmops.drift import traffic
from llmops.drift.reference import ReferenceStore, build_reference
from llmops.retrieval.embed import LocalEmbedder
from tests.drift.world import EMBEDDING_MODEL, MODEL, DriftWorld, write_log

STEPS = ["collect-evidence", "accept-reference", "record-decision", "notify"]
SHIFT = traffic.Shape(topics=("health", "gaming"), pii_share=0.5)


@pytest.fixture
def world(tmp_path):
    world = DriftWorld(tmp_path)
    reference = build_reference(traffic.log_lines(random.Random(1), 2000, model=MODEL), model=MODEL,
                                drift=world.policy(), embedder=LocalEmbedder(EMBEDDING_MODEL), release="r0",
                                reason="initial")
    ReferenceStore(str(world.references)).put(reference)
    world.write_targets(monitor_url=world.start_monitor())
    yield world
    world.stop_monitor()


def drifted(world):
    """Prompts about new topics (half with personal data) in the monitor and in the recent logs."""
    world.feed(30, SHIFT)
    world.recent_log("recent.jsonl", 600, SHIFT)


def records(world, kind):
    return sorted((world.workdir / "evidence" / kind / MODEL).glob("*.json"))


def test_a_dry_run_shows_the_evidence_and_changes_nothing(world):
    drifted(world)
    result = world.cli("--model", MODEL, "--decision", "accept", "--dry-run")
    assert result.returncode == 0, result.stderr
    plan = result.stdout + result.stderr
    assert "chat-small: drift against reference v1 (600 recent requests in the logs" in plan
    assert "  embedding: " in plan and "retraining triggers: drift" in plan
    assert "build reference v2 of chat-small from its request logs since an hour ago" in plan
    assert "jane.doe@example.com" not in plan + result.stderr and "4111 1111" not in plan + result.stderr
    assert ReferenceStore(str(world.references)).versions(MODEL) == [1] and world.run_ids() == []


def test_accept_builds_the_next_reference_and_the_monitor_judges_against_it(world):
    drifted(world)
    result = world.cli("--model", MODEL, "--decision", "accept", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    store = ReferenceStore(str(world.references))
    assert store.versions(MODEL) == [1, 2]
    run_id = world.run_ids()[-1]
    new = store.get(MODEL, 2)
    assert new.reason == f"accepted-drift (run {run_id})" and new.previous == 1
    assert world.server.monitor.windows[MODEL].reference.version == 2  # verified by the step, checked here again
    evidence = world.evidence(run_id)
    collected = next(s for s in evidence["steps"] if s["step"] == "collect-evidence")["outputs"]
    assert {t["trigger"] for t in collected["triggers"]} >= {"drift"}
    assert collected["topics"] and collected["topics"][0]["topic"] == "new"
    examples = " ".join(e for t in collected["topics"] for e in t["examples"])
    text = json.dumps(evidence)
    assert "jane.doe@example.com" not in text and "078-05-1120" not in text
    assert "<EMAIL_ADDRESS>" in examples or "<CREDIT_CARD>" in examples or "<US_SSN>" in examples or \
        "<PHONE_NUMBER>" in examples
    decision = json.loads(records(world, "drift-decisions")[0].read_text())
    assert decision["decision"] == "accept" and decision["new_reference_version"] == 2
    again = world.cli("--resume", run_id)
    assert again.returncode == 2 and "already finished" in again.stderr


def test_reindex_records_the_request_and_hands_over_to_the_reindex_runbook(world):
    drifted(world)
    result = world.cli("--model", MODEL, "--decision", "reindex", "--yes")
    assert result.returncode == 0, result.stderr
    handover = f"llmops runbook run reindex --env {world.env} --index docs --corpus s3://"
    assert handover in result.stdout + result.stderr
    request = json.loads(records(world, "reindex-requests")[0].read_text())
    assert request["handover"].startswith(handover) and request["reasons"][0]["trigger"] == "drift"
    assert ReferenceStore(str(world.references)).versions(MODEL) == [1]  # no reference was accepted


def test_retrain_needs_a_trigger_or_a_manual_override(world):
    world.feed(10, traffic.Shape())  # unchanged traffic, under the volume limit
    refused = world.cli("--model", MODEL, "--decision", "retrain", "--yes")
    assert refused.returncode == 2
    assert "--decision retrain: no retraining trigger holds for chat-small" in refused.stderr
    assert "give --override TICKET" in refused.stderr and world.run_ids() == []
    done = world.cli("--model", MODEL, "--decision", "retrain", "--override", "ML-1234", "--yes")
    assert done.returncode == 0, done.stderr
    request = json.loads(records(world, "retraining-requests")[0].read_text())
    assert request["reasons"] == [{"trigger": "manual", "ticket": "ML-1234"}]


def test_retraining_reasons_record_drift_schema_and_volume(world):
    world.feed(60, SHIFT)  # 1,200 requests since the reference: over the volume limit of 1,000
    rng = random.Random(9)
    lines = []
    for _ in range(800):  # most of the last 10 seconds' window
        record = traffic.record(rng, SHIFT, ts=0, model=MODEL)
        record["prompt_tokens"] = str(record["prompt_tokens"])  # the log's schema changed: a number became text
        lines.append(json.dumps(record).encode())
    now = time.time()
    with world.server.lock:
        world.server.monitor.add(world.server.monitor.read(lines), now=now - 1)
        for _ in range(3):
            world.server.monitor.tick(now)
    done = world.cli("--model", MODEL, "--decision", "retrain", "--yes")
    assert done.returncode == 0, done.stderr
    reasons = {r["trigger"]: r for r in json.loads(records(world, "retraining-requests")[0].read_text())["reasons"]}
    assert set(reasons) == {"drift", "schema", "volume"}
    assert reasons["schema"]["fields"] == ["prompt_tokens (type)"]
    assert reasons["volume"]["limit"] == 1000 and reasons["volume"]["requests"] >= 1000


@pytest.mark.parametrize("args, message", [
    (["--model", "nope", "--decision", "accept"], "--model 'nope': no such model in the stack; models: chat-small"),
    (["--model", MODEL, "--decision", "ignore"], "--decision 'ignore': expected one of accept, reindex, retrain"),
    (["--model", MODEL, "--decision", "accept", "--since", "yesterday"], "--since 'yesterday': expected an ISO 8601"),
    (["--model", MODEL, "--decision", "retrain", "--override", "rm -rf /"], "--override 'rm -rf /': expected a ticket"),
    (["--model", MODEL, "--decision", "accept"], "--decision accept: 0 record(s) of chat-small since"),
    (["--model", MODEL, "--decision", "accept", "--from", "/nonexistent/logs"],
     "--from /nonexistent/logs: no such file or directory"),
])
def test_bad_input_exits_2_and_changes_nothing(world, args, message):
    old = time.time() - 7200  # logs, but none in the last hour
    write_log(world.logs / "old.jsonl", traffic.log_lines(random.Random(2), 600, start=old, model=MODEL))
    result = world.cli(*args, "--yes")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert ReferenceStore(str(world.references)).versions(MODEL) == [1] and world.run_ids() == []


def test_an_unreachable_monitor_stops_before_anything_changes(world):
    world.stop_monitor()
    world.recent_log("recent.jsonl", 600, SHIFT)
    result = world.cli("--model", MODEL, "--decision", "accept", "--yes")
    assert result.returncode == 1 and "the drift monitor:" in result.stderr and "nothing was changed" in result.stderr
    assert ReferenceStore(str(world.references)).versions(MODEL) == [1]


@pytest.mark.parametrize("crash_at", [f"{step}:{phase}" for step in STEPS for phase in ("acted", "done")])
def test_a_crash_at_any_boundary_resumes_to_one_new_reference_and_one_record(world, crash_at):
    drifted(world)
    crashed = world.cli("--model", MODEL, "--decision", "accept", "--yes", crash_at=crash_at)
    assert crashed.returncode == -9, crashed.stderr
    run_id = world.run_ids()[-1]
    resumed = world.cli("--resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert ReferenceStore(str(world.references)).versions(MODEL) == [1, 2]
    assert len(records(world, "drift-decisions")) == 1
