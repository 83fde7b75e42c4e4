"""`llmops drill pii-incident` as on-call runs it: personal data written into clean logs on moto's S3; the real
scanner pushes its findings to a real Pushgateway, real Prometheus fires the stack's PiiDetectedInLogs; the
pii-incident runbook contains it with the drill's two approvals (the plan, then the deletion gate); the report gives
each moment in order and its objectives -- and no value written into the logs appears in any output or report."""

from __future__ import annotations

import json
import os

from llmops.drill.pii_drill import INCIDENT, injected_values
from tests.cli_fork import run_llmops

EVENTS = ["injected", "scan_found", "prometheus_saw", "alert_pending", "alert_firing", "runbook_started",
          "runbook_paused", "gate_approved", "runbook_finished", "mitigation_verified"]
STEPS = ["open-incident", "contain-writes", "scan", "quarantine", "redact-in-place", "delete-originals",
         "verify-clean", "lift-containment", "report", "notify-data-protection"]


def leaked(*texts: str) -> list[str]:
    everything = "\n".join(texts)
    return sorted(v for v in injected_values() if v in everything)


def test_the_pii_drill_detects_contains_and_leaks_nothing(tmp_path):
    done = run_llmops(["drill", "pii-incident", "--timeout", "120", "--report-dir", str(tmp_path)],
                      env=dict(os.environ), timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "pii-incident.json").read_text())
    assert report["passed"] and report["journal"]["consistent"], report["objectives"]
    assert report["exit_codes"] == {"runbook": 0, "runbook (paused at the gate)": 3}
    order = [e["event"] for e in sorted(report["timeline"], key=lambda e: e["at"])]
    assert [e for e in order if e != "alert_pending"] == [e for e in EVENTS if e != "alert_pending"], order
    assert 0 < report["detection_seconds"] < report["mitigation_seconds"]
    assert [s["step"] for s in report["steps"]] == STEPS
    assert all(s["started_at"] <= s["finished_at"] for s in report["steps"] if s["started_at"])
    assert {o["name"] for o in report["objectives"] if o["passed"]} == {o["name"] for o in report["objectives"]}
    assert "no personal data value in any output" in {o["name"] for o in report["objectives"]}
    assert report["figures"]["PiiDetectedInLogs for"] == "5s in the drill (the stack: 1m)"
    # Both approvals are the drill's, recorded and printed as such: the plan first, then the deletion gate.
    plan, gate = report["approvals"]
    assert plan.startswith("plan ") and gate.startswith("gate ") and "of delete-originals" in gate
    assert all("approved by the drill" in a for a in report["approvals"])
    out = done.stdout
    assert (out.index("Plan ") < out.index(f"drill: {plan}") < out.index("paused before delete-originals")
            < out.index(f"drill: {gate}") < out.index("delete-originals       changed")
            < out.index("mitigation verified")), out
    assert "PiiDetectedInLogs fired" in out and f"--incident {INCIDENT}" in out
    assert "scheduled scan (re-scan after containment) exit 0" in out
    assert f"report {(tmp_path / 'pii-incident.html').resolve().as_uri()}" in out
    page = (tmp_path / "pii-incident.html").read_text()
    assert "<svg" in page and "PASSED" in page and "<script" not in page
    # Keys with personal data are shown with placeholders; no value written into the logs is anywhere.
    assert "users/<EMAIL_ADDRESS>/session.jsonl" in done.stdout + done.stderr
    assert not leaked(done.stdout, done.stderr, page, (tmp_path / "pii-incident.json").read_text())


def test_a_missed_objective_fails_the_drill_and_still_reports(tmp_path):
    # No time for the alert's `for:` to pass: the first objective is missed, the drill says which and exits 1.
    done = run_llmops(["drill", "pii-incident", "--timeout", "1", "--for", "30s", "--report-dir", str(tmp_path)],
                      env=dict(os.environ), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "pii-incident.json").read_text())
    assert not report["passed"] and report["run_id"] is None
    assert "runbook_started" not in [e["event"] for e in report["timeline"]]
    assert "drill: FAIL  PiiDetectedInLogs fires: never (target within 1 s of the injection)" in done.stdout
    assert "pii-incident FAILED" in done.stdout
    assert not leaked(done.stdout, done.stderr, (tmp_path / "pii-incident.json").read_text())
