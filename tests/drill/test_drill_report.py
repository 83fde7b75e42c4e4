"""Drill reports: pass only when every objective passed; one self-contained page; a journal checked for what a run
that was cut short leaves behind; and a drill whose runbook cannot mitigate fails, naming the objectives it missed."""

from __future__ import annotations

import json
import os
import re

from llmops.drill.report import DrillReport, journal_check
from runbooks.engine.journal import Journal
from tests.cli_fork import run_llmops


def test_a_report_passes_only_when_every_objective_passed(tmp_path):
    report = DrillReport("rollback", "bad release", started_at=1000.0)
    assert not report.passed  # nothing checked is not a pass
    report.mark("injected", "bad release live", 1000.0)
    report.mark("alert_firing", "the page alert fired", 1004.5)
    report.mark("alert_firing", "seen again later", 1010.0)  # the first sighting counts
    report.mark("mitigation_verified", "errors within the SLO", 1020.0)
    report.objective("errors back within the SLO", "at most 0.5 %", "0.0 %", True)
    assert report.passed and report.detection_seconds == 4.5 and report.mitigation_seconds == 20.0
    report.objective("no page alert firing", "none", "DrillChatSmallErrors", False)
    assert not report.passed
    json_path, html_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["passed"] is False and data["html"] == str(html_path)
    assert [e["event"] for e in data["timeline"]] == ["injected", "alert_firing", "mitigation_verified"]
    page = html_path.read_text()
    assert "FAILED" in page and "no page alert firing" in page and "<svg" in page
    # one file, nothing fetched: no script, no stylesheet or image from elsewhere
    assert "<script" not in page and not re.search(r'(src|href)="https?://', page)


def test_the_journal_check_finds_a_step_left_open_and_a_run_never_finished(tmp_path):
    journal = Journal.create(tmp_path, "run-1")
    journal.append("run_started", runbook="rollback")
    journal.append("step_started", step="a")
    journal.append("step_done", step="a", outcome="changed")
    journal.append("step_started", step="b")
    found = journal_check(tmp_path, "run-1")
    assert not found["consistent"]
    assert found["problems"] == ["step b started and never finished", "the run is not marked finished"]
    journal.append("step_done", step="b", outcome="changed")
    journal.finish("succeeded")
    assert journal_check(tmp_path, "run-1")["consistent"]
    assert journal_check(tmp_path, "run-2")["problems"][0].startswith("no journal at")


def test_a_drill_whose_runbook_cannot_mitigate_fails_naming_the_missed_objectives(tmp_path):
    done = run_llmops(["drill", "rollback", "--break-mitigation", "--report-dir", str(tmp_path)],
                      env=dict(os.environ), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "rollback.json").read_text())
    missed = {o["name"] for o in report["objectives"] if not o["passed"]}
    assert missed == {"the rollback runs", "errors back within the SLO", "no page alert firing"}
    assert report["journal"]["consistent"]  # it failed cleanly: journaled, finished
    assert "drill: FAIL  errors back within the SLO" in done.stdout and "rollback FAILED" in done.stdout
