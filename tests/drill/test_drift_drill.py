"""`llmops drill drift` as on-call runs it: a shift injected into the traffic of a real drift monitor scraped by real
Prometheus with the stack's drift rules; the Drift alert fires, the drift-review runbook accepts the new normal, and
the drill's report gives each moment, in order, and its objectives."""

from __future__ import annotations

import json
import os

from tests.cli_fork import run_llmops


def test_the_drift_drill_sees_the_alert_fire_and_the_runbook_mitigate(tmp_path):
    done = run_llmops(["drill", "drift", "--rate", "20", "--inject-after", "12", "--timeout", "120",
                       "--report-dir", str(tmp_path)], env=dict(os.environ), timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "drift.json").read_text())
    assert report["passed"] and report["journal"]["consistent"] and report["exit_codes"] == {"runbook": 0}
    order = [e["event"] for e in report["timeline"]]
    assert order == ["injected", "monitor_drift", "prometheus_saw", "alert_firing", "runbook_started",
                     "runbook_finished", "mitigation_verified"], order
    assert 0 < report["detection_seconds"] < report["mitigation_seconds"]
    assert [s["step"] for s in report["steps"]] == ["collect-evidence", "accept-reference", "record-decision", "notify"]
    assert all(s["started_at"] <= s["finished_at"] for s in report["steps"])
    assert report["approvals"] and "approved by the drill" in report["approvals"][0]
    assert {o["name"] for o in report["objectives"] if o["passed"]} == {o["name"] for o in report["objectives"]}
    # each moment is printed as it happens, the plan before the run, and the approval is the drill's, said so
    out = done.stdout
    assert out.index("Plan ") < out.index("approved by the drill") < out.index("accept-reference       changed")
    assert "injected a new topic on 30% of requests" in out and "the Drift alert fired" in out
    assert f"report {(tmp_path / 'drift.html').resolve().as_uri()}" in out
    page = (tmp_path / "drift.html").read_text()
    assert "<svg" in page and "PASSED" in page and "<script" not in page
