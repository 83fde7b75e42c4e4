"""`llmops drill drift` as on-call runs it: a shift injected into the traffic of a real drift monitor scraped by real
Prometheus with the stack's drift rules; the Drift alert fires, the drift-review runbook accepts the new normal, and
the drill's output gives each moment, in order."""

from __future__ import annotations

import json
import os

from tests.cli_fork import run_llmops


def test_the_drift_drill_sees_the_alert_fire_and_the_runbook_mitigate():
    done = run_llmops(["drill", "drift", "--rate", "20", "--inject-after", "12", "--timeout", "120"],
                      env=dict(os.environ), timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout[done.stdout.rindex("\n{") + 1:])
    after = report["seconds_after_injection"]
    order = ["monitor_drift", "prometheus_saw", "alert_firing", "runbook_started", "runbook_finished",
             "mitigation_verified"]
    assert [after[name] for name in order] == sorted(after[name] for name in order), after
    assert after["monitor_drift"] > 0
    # each moment is printed as it happens, and the runbook's approvals are the drill's, said so
    for text in ("injected a new topic on 30% of requests", "the Drift alert is firing",
                 "approved by the drill", "mitigation verified"):
        assert text in done.stdout
    assert report["samples_after_injection"]["monitor_drift"] > 0
    assert report["scrape_interval_seconds"] == 5 and report["rule_interval_seconds"] == 5
