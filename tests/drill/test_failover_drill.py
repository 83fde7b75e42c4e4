"""`llmops drill failover` as on-call runs it: region us-east-1 goes down on real local backends (moto's Route53 and S3,
a Kubernetes API per region, MLflow's store, Debian's Prometheus per region with the stack's VllmMetricsAbsent rule);
the alert fires, the failover runbook moves traffic to us-west-2 with the drill's approval, and the report gives each
moment, in order, and its objectives. And the drill's world alone, on a moto server it did not start, as a sandbox
would compose it."""

from __future__ import annotations

import json
import os

from tests.cli_fork import run_llmops


def test_the_failover_drill_sees_the_alert_fire_and_the_runbook_move_traffic(tmp_path):
    done = run_llmops(["drill", "failover", "--timeout", "120", "--report-dir", str(tmp_path)], env=dict(os.environ),
                      timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "failover.json").read_text())
    assert report["passed"] and report["journal"]["consistent"] and report["exit_codes"] == {"runbook": 0}
    order = [e["event"] for e in report["timeline"]]
    main = [e for e in order if e != "health_check_failing"]
    assert main == ["injected", "alert_pending", "alert_firing", "runbook_started", "runbook_finished",
                    "mitigation_verified"], order
    assert order.index("health_check_failing") < order.index("alert_firing"), order
    assert 0 < report["detection_seconds"] < report["mitigation_seconds"]
    assert [s["step"] for s in report["steps"]] == ["shift-traffic", "verify-dns", "pin-active-region"]
    assert all(s["started_at"] <= s["finished_at"] for s in report["steps"])
    assert report["approvals"] and "approved by the drill" in report["approvals"][0]
    objectives = {o["name"]: o for o in report["objectives"]}
    assert all(o["passed"] for o in objectives.values()), objectives
    assert {"the failover runs", "traffic on us-west-2", "the stack file pins the active region",
            "the run's journal is consistent"} <= set(objectives)
    assert "100.0 % of requests served there, 0.0 % failed" in objectives["traffic on us-west-2"]["actual"]
    assert "for: 2s in the drill (shortened; 10m in the stack)" in report["figures"]["alert"]
    # each moment is printed as it happens, the plan before the run, and the approval is the drill's, said so
    out = done.stdout
    assert (out.index("injected: region us-east-1 down") < out.index("VllmMetricsAbsent firing") < out.index("Plan ")
            < out.index("approved by the drill") < out.index("shift-traffic          changed")
            < out.index("mitigation verified"))
    assert f"report {(tmp_path / 'failover.html').resolve().as_uri()}" in out
    page = (tmp_path / "failover.html").read_text()
    assert "<svg" in page and "PASSED" in page and "<script" not in page


def test_the_world_composes_on_a_given_moto_without_signals(tmp_path):
    """What a sandbox takes: the seeded world on its moto, no Prometheus; its targets sections and stack adaptation;
    the runbook plans against it; stopping it leaves the moto it was given running."""
    from llmops.drill.backends import MotoServer, http_ready
    from llmops.drill.failover_drill import FailoverDrill

    moto = MotoServer().start()
    try:
        world = FailoverDrill(tmp_path / "world", aws_endpoint=moto.url, with_signals=False)
        try:
            world.start()
            assert world.prometheus == {} and world.endpoints == {} and world.users is None
            sections = world.targets_sections()
            assert set(sections) == {"aws", "failover"} and sections["aws"]["endpoint_url"] == moto.url
            assert set(sections["failover"]["regions"]) == {"us-east-1", "us-west-2"}
            assert world.adapt_stack({"config": {"llmops:failover": {}}}) == {
                "config": {"llmops:failover": {"hostedZoneId": world.zone}}}
            world.write_targets(tmp_path / "targets", "sandbox-failover")
            env = {**os.environ, **world.environment(), "LLMOPS_TARGETS_DIR": str(tmp_path / "targets")}
            dry = run_llmops(["runbook", "run", "failover", "--env", "sandbox-failover", "--from", "us-east-1",
                              "--to", "us-west-2", "--dry-run"], env=env, timeout=300)
            assert dry.returncode == 0, dry.stdout + dry.stderr
            assert "make us-west-2 PRIMARY and us-east-1 SECONDARY" in dry.stdout
            assert world.roles() == {m: {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"}
                                     for m in ("chat", "chat-small")}
        finally:
            world.stop()
            world.stop()  # idempotent
        assert http_ready(f"{moto.url}/moto-api/")  # not the world's to stop
    finally:
        moto.stop()
