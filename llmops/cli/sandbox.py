"""`llmops sandbox up|status|down`: a long-lived local world of real backends, for rehearsing runbooks with
`--env sandbox` (see llmops/drill/sandbox.py)."""

from __future__ import annotations

import argparse
from typing import Any

from llmops.cli.errors import EXIT_FAILED, EXIT_OK, ProgramFailed


def _show(found: dict[str, Any]) -> None:
    print(f"sandbox: supervisor pid {found['pid']}, directory {found['directory']}")
    print(f"sandbox: targets {found['targets']} (use --env sandbox)")
    for name, service in found["services"].items():
        pid = f"pid {service['pid']}" if service.get("pid") else "in the store's files"
        print(f"  {name:<38} {service['url']:<48} {pid}")
    for runbook, what in found.get("seeded", {}).items():
        print(f"  seeded for {runbook + ':':<14} {what}")


def _up(args: argparse.Namespace) -> int:
    from llmops.drill.sandbox import SandboxError, up

    print("sandbox: starting (MLflow stores, Kubernetes APIs, Prometheus, Pushgateway, moto, embedded Qdrant; a bad "
          "release live, two regions, a corpus and its index, logs with personal data) ...", flush=True)
    try:
        found = up()
    except SandboxError as error:
        raise ProgramFailed(str(error)) from None
    if found.get("already_running"):
        print("sandbox: already up")
    _show(found)
    print("sandbox: try any runbook with --env sandbox, e.g. `llmops runbook run rollback --env sandbox --service "
          "chat-small --dry-run` or `llmops runbook run failover --env sandbox --from us-east-1 --to us-west-2 "
          "--dry-run` (README: Rehearsing); stop it with `llmops sandbox down`")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from llmops.drill.sandbox import state

    found = state()
    if found is None:
        print("sandbox: not running (llmops sandbox up)")
        return EXIT_FAILED
    _show(found)
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    from llmops.drill.sandbox import down

    stopped = down()
    print(f"sandbox: stopped {len(stopped)} process(es)" if stopped else "sandbox: nothing was running")
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    parser = commands.add_parser("sandbox", help="a long-lived local world of real backends (--env sandbox)")
    sub = parser.add_subparsers(dest="sandbox_command", required=True)
    sub.add_parser("up", help="start it (or find it running)").set_defaults(handler=_up)
    sub.add_parser("status", help="what runs where (exit 1 when it is not running)").set_defaults(handler=_status)
    sub.add_parser("down", help="stop every process it started, also after a crash").set_defaults(handler=_down)
