"""`llmops drill rollback`: a bad release live on real local backends, and the rollback runbook run against them
-- the rehearsal on-call runs before the night it matters. A signal stops every server it started."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from llmops.cli.errors import UsageError


def _drill_rollback(args: argparse.Namespace) -> int:
    import shutil
    import time

    from llmops.drill.rollback_drill import REGISTERED_MODEL, SERVICE, scratch_drill
    from runbooks.engine import Interrupted, RunbookError
    from runbooks.engine.runner import RunOptions, signals_interrupt
    from runbooks.launch import launch

    def say(message: str) -> None:
        print(message, flush=True)

    drill = scratch_drill()
    # SIGINT and SIGTERM end the drill through `finally`: every server it started is stopped and its directory
    # removed (unless --keep), whatever it was doing.
    try:
        with signals_interrupt():
            say("drill: starting local backends (MLflow store, Kubernetes API, Prometheus, Pushgateway, moto) ...")
            try:
                drill.start()
            except RuntimeError as error:
                raise UsageError(f"drill: {error}") from None
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
    except Interrupted as stop:
        print(f"drill: stopped by {stop.name}; stopping every backend it started", file=sys.stderr)
        return stop.exit_code
    finally:
        drill.stop()
        if args.keep:
            say(f"drill: evidence, audit log and pinned stack file kept under {drill.workdir}")
        else:
            shutil.rmtree(drill.workdir, ignore_errors=True)


def add_parsers(commands: Any) -> None:
    drill = commands.add_parser("drill", help="on-call drills on real local backends").add_subparsers(
        dest="drill", required=True)
    rollback_drill = drill.add_parser(
        "rollback", help="a bad release is live; run the rollback runbook against local backends "
                         "(needs the dev extra and Debian's prometheus, prometheus-pushgateway)")
    rollback_drill.add_argument("--keep", action="store_true",
                                help="keep the drill's directory (evidence, audit log, pinned stack file) afterwards")
    rollback_drill.set_defaults(handler=_drill_rollback)
