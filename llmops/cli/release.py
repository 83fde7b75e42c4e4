"""`llmops release analyze|watch|resume`: the release controller -- one decision (for CI and debugging), the loop
(what the controller Deployment runs), and resuming a canary a person has reviewed after a pause."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from llmops.cli.errors import EXIT_FAILED, EXIT_OK, UsageError


def _controller(args: argparse.Namespace) -> Any:
    from components import config as stack_config
    from llmops.controller.controller import Controller
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster
    from runbooks.adapters.mlflow_registry import MlflowRegistry
    from runbooks.adapters.prometheus import Prometheus
    from runbooks.engine import InputError
    from runbooks.targets import environment_name, load_targets

    try:
        environment_name(args.env)
    except ValueError as error:
        raise UsageError(f"--env {args.env!r}: {error}") from None
    try:
        targets = load_targets(args.env)
    except InputError as error:
        raise UsageError(str(error)) from None
    missing = [name for name in ("registry", "kubernetes", "prometheus") if getattr(targets, name) is None]
    if missing:
        raise UsageError(f"targets for {args.env}: the release controller needs {', '.join(missing)}")
    assert targets.registry and targets.kubernetes and targets.prometheus
    k8s = targets.kubernetes
    controller = Controller(args.env, targets, Prometheus(targets.prometheus.url),
                            MlflowRegistry(targets.registry.tracking_uri),
                            KubernetesCluster(host=k8s.host, context=k8s.context, kubeconfig=k8s.kubeconfig,
                                                      in_cluster=k8s.in_cluster),
                            progress=lambda message: print(message, file=sys.stderr, flush=True))
    try:
        models = controller.models(args.model)
    except stack_config.ConfigError as error:
        raise UsageError(str(error)) from None
    return controller, models


def _print(outcome: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(outcome.to_dict(), sort_keys=True, default=str), flush=True)
        return
    decision = outcome.decision
    print(f"{outcome.model}: {decision.get('action')} -> {outcome.acted}"
          f"{' (run ' + outcome.run_id + ')' if outcome.run_id else ''}: {decision.get('reason', '')}"
          f"{' ' + outcome.detail if outcome.detail else ''}", flush=True)


def _analyze(args: argparse.Namespace) -> int:
    controller, models = _controller(args)
    outcomes = [controller.analyze(model, act=not args.no_act) for model in models]
    if args.output == "json" and len(outcomes) != 1:
        print(json.dumps([o.to_dict() for o in outcomes], sort_keys=True, default=str))
    else:
        for outcome in outcomes:
            _print(outcome, args.output)
    return EXIT_FAILED if any(o.acted == "failed" for o in outcomes) else EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    from llmops.controller.controller import watch
    from llmops.controller.metrics import ControllerMetrics

    controller, _ = _controller(args)
    metrics = ControllerMetrics(args.metrics_port) if args.metrics_port else None
    stop = threading.Event()

    def on_outcome(outcome: Any) -> None:
        if metrics is not None:
            metrics.record(outcome)
        _print(outcome, args.output)

    try:
        watch(controller, args.model, stop.is_set, on_outcome, interval=args.interval)
    finally:
        stop.set()
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    controller, models = _controller(args)
    for model in models:
        print(f"{model.name}: {'pause removed' if controller.resume(model) else 'was not paused'}")
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    release = commands.add_parser("release", help="the release controller: canary analysis, promotion, rollback")
    sub = release.add_subparsers(dest="release", required=True)
    for name, handler, summary in (
            ("analyze", _analyze, "analyze each model's canary once and act on the decision (as the loop would)"),
            ("watch", _watch, "the controller's loop: analyze every interval until stopped"),
            ("resume", _resume, "remove a pause for review, so the controller may promote again")):
        parser = sub.add_parser(name, help=summary)
        parser.add_argument("--env", required=True, help="the environment (its targets file)")
        parser.add_argument("--model", help="one model (default: every model with a rollout policy)")
        if name != "resume":
            parser.add_argument("--output", choices=("text", "json"), default="text")
        if name == "analyze":
            parser.add_argument("--once", action="store_true", help="one decision (the default and only mode)")
            parser.add_argument("--no-act", action="store_true", help="decide and record, but take no action")
        if name == "watch":
            parser.add_argument("--region", help="the region this controller serves (recorded; targets are per region)")
            parser.add_argument("--interval", type=float, help="seconds between analyses (default: the policy's)")
            parser.add_argument("--metrics-port", type=int, default=0,
                                help="serve llmops_release_* metrics on this port (the Deployment uses 9109)")
        parser.set_defaults(handler=handler)
