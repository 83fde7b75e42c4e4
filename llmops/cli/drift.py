"""`llmops drift reference|watch|status`: build a model's drift reference from request logs, run the monitor (what
the drift-monitor Deployment runs), and read what a monitor judges now."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from llmops.cli.errors import EXIT_FAILED, EXIT_OK, ProgramFailed, UsageError


def _targets(environment: str) -> Any:
    from runbooks.engine import InputError
    from runbooks.targets import environment_name, load_targets

    try:
        environment_name(environment)
        targets = load_targets(environment)
    except ValueError as error:
        raise UsageError(f"--env {environment!r}: {error}") from None
    except InputError as error:
        raise UsageError(str(error)) from None
    if targets.drift is None:
        raise UsageError(f"stacks/targets/{environment}.yaml: drift (references, monitor_url, logs) is missing "
                         "from the targets file")
    return targets


def _reference(args: argparse.Namespace) -> int:
    from components import config as stack_config
    from llmops.drift.logs import log_records
    from llmops.drift.reference import ReferenceError, ReferenceStore, build_reference, model_policy
    from llmops.retrieval.embed import embedder_for
    from runbooks.adapters.aws import client

    targets = _targets(args.env)
    try:
        stack = stack_config.load_file(targets.stack_path())
    except stack_config.ConfigError as error:
        raise UsageError(str(error)) from None

    def s3() -> Any:
        return client("s3", region=targets.aws.region, endpoint_url=targets.aws.endpoint_url)

    try:
        policy = model_policy(stack, args.model)
        embedder = None
        if policy.embedding_model is not None:
            e = targets.drift.embedding
            try:
                embedder = embedder_for(policy.embedding_model, url=e.url, dimension=e.dimension,
                                        api_key_env=e.api_key_env)
            except ValueError as error:
                raise UsageError(f"stacks/targets/{args.env}.yaml: drift.embedding: {error}") from None
        sources, records = log_records(args.from_, args.model, s3)
        reference = build_reference(records, model=args.model, drift=policy.drift, embedder=embedder,
                                    release=args.release or policy.release, reason=args.reason,
                                    created_by=getpass.getuser(), sources=sources)
        store = ReferenceStore(targets.drift.references, s3)
        stored = store.put(reference)
    except ReferenceError as error:
        raise UsageError(str(error)) from None
    result = {"model": stored.model, "version": stored.version, "previous": stored.previous,
              "release": stored.release, "fingerprint": stored.fingerprint,
              "records": stored.window["records"], "where": store.where(stored.model, stored.version)}
    if args.output == "json":
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"{stored.model}: reference v{stored.version} (release {stored.release}, fingerprint "
              f"{stored.fingerprint[:16]}) from {stored.window['records']} records in {sources} input(s) -> "
              f"{result['where']}")
    return EXIT_OK


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT, e.g. 0.0.0.0:8080")
    return host or "0.0.0.0", int(port)


def _watch(args: argparse.Namespace) -> int:
    import logging

    from llmops.drift.server import MonitorServer, serve
    from llmops.drift.settings import SettingsError, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        raise UsageError(str(error)) from None
    host, port = args.listen

    def ready(server: MonitorServer) -> None:
        print(f"llmops drift watch: listening on {host}:{server.server_address[1]} for "
              f"{', '.join(settings.models)}", file=sys.stderr, flush=True)
    try:
        serve(settings, host, port, ready)
    except OSError as error:
        raise UsageError(f"--listen {host}:{port}: {error.strerror or error}") from None
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    targets = _targets(args.env)
    if not targets.drift.monitor_url:
        raise UsageError(f"stacks/targets/{args.env}.yaml: drift.monitor_url is missing")
    from llmops.drift.client import MonitorUnavailable, monitor_state

    try:
        state = monitor_state(targets.drift.monitor_url)
    except MonitorUnavailable as error:
        raise ProgramFailed(str(error)) from None
    models = {name: m for name, m in state["models"].items() if not args.model or name == args.model}
    if args.output == "json":
        print(json.dumps({name: {k: v for k, v in m.items() if k != "window"} for name, m in models.items()},
                         sort_keys=True))
    else:
        for name, m in models.items():
            j = m["judgement"] or {}
            print(f"{name}: reference v{m['reference']['version']}, {j.get('samples', 0)} samples in "
                  f"{j.get('seconds', 0)} s, status {('stable', 'watch', 'drift')[j.get('status', 0)]}")
            for s in j.get("signals", []):
                value = "n/a" if s["value"] is None else f"{s['value']:.3f}"
                print(f"  {s['name']}: {value} (limit {s['limit']:.3f}) {('stable', 'watch', 'drift')[s['status']]}")
        for name in state.get("waiting_for_reference", []):
            print(f"{name}: no reference yet (llmops drift reference --env {args.env} --model {name} --from LOGS)")
    drifting = any((m["judgement"] or {}).get("status", 0) >= 2 for m in models.values())
    return EXIT_FAILED if drifting else EXIT_OK


def add_parsers(commands: Any) -> None:
    from runbooks.targets import environment_name

    parser = commands.add_parser("drift", help="drift references and the drift monitor")
    sub = parser.add_subparsers(dest="drift_command", required=True)
    reference = sub.add_parser("reference", help="build a model's next reference version from request logs")
    reference.add_argument("--env", required=True, type=environment_name)
    reference.add_argument("--model", required=True)
    reference.add_argument("--from", dest="from_", action="append", required=True, metavar="LOGS",
                           help="request logs: files, directories or s3://bucket/prefix (JSON lines); repeatable")
    reference.add_argument("--release", help="the release id it belongs to (default: the stack's stable release)")
    reference.add_argument("--reason", default="new-release", help="why: initial, new-release, accepted-drift, ...")
    reference.add_argument("--output", choices=["text", "json"], default="text")
    reference.set_defaults(handler=_reference)
    watch = sub.add_parser("watch", help="run the drift monitor (HTTP: /v1/samples, /metrics, /v1/state)")
    watch.add_argument("--config", required=True, help="the monitor's settings (JSON; the stack renders them)")
    watch.add_argument("--listen", type=_listen, default=("0.0.0.0", 8080), help="HOST:PORT (default 0.0.0.0:8080)")
    watch.set_defaults(handler=_watch)
    status = sub.add_parser("status", help="what the environment's monitor judges now (exit 1 while drifting)")
    status.add_argument("--env", required=True, type=environment_name)
    status.add_argument("--model")
    status.add_argument("--output", choices=["text", "json"], default="text")
    status.set_defaults(handler=_status)
