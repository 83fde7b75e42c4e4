"""`llmops drill rollback`: a bad release live on real local backends, and the rollback runbook run against them
-- the rehearsal on-call runs before the night it matters. A signal stops every server it started."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops.cli.errors import UsageError
from llmops.drill import arguments

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


def _percent(ratio: Any) -> str:
    return "n/a" if ratio is None else f"{float(ratio) * 100:.1f} %"


def _drill_rollback(args: argparse.Namespace) -> int:
    from llmops.drill.report import DrillReport, finish, run_approved
    from llmops.drill.rollback_drill import BAD_VERSIONS, REGISTERED_MODEL, SERVICE, DrillSettings, scratch_drill
    from runbooks.engine import RunbookError

    def say(message: str) -> None:
        print(message, flush=True)

    drill = scratch_drill(DrillSettings(verification_timeout_seconds=20) if args.break_mitigation else None)
    report = DrillReport("rollback", "bad release, known-good broken too" if args.break_mitigation else "bad release")

    def rehearse() -> int:
        say(f"drill: backends up: {drill.describe()}")
        os.environ.update(drill.environment())
        if args.break_mitigation:  # the release the rollback returns to fails as well: the drill must say so
            drill.vllm.bad_versions = set(BAD_VERSIONS) | {"2"}
            say("drill: --break-mitigation: the known-good release (version 2) fails too")
        report.mark("injected", f"bad release live (version {drill.serving_version()})")
        drill.wait_until_degraded()
        report.mark("alert_firing", "the page alert fired")
        say(f"drill: {SERVICE} serves {REGISTERED_MODEL} version {drill.serving_version()} (alias production -> "
            f"{drill.production_alias()}); it fails 20 % of requests and a page alert is firing. Rolling back:")
        try:
            result = run_approved(report, "rollback", "drill", {"service": SERVICE, "to": None},
                                  drill.workdir / "state", say)
        except RunbookError as error:
            say(f"drill: the rollback refused: {error}")
            report.exit_codes["runbook"] = error.exit_code
            report.objective("the rollback runs", "succeeded, exit code 0", f"refused, exit code {error.exit_code}",
                             False)
            return finish(report, say, args.report_dir)
        report.objective("the rollback runs", "succeeded, exit code 0", f"{result.status}, exit code {result.exit_code}",
                         result.exit_code == 0)
        if result.run_id is not None:  # the evidence has the signals after the run, whatever its outcome
            evidence = drill.evidence(result.run_id)
            before, after = evidence["signals"].get("before", {}), evidence["signals"].get("after", {})
            errors, paging = after.get("availability_error_ratio"), after.get("page_alerts")
            limit = 1 - drill.slo_objective() / 100
            if errors is not None and float(errors) <= limit and not paging:
                report.mark("mitigation_verified", "errors within the SLO, no page alert")
            say(f"drill: now serving version {drill.serving_version()}, alias production -> {drill.production_alias()}, "
                f"route {drill.route_weights()}")
            say(f"drill: errors {_percent(before.get('availability_error_ratio'))} -> {_percent(errors)} "
                f"(limit {_percent(limit)}); paging {before.get('page_alerts') or 'none'} -> {paging or 'none'}")
            report.objective("errors back within the SLO", f"at most {_percent(limit)}", _percent(errors),
                             errors is not None and float(errors) <= limit)
            report.objective("no page alert firing", "none", ", ".join(paging) if paging else "none", not paging)
            report.figures.update({"errors before": _percent(before.get("availability_error_ratio")),
                                   "errors after": _percent(errors), "serving version": drill.serving_version()})
        report.objective("the run's journal is consistent", "every step started finished once, run finished",
                         "consistent" if report.journal.get("consistent") else
                         "; ".join(report.journal.get("problems", ["no run"])), bool(report.journal.get("consistent")))
        return finish(report, say, args.report_dir)

    return _rehearse(drill, args.keep, STARTING, "evidence, audit log and pinned stack file", rehearse)


def _drill_canary(args: argparse.Namespace) -> int:
    """A canary serving beside the stable release; at --inject-after seconds the scenario starts; the release
    controller analyzes every interval on real Prometheus and acts through the runbooks, as in production."""
    import tempfile
    import time

    from components import config as stack_config
    from llmops.controller.controller import Controller
    from llmops.drill.canary_drill import CanaryDrill
    from llmops.drill.report import DrillReport, finish, journal_check
    from llmops.drill.rollback_drill import SERVICE
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster
    from runbooks.adapters.mlflow_registry import MlflowRegistry
    from runbooks.adapters.prometheus import Prometheus
    from runbooks.targets import load_targets

    def say(message: str) -> None:
        print(message, flush=True)

    drill = CanaryDrill(Path(tempfile.mkdtemp(prefix="llmops-canary-drill-")), rate=args.rate)
    timeline: dict[str, float] = {}
    report = DrillReport("canary", args.scenario, detected_by="decided")

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
            labels = {"injected": f"injected {args.scenario}", "decided": "the controller decided",
                      "traffic_moved": "canary traffic moved to 0", "acted": "the controller's action verified"}
            for name, at in timeline.items():
                report.mark(name, labels[name], at)
            if "acted" in timeline and outcome.acted in ("rolled-back", "paused", "promoted"):
                report.mark("mitigation_verified", f"{outcome.acted}, verified", timeline["acted"])
            expected = {"regression": "rolled-back", "latency": "rolled-back", "quality-dip": "paused",
                        "healthy": "promoted", "no-traffic": "none"}[args.scenario]
            report.objective(f"the controller's action on {args.scenario}", expected,
                             f"{outcome.acted} after {report.since('decided'):.1f} s" if "decided" in timeline
                             else outcome.acted, outcome.acted == expected)
            if outcome.run_id:
                report.run_id = outcome.run_id
                report.journal = journal_check(drill.workdir / "state", outcome.run_id)
                report.journal.pop("records", None)
                report.approvals.append(f"{outcome.acted} taken by the release controller without a person "
                                        "(allowAutomatic)")
                report.objective("the run's journal is consistent", "every step started finished once, run finished",
                                 "consistent" if report.journal.get("consistent") else
                                 "; ".join(report.journal.get("problems", [])), bool(report.journal.get("consistent")))
            report.figures.update({
                "rate": f"{args.rate:g} requests/s", "route": drill.route_weights(),
                "decision": {k: v for k, v in outcome.decision.items() if k != "evidence"},
                "evidence": [{k: e.get(k) for k in ("metric", "verdict", "counts", "rates", "statistic", "threshold",
                                                    "limit")}
                             for e in outcome.decision.get("evidence", []) if e.get("verdict") != "undecided"]})
            return finish(report, say, args.report_dir)
        except stack_config.ConfigError as error:
            raise UsageError(str(error)) from None

    return _rehearse(drill, args.keep, STARTING, "evidence, audit log and stack file", rehearse)


def _drill_drift(args: argparse.Namespace) -> int:
    """Reference traffic into a real drift monitor scraped by real Prometheus with the stack's drift rules; at
    --inject-after seconds a new topic takes --share of the requests (or prompt tokens grow by half); the Drift alert
    must fire, the drift-review runbook accepts the new normal (approved by the drill), the alert must resolve."""
    import tempfile
    import time
    from datetime import datetime, timezone

    from llmops.drill.drift_drill import ENV, DriftDrill
    from llmops.drill.report import DrillReport, finish, run_approved
    from runbooks.engine import RunbookError

    def say(message: str) -> None:
        print(message, flush=True)

    def clock(at: float) -> str:
        return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S.%f")[:-4]

    drill = DriftDrill(Path(tempfile.mkdtemp(prefix="llmops-drift-drill-")), rate=args.rate)
    report = DrillReport("drift", args.scenario)
    samples: dict[str, int] = {}

    def rehearse() -> int:
        os.environ.update(drill.environment())
        policy, prometheus = drill.policy.drift, drill.prometheus
        assert prometheus is not None  # started
        say(f"drill: {drill.model}: {args.rate:g} requests/s into {drill.monitor_url}; Prometheus {prometheus.url} "
            f"scrapes it every {drill.scrape_seconds} s and evaluates the stack's drift rules every "
            f"{drill.rule_seconds} s; windows of {policy.window_seconds} s (at least {policy.min_samples} samples), "
            f"drift after {policy.consecutive_windows} in a row")
        try:
            drill.wait(lambda: drill.prometheus_status() == 0 and drill.monitor_status()[1], 120,
                       "the first judged window in Prometheus")
            drill.wait(lambda: time.time() - drill.started_at >= args.inject_after, args.inject_after + 5, "injection")
        except TimeoutError as error:
            say(f"drill: {error}")
            return 1
        what = (f"a new topic on {args.share:.0%} of requests" if args.scenario == "topic"
                else f"prompt tokens x1.5 on {args.share:.0%} of requests")
        report.mark("injected", f"injected {what}", drill.inject(args.scenario, args.share))
        samples["injected"] = drill.posted
        say(f"drill: {clock(report.events['injected'])} injected {what}")
        marks = (("monitor_drift", "the monitor judged drift", lambda: drill.monitor_status()[0] >= 2),
                 ("prometheus_saw", "Prometheus scraped the drift status", lambda: drill.prometheus_status() >= 2),
                 ("alert_firing", "the Drift alert fired", drill.alert))
        deadline = time.time() + args.timeout
        while time.time() < deadline and "alert_firing" not in report.events:
            for name, text, seen in marks:
                if name not in report.events and seen():
                    report.mark(name, text)
                    samples[name] = drill.posted
                    signals = ", ".join(f"{k} {v:.3f}" for k, v in drill.monitor_status()[1].items())
                    say(f"drill: {clock(report.events[name])} +{report.since(name):5.1f} s {text} "
                        f"({samples[name] - samples['injected']} samples after the shift; {signals})")
            time.sleep(0.2)
        fired = "alert_firing" in report.events
        report.objective("the Drift alert fires", f"within {args.timeout:g} s of the shift",
                         f"after {report.since('alert_firing'):.1f} s" if fired else "never", fired)
        if fired:
            # The new normal is what the reference should now describe: enough of it for a reference first.
            try:
                drill.wait(lambda: drill.posted - samples["injected"] >= 300, 120, "300 requests of the new traffic")
            except TimeoutError as error:
                say(f"drill: {error}")
            since = datetime.fromtimestamp(report.events["injected"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            say(f"drill: {clock(time.time())} drift-review --decision accept --since {since}")
            try:
                result = run_approved(report, "drift-review", ENV,
                                      {"model": drill.model, "decision": "accept", "since": since},
                                      drill.workdir / "state", say)
            except RunbookError as error:
                say(f"drill: the drift-review runbook refused: {error}")
                report.exit_codes["runbook"] = error.exit_code
                result = None
            report.objective("drift-review accepts the new normal", "succeeded, exit code 0",
                             f"{result.status}, exit code {result.exit_code}" if result else
                             f"refused, exit code {report.exit_codes['runbook']}",
                             result is not None and result.exit_code == 0)
            if result is not None and result.exit_code == 0:
                accepted = next(st for st in result.steps if st["step"] == "accept-reference").get("outputs") or {}
                version = accepted.get("version")
                # Mitigated: Prometheus has scraped the monitor judging against the accepted reference, its verdict
                # is stable, and the alert no longer fires.
                try:
                    drill.wait(lambda: drill.prometheus_reference_version() == version and drill.prometheus_status()
                               == 0 and not drill.alert(), args.timeout, f"Prometheus to see v{version} judged stable")
                    report.mark("mitigation_verified", "mitigation verified: the alert resolved")
                    say(f"drill: {clock(report.events['mitigation_verified'])} "
                        f"+{report.since('mitigation_verified'):5.1f} s mitigation verified: Prometheus sees "
                        f"reference v{version} judged stable and the Drift alert resolved")
                except TimeoutError as error:
                    say(f"drill: {error}")
            verified = "mitigation_verified" in report.events
            report.objective("the alert resolves against the accepted reference", f"within {args.timeout:g} s",
                             f"{report.since('mitigation_verified'):.1f} s after the shift" if verified else "not seen",
                             verified)
            report.objective("the run's journal is consistent", "every step started finished once, run finished",
                             "consistent" if report.journal.get("consistent") else
                             "; ".join(report.journal.get("problems", ["no run"])), bool(report.journal.get("consistent")))
        report.figures.update({"rate": f"{args.rate:g} requests/s", "share": f"{args.share:.0%}",
                               "scrape interval": f"{drill.scrape_seconds} s",
                               "rule evaluation interval": f"{drill.rule_seconds} s",
                               **{f"samples after the shift: {k}": v - samples["injected"]
                                  for k, v in samples.items() if k != "injected"}})
        return finish(report, say, args.report_dir)

    return _rehearse(drill, args.keep, "drill: building a reference and starting a drift monitor and Prometheus ...",
                     "references, logs, evidence and audit log", rehearse)


# Drills written as one module each under llmops/drill: the module gives HELP, STARTING (what is being started),
# KEPT (what --keep keeps), add_arguments(parser), make_drill(args) -> a world with start(), stop() and workdir, and
# rehearse(drill, args, say) -> exit code. The CLI adds --keep and --report-dir and runs it through _rehearse.
MODULAR_DRILLS = {"failover": "llmops.drill.failover_drill", "reindex": "llmops.drill.reindex_drill",
                  "pii-incident": "llmops.drill.pii_drill", "shadow": "llmops.drill.shadow_drill"}


def _drill_modular(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(MODULAR_DRILLS[args.drill])
    drill = module.make_drill(args)

    def say(message: str) -> None:
        print(message, flush=True)
    return _rehearse(drill, args.keep, module.STARTING, module.KEPT, lambda: int(module.rehearse(drill, args, say)))


# What `llmops drill all` runs, in order; a drill whose module is missing is said to be so, not passed over silently.
ALL_DRILLS: tuple[tuple[str, list[str]], ...] = (
    ("rollback", []), ("canary", ["--scenario", "regression"]), ("drift", []), ("failover", []), ("reindex", []),
    ("pii-incident", []), ("shadow", []))
NOT_YET: tuple[str, ...] = ()


def _drill_all(args: argparse.Namespace) -> int:
    """Every drill, one after another, each in its own process (a drill's world and environment stay its own); then
    one table of what passed, with the reports."""
    import json
    import subprocess
    import time

    from llmops.drill.report import REPORT_DIR

    directory = args.report_dir or REPORT_DIR
    import importlib.util

    missing = [n for n, m in MODULAR_DRILLS.items() if importlib.util.find_spec(m) is None]
    rows = []
    for name, extra in ALL_DRILLS:
        if name in missing:
            continue
        print(f"drill all: {name} ...", flush=True)
        began = time.monotonic()
        path = directory / f"{name}.json"
        path.unlink(missing_ok=True)  # a report found afterwards is this run's
        code = subprocess.run([sys.executable, "-m", "llmops.cli", "drill", name, *extra, "--report-dir",
                               str(directory)], check=False).returncode
        found = json.loads(path.read_text()) if path.exists() else None
        rows.append((name, code, found, time.monotonic() - began))
    print("\ndrill         result   detection   mitigated   took     report")
    for name, code, found, took in rows:
        passed = code == 0 and found is not None and found["passed"]
        detection = found.get("detection_seconds") if found else None
        mitigated = found.get("mitigation_seconds") if found else None
        print(f"{name:<13} {'pass' if passed else 'FAIL':<8} {_secs(detection):>9}   {_secs(mitigated):>9}   "
              f"{took:5.1f} s  {found['html'] if found else '(no report; exit code ' + str(code) + ')'}")
    if missing or NOT_YET:
        print(f"no drill yet: {', '.join([*NOT_YET, *missing])} (tested in tests/runbooks against the same kinds of "
              "backends)")
    return 0 if all(code == 0 for _, code, _, _ in rows) else 1


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def add_parsers(commands: Any) -> None:
    drill = commands.add_parser("drill", help="on-call drills on real local backends").add_subparsers(
        dest="drill", required=True)
    rollback_drill = drill.add_parser(
        "rollback", help="a bad release is live; run the rollback runbook against local backends "
                         "(needs the dev extra and Debian's prometheus, prometheus-pushgateway)")
    rollback_drill.add_argument("--keep", action="store_true",
                                help="keep the drill's directory (evidence, audit log, pinned stack file) afterwards")
    rollback_drill.add_argument("--report-dir", type=arguments.report_dir, default=None,
                                help="where the report goes (default build/drills)")
    rollback_drill.add_argument("--break-mitigation", action="store_true",
                                help="the known-good release fails too: rehearse a rollback that cannot mitigate (the "
                                     "drill must fail and say which objective was missed)")
    rollback_drill.set_defaults(handler=_drill_rollback)
    canary = drill.add_parser(
        "canary", help="a canary beside the stable release; the release controller decides on real Prometheus")
    canary.add_argument("--scenario", required=True, choices=("regression", "latency", "healthy", "no-traffic",
                                                              "quality-dip"))
    canary.add_argument("--rate", type=arguments.rate, default=40.0, help="requests per second, both tracks (default 40)")
    canary.add_argument("--inject-after", type=arguments.seconds_or_zero, default=4.0, help="seconds before the scenario starts")
    canary.add_argument("--timeout", type=arguments.positive_seconds, default=120.0,
                        help="give up after this many seconds (exit 1)")
    canary.add_argument("--keep", action="store_true", help="keep the drill's directory afterwards")
    canary.add_argument("--report-dir", type=arguments.report_dir, default=None,
                        help="where the report goes (default build/drills)")
    canary.set_defaults(handler=_drill_canary)
    drift = drill.add_parser(
        "drift", help="a drift monitor scraped by real Prometheus; a shift injected, the Drift alert fires, "
                      "drift-review accepts the new normal")
    drift.add_argument("--scenario", choices=("topic", "tokens"), default="topic",
                       help="topic: a new topic on --share of requests; tokens: their prompt tokens x1.5")
    drift.add_argument("--share", type=arguments.share, default=0.3, help="share of requests shifted (default 0.3)")
    drift.add_argument("--rate", type=arguments.rate, default=10.0, help="requests per second (default 10)")
    drift.add_argument("--inject-after", type=arguments.seconds_or_zero, default=20.0, help="seconds of reference traffic first")
    drift.add_argument("--timeout", type=arguments.positive_seconds, default=120.0,
                       help="give up after this many seconds (exit 1)")
    drift.add_argument("--keep", action="store_true", help="keep the drill's directory afterwards")
    drift.add_argument("--report-dir", type=arguments.report_dir, default=None,
                       help="where the report goes (default build/drills)")
    drift.set_defaults(handler=_drill_drift)
    import importlib.util

    for name, module_name in MODULAR_DRILLS.items():
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        modular = drill.add_parser(name, help=module.HELP)
        module.add_arguments(modular)
        modular.add_argument("--keep", action="store_true", help="keep the drill's directory afterwards")
        modular.add_argument("--report-dir", type=arguments.report_dir, default=None,
                             help="where the report goes (default build/drills)")
        modular.set_defaults(handler=_drill_modular)
    every = drill.add_parser("all", help="every drill, one after another; a table of results and the reports")
    every.add_argument("--report-dir", type=arguments.report_dir, default=None,
                       help="where the reports go (default build/drills)")
    every.set_defaults(handler=_drill_all)
