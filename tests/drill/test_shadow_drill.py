"""`llmops drill shadow` as on-call runs it: a worse candidate shadowed on mirrored traffic, `llmops release compare`
refusing promotion with the figures, Prometheus seeing the verdict, and the release controller holding that
candidate's otherwise healthy canary; and the control, a candidate as good as stable, promoted. No prompt or answer
text reaches the output or the report."""

from __future__ import annotations

import json
import os

from llmops.drill.shadow_drill import TEXT_MARKERS
from tests.cli_fork import run_llmops


def _run(tmp_path, *extra):
    done = run_llmops(["drill", "shadow", *extra, "--timeout", "90", "--report-dir", str(tmp_path)],
                      env=dict(os.environ), timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "shadow.json").read_text())
    written = done.stdout + done.stderr + (tmp_path / "shadow.json").read_text() + (tmp_path / "shadow.html").read_text()
    assert not [marker for marker in TEXT_MARKERS if marker in written]
    assert report["passed"] and all(o["passed"] for o in report["objectives"])
    return done, report


def test_a_worse_candidate_is_refused_by_the_comparison_and_its_canary_held(tmp_path):
    done, report = _run(tmp_path)
    assert report["scenario"] == "worse candidate shadowed" and report["exit_codes"] == {"compare": 1}
    order = [e["event"] for e in report["timeline"]]
    assert order == ["injected", "compared", "verdict_seen", "held", "mitigation_verified"], order
    assert 0 < report["detection_seconds"] < report["mitigation_seconds"]
    figures = report["figures"]
    candidate = figures["candidate release"]
    assert figures["verdict"] == "refuse promotion" and figures["pairs"] >= 100
    assert 20 <= float(figures["tokens"].removesuffix(" %")) <= 40, figures["tokens"]
    p95 = {side: float(figures[f"p95 latency {side}"].removesuffix(" s")) for side in ("stable", "candidate")}
    assert p95["candidate"] > 1.2 * p95["stable"], p95
    refusals = {side: float(figures[f"refusal rate {side}"].removesuffix(" %")) for side in ("stable", "candidate")}
    assert refusals["candidate"] - refusals["stable"] > 2, refusals
    assert [g.split()[0] for g in figures["gates"]] == ["pairs", "tokens", "latency", "refusals"]
    # held, not promoted: the reason names the candidate and each failed gate; the route never moved
    reason = figures["hold reason"]
    assert reason.startswith(f"the shadow comparison of release {candidate} refused promotion (failed gates: "
                             "latency, refusals, tokens)"), reason
    assert figures["route after"] == figures["route before"] == {"chat-small": 80, "chat-small-canary": 20}
    healthy = next(o for o in report["objectives"] if o["name"] == "the canary's own signals are healthy")
    assert "fail" not in healthy["actual"].split()
    # each moment printed as it happens, the comparison before the hold
    out = done.stdout
    assert out.index("llmops release compare --env drill") < out.index("the comparison said refuse promotion") \
        < out.index("Prometheus sees llmops_shadow_verdict") < out.index("the controller held the canary")
    assert "FAIL tokens +" in out and "-> promoted" not in out
    assert f"report {(tmp_path / 'shadow.html').resolve().as_uri()}" in out


def test_a_candidate_as_good_as_stable_is_promotable_and_promoted(tmp_path):
    done, report = _run(tmp_path, "--scenario", "good")
    assert report["exit_codes"] == {"compare": 0} and report["figures"]["verdict"] == "promotable"
    order = [e["event"] for e in report["timeline"]]
    assert order == ["injected", "compared", "verdict_seen", "promoted"], order
    assert report["figures"]["route after"] == {"chat-small": 75, "chat-small-canary": 25}
    assert report["journal"]["consistent"] and "shadow comparison" not in done.stdout
