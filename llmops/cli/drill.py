"""`llmops drill rollback`: a bad release live on real local backends, and the rollback runbook run against them
-- the rehearsal on-call runs before the night it matters. A signal stops every server it started."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from llmops.cli.errors import UsageError

STARTING = "drill: starting local backends (MLflow store, Kubernetes API, Prometheus, Pushgateway, moto) ..."


def _rehearse(drill: Any, keep: bool, starting: str, kept: str, rehearse: Callable[[], int]) -> int:
    """Start a drill's backends and rehearse on them. SIGINT and SIGTERM end it through `finally`: every server it
    started is stopped and its directory removed (unless --keep), whatever it was doing."""
    import shutil

    from runbooks.engine import Interrupted
    from runbooks.engine.runner import signals_interrupt

    try:
        with signals_interrupt():
            print(starting, flush=True)
            try:
                drill.start()
            except RuntimeError as error:
                raise UsageError(f"drill: {error}") from None
            return rehearse()
    except Interrupted as stop:
        print(f"drill: stopped by {stop.name}; stopping every backend it started", file=sys.stderr)
        return stop.exit_code
    finally:
        drill.stop()
        if keep:
            print(f"drill: {kept} kept under {drill.workdir}", flush=True)
        else:
            shutil.rmtree(drill.workdir, ignore_errors=True)


def _drill_rollback(args: argparse.Namespace) -> int:
    import time

    from llmops.drill.rollback_drill import REGISTERED_MODEL, SERVICE, scratch_drill
    from runbooks.engine import RunbookError
    from runbooks.engine.runner import RunOptions
    from runbooks.launch import launch

    def say(message: str) -> None:
        print(message, flush=True)

    drill = scratch_drill()

    def rehearse() -> int:
        say(f"drill: backends up: {drill.describe()}")
        os.environ.update(drill.environment())
        drill.wait_until_degraded()
        say(f"drill: {SERVICE} serves {REGISTERED_MODEL} version {drill.serving_version()} (alias production -> "
            f"{drill.production_alias()}); it fails 20% of requests and a page alert is firing. Rolling back:")
        began = time.monotonic()
        try:
            result = launch("rollback", "drill", {"service": SERVICE, "to": None}, RunOptions(yes=True),
                            lambda message: print(message, flush=True))
        except RunbookError as error:
            print(f"drill: the rollback refused: {error}", file=sys.stderr)
            return error.exit_code
        say(result.plan.render())
        for step in result.steps:
            say(f"  {step['step']:<22} {step['outcome']:<12} {step.get('seconds', 0):.2f}s")
        if result.status == "interrupted":
            print(f"drill: {result.error}", file=sys.stderr)
            return result.exit_code
        assert result.run_id is not None  # a run that was not a dry run
        evidence = drill.evidence(result.run_id)
        before, after = evidence["signals"].get("before", {}), evidence["signals"].get("after", {})
        say(f"drill: {result.status} in {time.monotonic() - began:.1f}s; now serving version "
            f"{drill.serving_version()}, alias production -> {drill.production_alias()}, route {drill.route_weights()}")
        say(f"drill: error ratio {before.get('availability_error_ratio')} -> {after.get('availability_error_ratio')}; "
            f"paging {before.get('page_alerts')} -> {after.get('page_alerts')}")
        return result.exit_code

    return _rehearse(drill, args.keep, STARTING, "evidence, audit log and pinned stack file", rehearse)


def _drill_canary(args: argparse.Namespace) -> int:
    """A canary serving beside the stable release; at --inject-after seconds the scenario starts; the release
    controller analyzes every interval on real Prometheus and acts through the runbooks, as in production."""
    import json
    import tempfile
    import time
    from pathlib import Path

    from components import config as stack_config
    from llmops.controller.controller import Controller
    from llmops.drill.canary_drill import CanaryDrill
    from llmops.drill.rollback_drill import SERVICE
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster
    from runbooks.adapters.mlflow_registry import MlflowRegistry
    from runbooks.adapters.prometheus import Prometheus
    from runbooks.targets import load_targets

    def say(message: str) -> None:
        print(message, flush=True)

    drill = CanaryDrill(Path(tempfile.mkdtemp(prefix="llmops-canary-drill-")), rate=args.rate)
    timeline: dict[str, float] = {}

    def rehearse() -> int:
        try:
            os.environ.update(drill.environment())
            drill.wait_until_degraded()
            targets = load_targets("drill")
            assert targets.registry and targets.kubernetes and targets.prometheus
            controller = Controller("drill", targets, Prometheus(targets.prometheus.url),
                                    MlflowRegistry(targets.registry.tracking_uri),
                                    KubernetesCluster(host=targets.kubernetes.host),
                                    progress=lambda message: print(message, flush=True))
            (model,) = [m for m in controller.models(SERVICE)]
            assert model.rollout is not None
            say(f"drill: {SERVICE}: stable and canary serve {args.rate:g} requests/s split by the route "
                f"{drill.route_weights()}; scenario {args.scenario} starts in {args.inject_after:g}s")
            interval = model.rollout.interval_seconds
            began = time.time()
            holds = 0
            while time.time() - began < args.timeout:
                if "injected" not in timeline and time.time() - began >= args.inject_after:
                    timeline["injected"] = drill.traffic.inject(args.scenario)
                    say(f"drill: +{timeline['injected'] - began:5.1f}s injected {args.scenario}")
                tick = time.monotonic()
                model = controller.models(SERVICE)[0]
                outcome = controller.analyze(model)
                decision = outcome.decision
                say(f"drill: +{outcome.at - began:5.1f}s {decision.get('action'):<16} -> {outcome.acted:<14} "
                    f"{decision.get('reason', '')}")
                finished = {"regression": outcome.acted == "rolled-back", "latency": outcome.acted == "rolled-back",
                            "quality-dip": outcome.acted == "paused",
                            "healthy": outcome.acted == "promoted" and decision.get("target_weight") == 100,
                            "no-traffic": False}[args.scenario]
                if outcome.acted in ("rolled-back", "paused", "failed") or finished:
                    timeline["decided"] = float(decision.get("decided_at", outcome.at))
                    timeline["acted"] = outcome.at
                    if drill.traffic.zeroed_at is not None:
                        timeline["traffic_moved"] = drill.traffic.zeroed_at
                    break
                if args.scenario == "no-traffic" and "injected" in timeline and decision.get("action") == "hold":
                    holds += 1
                    if holds >= 5:
                        break
                time.sleep(max(0.0, interval - (time.monotonic() - tick)))
            report: dict[str, Any] = {"scenario": args.scenario, "rate": args.rate, "route": drill.route_weights(),
                                      "acted": outcome.acted, "run_id": outcome.run_id}
            if "injected" in timeline and "decided" in timeline:
                report["seconds_to_decision"] = round(timeline["decided"] - timeline["injected"], 2)
            if "traffic_moved" in timeline:
                report["seconds_to_traffic_moved"] = round(timeline["traffic_moved"] - timeline["injected"], 2)
            if "acted" in timeline and "injected" in timeline:
                report["seconds_to_action_verified"] = round(timeline["acted"] - timeline["injected"], 2)
            report["decision"] = {k: v for k, v in outcome.decision.items() if k != "evidence"}
            report["evidence"] = [{k: e.get(k) for k in ("metric", "verdict", "counts", "rates", "statistic",
                                                         "threshold", "limit")}
                                  for e in outcome.decision.get("evidence", []) if e.get("verdict") != "undecided"]
            say(json.dumps(report, indent=2, sort_keys=True, default=str))
            expected = {"regression": "rolled-back", "latency": "rolled-back", "quality-dip": "paused",
                        "healthy": "promoted", "no-traffic": "none"}[args.scenario]
            return 0 if outcome.acted == expected else 1
        except stack_config.ConfigError as error:
            raise UsageError(str(error)) from None

    return _rehearse(drill, args.keep, STARTING, "evidence, audit log and stack file", rehearse)


def _drill_drift(args: argparse.Namespace) -> int:
    """Reference traffic into a real drift monitor scraped by real Prometheus with the stack's drift rules; at
    --inject-after seconds a new topic takes --share of the requests (or prompt tokens grow by half); the Drift alert
    must fire, the drift-review runbook accepts the new normal (approved by the drill), the alert must resolve."""
    import json
    import tempfile
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from llmops.drill.drift_drill import ENV, DriftDrill, Timeline
    from runbooks.engine import RunbookError
    from runbooks.engine.runner import RunOptions
    from runbooks.launch import launch

    def say(message: str) -> None:
        print(message, flush=True)

    def clock(at: float) -> str:
        return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S.%f")[:-4]

    drill = DriftDrill(Path(tempfile.mkdtemp(prefix="llmops-drift-drill-")), rate=args.rate)
    timeline = Timeline()
    samples: dict[str, int] = {}

    def rehearse() -> int:
        try:
            os.environ.update(drill.environment())
            policy, prometheus = drill.policy.drift, drill.prometheus
            assert prometheus is not None  # started
            say(f"drill: {drill.model}: {args.rate:g} requests/s into {drill.monitor_url}; Prometheus {prometheus.url}"
                f" scrapes it every {drill.scrape_seconds}s and evaluates the stack's drift rules every "
                f"{drill.rule_seconds}s; windows of {policy.window_seconds}s (at least {policy.min_samples} samples), "
                f"drift after {policy.consecutive_windows} in a row")
            drill.wait(lambda: drill.prometheus_status() == 0 and drill.monitor_status()[1], 120,
                       "the first judged window in Prometheus")
            drill.wait(lambda: time.time() - drill.started_at >= args.inject_after, args.inject_after + 5, "injection")
            what = (f"a new topic on {args.share:.0%} of requests" if args.scenario == "topic"
                    else f"prompt tokens x1.5 on {args.share:.0%} of requests")
            timeline.mark("injected", drill.inject(args.scenario, args.share))
            samples["injected"] = drill.posted
            say(f"drill: {clock(timeline.events['injected'])} injected {what}")
            marks = (("monitor_drift", "the monitor judged drift", lambda: drill.monitor_status()[0] >= 2),
                     ("prometheus_saw", "Prometheus scraped the drift status", lambda: drill.prometheus_status() >= 2),
                     ("alert_firing", "the Drift alert is firing", drill.alert))
            deadline = time.time() + args.timeout
            while time.time() < deadline and "alert_firing" not in timeline.events:
                for name, text, seen in marks:
                    if name not in timeline.events and seen():
                        timeline.mark(name)
                        samples[name] = drill.posted
                        say(f"drill: {clock(timeline.events[name])} +{timeline.since(name):5.1f}s {text} "
                            f"({samples[name] - samples['injected']} samples after the shift) "
                            f"{drill.monitor_status()[1]}")
                time.sleep(0.2)
            if "alert_firing" not in timeline.events:
                say(f"drill: the Drift alert did not fire within {args.timeout:g}s")
                return 1
            # The new normal is what the reference should now describe: enough of it for a reference first.
            drill.wait(lambda: drill.posted - samples["injected"] >= 300, 120, "300 requests of the new traffic")
            since = datetime.fromtimestamp(timeline.events["injected"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            say(f"drill: {clock(time.time())} running drift-review --decision accept --since {since} (approved by the "
                "drill: --yes)")
            timeline.mark("runbook_started")
            try:
                result = launch("drift-review", ENV, {"model": drill.model, "decision": "accept", "since": since},
                                RunOptions(yes=True), lambda message: print(message, flush=True))
            except RunbookError as error:
                print(f"drill: the drift-review runbook refused: {error}", file=sys.stderr)
                return error.exit_code
            timeline.mark("runbook_finished")
            for step in result.steps:
                say(f"  {step['step']:<18} {step['outcome']:<10} {step.get('seconds', 0):.2f}s")
            if result.status != "succeeded":
                say(f"drill: drift-review {result.status}: {result.error}")
                return result.exit_code or 1
            accepted = (next(st for st in result.steps if st["step"] == "accept-reference").get("outputs") or {})
            version = accepted.get("version")
            # Mitigated: Prometheus has scraped the monitor judging against the accepted reference, its verdict is
            # stable, and the alert is no longer firing.
            drill.wait(lambda: drill.prometheus_reference_version() == version and drill.prometheus_status() == 0
                       and not drill.alert(), args.timeout, f"Prometheus to see reference v{version} judged stable")
            timeline.mark("mitigation_verified")
            say(f"drill: {clock(timeline.events['mitigation_verified'])} +{timeline.since('mitigation_verified'):5.1f}s "
                f"mitigation verified: Prometheus sees reference v{version} judged stable and the Drift alert resolved")
            report = {"scenario": args.scenario, "share": args.share, "rate": args.rate, "model": drill.model,
                      "scrape_interval_seconds": drill.scrape_seconds, "rule_interval_seconds": drill.rule_seconds,
                      "timeline": {k: clock(v) for k, v in timeline.events.items()},
                      "seconds_after_injection": {k: timeline.since(k) for k in timeline.events if k != "injected"},
                      "samples_after_injection": {k: v - samples["injected"] for k, v in samples.items()
                                                  if k != "injected"},
                      "run_id": result.run_id}
            say(json.dumps(report, indent=2, sort_keys=True))
            return 0
        except TimeoutError as error:
            print(f"drill: {error}", file=sys.stderr)
            return 1

    return _rehearse(drill, args.keep, "drill: building a reference and starting a drift monitor and Prometheus ...",
                     "references, logs, evidence and audit log", rehearse)


def add_parsers(commands: Any) -> None:
    drill = commands.add_parser("drill", help="on-call drills on real local backends").add_subparsers(
        dest="drill", required=True)
    rollback_drill = drill.add_parser(
        "rollback", help="a bad release is live; run the rollback runbook against local backends "
                         "(needs the dev extra and Debian's prometheus, prometheus-pushgateway)")
    rollback_drill.add_argument("--keep", action="store_true",
                                help="keep the drill's directory (evidence, audit log, pinned stack file) afterwards")
    rollback_drill.set_defaults(handler=_drill_rollback)
    canary = drill.add_parser(
        "canary", help="a canary beside the stable release; the release controller decides on real Prometheus")
    canary.add_argument("--scenario", required=True, choices=("regression", "latency", "healthy", "no-traffic",
                                                              "quality-dip"))
    canary.add_argument("--rate", type=float, default=40.0, help="requests per second, both tracks (default 40)")
    canary.add_argument("--inject-after", type=float, default=4.0, help="seconds before the scenario starts")
    canary.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (exit 1)")
    canary.add_argument("--keep", action="store_true", help="keep the drill's directory afterwards")
    canary.set_defaults(handler=_drill_canary)
    drift = drill.add_parser(
        "drift", help="a drift monitor scraped by real Prometheus; a shift injected, the Drift alert fires, "
                      "drift-review accepts the new normal")
    drift.add_argument("--scenario", choices=("topic", "tokens"), default="topic",
                       help="topic: a new topic on --share of requests; tokens: their prompt tokens x1.5")
    drift.add_argument("--share", type=float, default=0.3, help="share of requests shifted (default 0.3)")
    drift.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10)")
    drift.add_argument("--inject-after", type=float, default=20.0, help="seconds of reference traffic first")
    drift.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (exit 1)")
    drift.add_argument("--keep", action="store_true", help="keep the drill's directory afterwards")
    drift.set_defaults(handler=_drill_drift)
