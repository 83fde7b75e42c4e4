"""`llmops drill reindex` as on-call runs it: the corpus changes under the live docs index, the project's freshness
exporter pushes the stale fraction, real Prometheus fires the stack's RetrievalIndexStale, the reindex runbook
rebuilds, validates and flips (its plan and its flip gate approved by the drill), and the alert resolves. A change
below the alert's 5 % is never detected: the drill says so and fails."""

from __future__ import annotations

import json
import os

import yaml

from tests.cli_fork import run_llmops


def test_the_reindex_drill_sees_the_alert_fire_and_the_runbook_mitigate(tmp_path):
    done = run_llmops(["drill", "reindex", "--timeout", "120", "--report-dir", str(tmp_path)], env=dict(os.environ),
                      timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "reindex.json").read_text())
    assert report["passed"] and report["journal"]["consistent"]
    assert report["exit_codes"] == {"runbook at the flip gate": 3, "runbook": 0}
    order = [e["event"] for e in report["timeline"]]
    assert order == ["injected", "exported", "prometheus_saw", "alert_pending", "alert_firing", "runbook_started",
                     "runbook_paused", "gate_approved", "runbook_finished", "mitigation_verified"], order
    assert 0 < report["detection_seconds"] < report["mitigation_seconds"]
    assert [s["step"] for s in report["steps"]] == ["snapshot-corpus", "build-candidate", "validate", "flip-alias",
                                                    "retire-old-versions", "export-freshness"]
    assert all(s["started_at"] <= s["finished_at"] for s in report["steps"])
    plan, gate = report["approvals"]
    assert plan.startswith("plan ") and gate.startswith("gate ") and "(flip-alias)" in gate
    assert all("approved by the drill" in a for a in report["approvals"])
    assert {o["name"] for o in report["objectives"] if o["passed"]} == {o["name"] for o in report["objectives"]}
    assert len(report["objectives"]) == 7
    assert report["figures"]["alias"] == "docs--v2 -> docs--v3" and report["figures"]["retired"] == "docs--v1"
    assert "shortened for the drill" in report["figures"]["alert for"]
    # each moment printed as it happens: the plan before its approval, the gate's approval before the flip
    out = done.stdout
    assert out.index("Plan ") < out.index("approved by the drill (--approve") < out.index("reindex paused at the flip")
    assert out.index("reindex paused at the flip") < out.index("(flip-alias) approved by the drill (--resume") \
        < out.index("flip-alias             changed") < out.index("mitigation verified")
    assert "corpus changed: 24 of 120 documents overwritten in S3 (20.0%)" in out
    assert "the RetrievalIndexStale alert fired" in out
    assert f"report {(tmp_path / 'reindex.html').resolve().as_uri()}" in out
    page = (tmp_path / "reindex.html").read_text()
    assert "<svg" in page and "PASSED" in page and "<script" not in page


def test_a_change_below_the_alerts_threshold_is_not_detected_and_the_drill_fails(tmp_path):
    done = run_llmops(["drill", "reindex", "--documents", "40", "--changed", "0.025", "--timeout", "6",
                       "--report-dir", str(tmp_path)], env=dict(os.environ), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "reindex.json").read_text())
    assert not report["passed"] and report["run_id"] is None and report["approvals"] == []
    assert [o["passed"] for o in report["objectives"]] == [False]
    assert "1 of 40 documents overwritten in S3 (2.5%)" in done.stdout
    assert "drill: FAIL  RetrievalIndexStale fires: never (stale fraction 0.025)" in done.stdout
    assert "reindex FAILED" in done.stdout


def test_bad_input_exits_2_before_anything_starts(tmp_path):
    done = run_llmops(["drill", "reindex", "--changed", "1.5", "--report-dir", str(tmp_path)], env=dict(os.environ),
                      timeout=60)
    assert done.returncode == 2 and "--changed" in done.stderr and "above 0 and at most 1" in done.stderr
    assert "drill: starting" not in done.stdout and not (tmp_path / "reindex.json").exists()


def test_the_world_composes_into_a_sandbox_on_a_given_moto_without_signals(tmp_path):
    """What the sandbox uses: someone else's moto server, a named corpus bucket, no Prometheus or exporter; the
    targets it contributes and the stack change it needs; stopping it leaves that moto running."""
    from llmops.drill.backends import MotoServer, http_ready
    from llmops.drill.reindex_drill import INDEX, LOCAL_MODEL, ReindexWorld
    from llmops.drill.sandbox import compose_stack

    moto = MotoServer().start()
    try:
        world = ReindexWorld(tmp_path / "world", aws_endpoint=moto.url, with_signals=False,
                             bucket="llmops-prod-corpus", documents=20)
        world.use_stack(compose_stack(tmp_path, [world]))  # the sandbox's one stack file, through adapt_stack
        try:
            world.start()
            assert world.prometheus is None and world.pushgateway is None and world.moto is None
            assert world.corpus == "s3://llmops-prod-corpus/docs/"
            assert world.live() == "docs--v2" and world.versions() == ["docs--v1", "docs--v2"]
            assert set(world.targets_sections()) == {"retrieval"}
            stack = world.adapt_stack({"config": {"llmops:retrieval": {"indexes": [
                {"name": INDEX, "embeddingModel": "BAAI/bge-small-en-v1.5", "corpus": "s3://elsewhere/docs/"}]}}})
            (index,) = stack["config"]["llmops:retrieval"]["indexes"]
            assert index["embeddingModel"] == LOCAL_MODEL and index["corpus"] == world.corpus
            targets = yaml.safe_load(world.write_targets("sandbox").read_text())
            assert targets["environment"] == "sandbox" and targets["aws"]["endpoint_url"] == moto.url
            assert targets["stack_file"] == str(tmp_path / "Pulumi.sandbox.yaml")
            assert "pushgateway" not in targets and targets["retrieval"] == world.targets_sections()["retrieval"]
        finally:
            world.stop()
            world.stop()  # idempotent
        assert http_ready(f"{moto.url}/moto-api/")  # not the world's to stop
    finally:
        moto.stop()
