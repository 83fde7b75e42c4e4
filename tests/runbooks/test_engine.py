"""The engine's own pieces, with no backend: boundaries, journal, lock, audit, plan hash, pages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmops.cli import main
from runbooks.docs import stale_pages
from runbooks.engine import Change, JournalCorrupt, LockHeld, RunFinished
from runbooks.engine.journal import Journal
from runbooks.engine.model import Param
from runbooks.engine.plan import Plan, PlannedStep
from runbooks.engine.records import AuditLog, recorded_params
from runbooks.engine.services import FileLock, FileRecordStore

ROOT = Path(__file__).resolve().parents[2]
def test_journal_survives_a_torn_last_line(tmp_path):
    journal = Journal.create(tmp_path, "run-1")
    journal.append("step_started", step="a")
    journal.append("step_done", step="a", outputs={"x": 1})
    with open(journal.path, "a") as handle:
        handle.write('{"event": "step_sta')  # the process died mid-write
    reopened = Journal.open(tmp_path, "run-1")
    assert reopened.step_state("a") == "done" and reopened.step_outputs() == {"a": {"x": 1}}
    assert reopened.step_state("b") == "pending"


def test_after_a_torn_line_the_next_record_starts_on_a_fresh_line_and_counts(tmp_path):
    journal = Journal.create(tmp_path, "run-1")
    journal.append("step_done", step="a", outputs={})
    with open(journal.path, "a") as handle:
        handle.write('{"event": "step_done", "step": "b"')  # torn: no newline, never finished
    journal.append("step_started", step="b")  # the resumed run writes on
    lines = journal.path.read_text().splitlines()
    assert lines[1] == '{"event": "step_done", "step": "b"'  # kept as it was, for the record
    assert json.loads(lines[2])["event"] == "torn_record" and json.loads(lines[2])["line"] == 2
    assert json.loads(lines[3])["event"] == "step_started"
    reread = Journal.open(tmp_path, "run-1")
    assert [e["event"] for e in reread.events()] == ["step_done", "step_started"]
    assert reread.step_state("b") == "started"  # the torn "done" never counts


@pytest.mark.parametrize("damage", ["garbage", "altered", "unsummed"])
def test_a_damaged_record_in_the_middle_stops_the_reader_naming_the_file_and_line(tmp_path, damage):
    journal = Journal.create(tmp_path, "run-1")
    for step in ("a", "b", "c"):
        journal.append("step_done", step=step, outputs={"n": 1})
    lines = journal.path.read_text().splitlines()
    record = json.loads(lines[1])
    if damage == "garbage":
        lines[1] = lines[1][:20] + "\x00\x00" + lines[1][22:]
    elif damage == "altered":
        lines[1] = json.dumps({**record, "step": "z"}, sort_keys=True)  # edited by hand: the checksum says so
    else:
        lines[1] = json.dumps({k: v for k, v in record.items() if k != "sum"}, sort_keys=True)
    journal.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalCorrupt, match=rf"{journal.path}: line 2: .*cannot be trusted"):
        Journal.open(tmp_path, "run-1").step_state("c")


def test_a_finished_run_stays_finished_whatever_happens_to_its_journal(tmp_path):
    journal = Journal.create(tmp_path, "run-1")
    journal.append("run_started", runbook="x")
    journal.finish("succeeded")
    journal.path.write_text(journal.path.read_text().splitlines()[0] + "\n")  # the finish record lost
    with pytest.raises(RunFinished, match="run run-1 already finished \\(succeeded\\)") as raised:
        Journal.open(tmp_path, "run-1")
    assert raised.value.exit_code == 2


def test_file_lock_refuses_another_run_and_lets_its_own_run_back_in(tmp_path):
    lock = FileLock(tmp_path)
    lock.acquire("dev/serving/chat", holder="alice@host", run_id="r1", ttl_seconds=60)
    with pytest.raises(LockHeld, match=r"dev/serving/chat is locked by alice@host \(run r1, expires in \d+s\)"):
        lock.acquire("dev/serving/chat", holder="bob@host", run_id="r2", ttl_seconds=60)
    lock.acquire("dev/serving/chat", holder="alice@host", run_id="r1", ttl_seconds=60)  # resume
    lock.release("dev/serving/chat", run_id="r2")  # not ours: ignored
    with pytest.raises(LockHeld):
        lock.acquire("dev/serving/chat", holder="bob@host", run_id="r2", ttl_seconds=60)
    lock.release("dev/serving/chat", run_id="r1")
    lock.acquire("dev/serving/chat", holder="bob@host", run_id="r2", ttl_seconds=60)


def test_an_expired_lock_can_be_taken(tmp_path):
    lock = FileLock(tmp_path)
    lock.acquire("k", holder="a", run_id="r1", ttl_seconds=60)
    path = next(tmp_path.iterdir())
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "expires_at": time.time() - 1}))
    lock.acquire("k", holder="b", run_id="r2", ttl_seconds=60)


def test_audit_records_are_written_once_per_key(tmp_path):
    audit = AuditLog(path=tmp_path / "audit.jsonl")
    assert audit.append_once("r1/step", {"run_id": "r1", "step": "step"})
    assert not audit.append_once("r1/step", {"run_id": "r1", "step": "step"})
    assert len(audit.records("r1")) == 1


def test_record_store_never_overwrites(tmp_path):
    store = FileRecordStore(tmp_path)
    assert store.put_once("evidence/r1", {"a": 1}) and not store.put_once("evidence/r1", {"a": 2})
    assert store.get("evidence/r1") == {"a": 1}


def test_sensitive_parameters_are_recorded_as_keyed_hashes():
    declared = (Param("incident", "id"), Param("email", "who", sensitive=True))
    recorded = recorded_params({"incident": "INC-1", "email": "jane@example.com"}, declared, key="run-1")
    assert recorded["incident"] == "INC-1"
    assert recorded["email"].startswith("hmac-sha256:") and "jane" not in recorded["email"]


def plan(after):
    return Plan("rollback", "prod", {"service": "chat"},
                [PlannedStep("move", "d", Change("move alias", {"production": "3"}, {"production": after}), True)])


def test_plan_hash_covers_what_would_change():
    assert plan("2").hash == plan("2").hash
    assert plan("2").hash != plan("1").hash


def test_committed_runbook_pages_are_fresh():
    assert stale_pages() == [], "run `llmops runbook pages` and commit the result"


def test_runbook_list_and_show(capsys):
    assert main(["runbook", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(f"{name:<14} executable" in listing for name in ("rollback", "failover", "reindex", "pii-incident"))
    assert main(["runbook", "show", "rollback"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!-- Rendered from runbooks/rollback.py")
    assert "**verify-slo**" in page and "`SLOAvailabilityFastBurn`" in page
    assert main(["runbook", "show", "nope"]) == 2


def test_targets_come_from_the_stack_outputs(plans, tmp_path, capsys):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(plans["prod"].outputs))
    out = tmp_path / "targets" / "prod.yaml"
    out.parent.mkdir()
    assert main(["runbook", "targets", "--stack", "prod", "--outputs", str(outputs), "--out", str(out)]) == 0
    from runbooks.targets import load_targets

    targets = load_targets("prod", out.parent)
    operations = plans["prod"].outputs["regions"]["us-east-1"]["operations"]
    assert targets.lock.table == operations["lockTable"] == "llmops-prod-runbook-locks"
    assert targets.notifications.topic_arn == operations["topicArn"]
    assert targets.evidence.uri == f"s3://{operations['evidenceBucket']}"
    assert targets.pii.quarantine_bucket == operations["piiQuarantineBucket"] and targets.pii.kms_key_id == operations["keyArn"]
    assert targets.failover.hosted_zone_id == "Z0PRODEXAMPLE0INFERENCE"
    assert targets.retrieval.qdrant_url == "http://qdrant.retrieval.svc:6333" and targets.retrieval.keep_versions == 2
    west = targets.failover.regions["us-west-2"]
    assert west.kubernetes.context == "llmops-prod-usw2"
    assert west.artifact_bucket == plans["prod"].outputs["regions"]["us-west-2"]["registry"]["artifactBucket"]
    assert targets.kubernetes.context == "llmops-prod-use1" and targets.aws.region == "us-east-1"
    logs = plans["prod"].outputs["regions"]["us-east-1"]["requestLogs"]
    assert targets.request_logs == logs["uri"] and targets.request_logs.startswith("s3://")
    assert targets.request_logs.endswith("/requests/")  # what llmops release compare reads by default
    scan = plans["prod"].outputs["regions"]["us-east-1"]["piiScan"]
    assert targets.pii.cluster_scan.results == scan["results"] and targets.pii.cluster_scan.readable == [logs["uri"]]
    assert targets.pii.cluster_scan.namespace == "pii-scan" and targets.pii.cluster_scan.service_account == "pii-scanner"
    capsys.readouterr()
    outputs.write_text("{}")
    assert main(["runbook", "targets", "--stack", "prod", "--outputs", str(outputs)]) == 2


_OPENED: list[str] = []
_RECORDING: list[bool] = []


def _record_opens(event: str, args: tuple) -> None:
    if _RECORDING and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


@pytest.mark.parametrize("args", [["--env", "dev", "--resume", "../../outside"],
                                  ["--env", "../outside/dev", "--service", "chat"],
                                  ["--env", "dev", "--resume", "rollback-20261122T031500Z-a1b2c3/../../../outside"]])
def test_run_ids_and_environments_are_names_refused_before_any_file_is_opened(tmp_path, monkeypatch, capsys, args):
    import sys

    # A journal and a targets file outside the state and targets directories, where a path-like value would lead.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "journal.jsonl").write_text('{"event": "run_started"}\n')
    (outside / "dev.yaml").write_text("environment: dev\n")
    targets = tmp_path / "targets"
    targets.mkdir()
    dead = "http://127.0.0.1:9"
    (targets / "dev.yaml").write_text(json.dumps({
        "environment": "dev", "stack_file": "stacks/Pulumi.dev.yaml", "aws": {"region": "us-east-1"},
        "registry": {"tracking_uri": dead}, "kubernetes": {"host": dead}, "prometheus": {"url": dead},
        "audit": {"uri": str(tmp_path / "audit")}, "evidence": {"uri": str(tmp_path / "evidence")},
        "state_dir": str(tmp_path / "a" / "state")}))
    monkeypatch.setenv("LLMOPS_TARGETS_DIR", str(targets))
    sys.addaudithook(_record_opens)
    _OPENED.clear()
    _RECORDING.append(True)
    try:
        with pytest.raises(SystemExit) as exited:
            main(["runbook", "run", "rollback", *args])
    finally:
        _RECORDING.clear()
    assert exited.value.code == 2
    assert "expected" in capsys.readouterr().err
    assert not [path for path in _OPENED if str(outside) in str(Path(path).resolve())]
