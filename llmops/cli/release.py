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
    add_shadow_parsers(sub)


# --- shadow releases: llmops release compare | calibrate-judge ------------------------------------------------------

EXIT_NOT_PUSHED = 5  # as `llmops pii scan`: the verdict was reached, but the Pushgateway did not take it
CALIBRATIONS_ENV = "LLMOPS_JUDGE_CALIBRATIONS"
JUDGE_KEY_ENV = "LLMOPS_JUDGE_API_KEY"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _window(value: str) -> int:
    """Seconds in a duration (30m, 1h, 2d); UsageError naming --window otherwise."""
    import re

    found = re.fullmatch(r"([1-9][0-9]{0,6})([smhd])", value.strip())
    if not found or int(found.group(1)) * _UNITS[found.group(2)] > 30 * 86400:
        raise UsageError(f"--window {value!r}: expected a duration such as 30m, 1h or 2d (at most 30d)")
    return int(found.group(1)) * _UNITS[found.group(2)]


def _instant(value: str) -> float:
    from datetime import UTC, datetime

    try:
        if value.replace(".", "", 1).isdigit():
            return float(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected epoch seconds or an ISO 8601 time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _calibrations(args: argparse.Namespace) -> Any:
    import os
    from pathlib import Path

    chosen = args.calibrations or os.environ.get(CALIBRATIONS_ENV) or "~/.llmops/judge-calibrations"
    return Path(chosen).expanduser()


def _judge_client(args: argparse.Namespace) -> Any:
    import os

    from llmops.release.shadow.judge import JudgeClient

    try:
        return JudgeClient(args.judge, args.judge_model, timeout=args.judge_timeout,
                           api_key=os.environ.get(JUDGE_KEY_ENV) or None)
    except ValueError as error:
        raise UsageError(f"--judge: {error}") from None


def _judge_spec(name: str) -> Any:
    from llmops.release.shadow.judge import load_judge
    from llmops.release.shadow.refusal import SpecError

    try:
        return load_judge(name)
    except SpecError as error:
        raise UsageError(f"--judge-spec: {error}") from None


def _compare_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(targets, the model's stack entry, its shadow gates)."""
    from components import config as stack_config
    from components.config.rollout import ShadowGates
    from runbooks.engine import InputError
    from runbooks.targets import load_targets

    try:
        targets = load_targets(args.env)
    except InputError as error:
        raise UsageError(str(error)) from None
    try:
        stack = stack_config.load_file(targets.stack_path())
    except stack_config.ConfigError as error:
        raise UsageError(str(error)) from None
    model = next((m for m in stack.models if m.name == args.model), None)
    if model is None:
        names = ", ".join(m.name for m in stack.models) or "none"
        raise UsageError(f"--model {args.model!r}: no such model in {targets.stack_path().name}; models: {names}")
    gates = (model.rollout.shadow if model.rollout is not None else None) or ShadowGates()
    return targets, model, gates


def _read_joined(args: argparse.Namespace, targets: Any, start: float, end: float, keep_text: bool) -> Any:
    from llmops.drift.records import read_records
    from llmops.pii.redact import redact_text
    from llmops.pii.scanner import open_binary, read_error
    from llmops.pii.sources import SourceError, resolve, unreadable_reason
    from llmops.release.shadow.compare import join
    from llmops.release.shadow.refusal import SpecError, load_refusal
    from runbooks.adapters.aws import client

    location = args.from_ or targets.request_logs or (targets.drift.logs if targets.drift is not None else None)
    if not location:
        raise UsageError(f"--from: no request-log location given, and stacks/targets/{args.env}.yaml has no "
                         "request_logs (or drift.logs) to default to")
    try:
        refusal = load_refusal(args.refusal_spec)
    except SpecError as error:
        raise UsageError(f"--refusal-spec: {error}") from None
    def s3() -> Any:
        return client("s3", region=targets.aws.region, endpoint_url=targets.aws.endpoint_url)

    sources = []
    if location.startswith("s3://"):
        # Fluent Bit's layout, <prefix>YYYY/MM/DD/HH/: only the window's hours are listed (an hour either side: a chunk
        # is keyed by its upload), not 30 days of logs. A prefix without that layout is listed whole.
        for hour in _hours(start - 3600, end + 3600):
            try:
                sources += resolve([location.rstrip("/") + "/" + hour], s3)
            except SourceError:
                continue  # no objects that hour (or no such layout)
    try:
        sources = sources or resolve([location], s3)
    except SourceError as error:
        raise UsageError(f"--from {redact_text(str(error))}") from None

    def records() -> Any:
        for source in sources:
            try:
                with source.open() as raw, open_binary(raw) as stream:
                    yield from read_records(stream, args.model)
            except Exception as error:
                reason = unreadable_reason(error) or read_error(error)
                if reason is None:
                    raise
                raise UsageError(f"--from {redact_text(source.name)}: cannot be read: {reason}") from None

    return location, join(records(), args.model, start, end, refusal.refuses, keep_text=keep_text), refusal.version


def _hours(start: float, end: float) -> list[str]:
    """`YYYY/MM/DD/HH/` of every UTC hour from `start` to `end` (at most 31 days of them)."""
    from datetime import UTC, datetime

    first = int(start // 3600)
    return [datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y/%m/%d/%H/")
            for hour in range(first, min(int(end // 3600), first + 31 * 24) + 1)]


def _when(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _compare(args: argparse.Namespace) -> int:
    import time

    from llmops.release.shadow.compare import figures
    from llmops.release.shadow.export import Comparison, PushFailed, exposition, push, registry_for
    from llmops.release.shadow.gates import evaluate
    from llmops.release.shadow.judge import JudgeError, judge_pairs, standing

    if args.sample < 1:
        raise UsageError(f"--sample {args.sample}: expected at least 1 pair")
    _window(args.window)  # bad usage is refused before anything is read
    targets, model, gates = _compare_model(args)
    spec = _judge_spec(args.judge_spec) if args.judge else None
    client = _judge_client(args) if args.judge else None
    end = args.end if args.end is not None else time.time()
    start = end - _window(args.window)
    where, joined, refusal_version = _read_joined(args, targets, start, end, keep_text=client is not None)
    span = f"between {_when(start)} and {_when(end)}"
    if joined.records == 0:
        raise UsageError(f"--window {args.window}: no request-log records of model {args.model} {span} in "
                         f"--from {where} ({joined.outside_window} outside the window, {joined.invalid} invalid)")
    if joined.shadow_records == 0:
        raise UsageError(f"--window {args.window}: no shadow records of model {args.model} {span} "
                         f"({joined.primary_records} primary records): is the shadow Deployment mirrored and logging?")
    if not joined.pairs:
        raise UsageError(f"--window {args.window}: no shadow record of model {args.model} {span} has its "
                         f"primary's record ({joined.shadow_records} shadow, {joined.primary_records} primary)")
    comparisons = []
    for (primary_release, shadow_release), pairs in joined.groups().items():
        found = figures(primary_release, shadow_release, pairs)
        result = judged = None
        if client is not None:
            assert spec is not None
            try:
                result = judge_pairs(client, spec, pairs, args.sample, args.seed)
            except JudgeError as error:
                print(f"llmops: {error}; nothing pushed", file=sys.stderr)
                return EXIT_FAILED
            judged = standing(spec, result.served_model, _calibrations(args), gates.min_judge_kappa)
        comparisons.append(Comparison(found, evaluate(found, gates, result, judged), result, judged))
    promotable = all(c.promotable for c in comparisons)
    registry = registry_for(joined, comparisons)
    _print_comparison(args, joined, comparisons, promotable, span, refusal_version, exposition(registry))
    if args.pushgateway:
        try:
            push(args.pushgateway, args.model, registry)
        except PushFailed as error:
            print(f"llmops: could not push to the Pushgateway {error}", file=sys.stderr)
            return EXIT_NOT_PUSHED
    return EXIT_OK if promotable else EXIT_FAILED


def _comparison_dict(c: Any) -> dict[str, Any]:
    from dataclasses import asdict

    f = c.figures
    document: dict[str, Any] = {
        "release": f.primary_release, "shadow_release": f.shadow_release, "primary_tracks": list(f.primary_tracks),
        "pairs": f.pairs, "token_ratio": f.token_ratio, "token_ratio_pair_mean": f.token_ratio_pair_mean,
        "token_ratio_pairs": f.token_ratio_pairs,
        "primary": {**asdict(f.primary), "latency_seconds": {f"{q:g}": v for q, v in f.primary.latency_seconds.items()}},
        "shadow": {**asdict(f.shadow), "latency_seconds": {f"{q:g}": v for q, v in f.shadow.latency_seconds.items()}},
        "gates": [asdict(g) for g in c.gates], "promotable": c.promotable, "judge": None}
    if c.judge is not None:
        document["judge"] = {**asdict(c.judge), "judged": c.judge.judged, "gates": c.standing.gates,
                             "standing": c.standing.reason}
    return document


def _print_comparison(args: argparse.Namespace, joined: Any, comparisons: list[Any], promotable: bool, span: str,
                      refusal_version: str, metrics: str) -> None:
    failed = [g.text for c in comparisons for g in c.gates if not g.passed]
    if args.output == "json":
        print(json.dumps({"model": joined.model, "window": {"start": joined.start, "end": joined.end},
                          "records": joined.records, "shadow_records": joined.shadow_records,
                          "primary_records": joined.primary_records, "shadow_unmatched": joined.shadow_unmatched,
                          "primary_unmatched": joined.primary_unmatched, "invalid": joined.invalid_reasons,
                          "duplicates": joined.duplicates, "refusal_patterns": refusal_version,
                          "comparisons": [_comparison_dict(c) for c in comparisons],
                          "verdict": "promotable" if promotable else "refuse promotion", "failed": failed},
                         sort_keys=True))
        return
    print(f"{joined.model}: shadow comparison {span} ({joined.records} records: {joined.primary_records} primary, "
          f"{joined.shadow_records} shadow; unmatched: {joined.shadow_unmatched} shadow without their primary, "
          f"{joined.primary_unmatched} primary not mirrored; {joined.invalid} invalid, {joined.duplicates} duplicate)")
    for c in comparisons:
        f = c.figures
        print(f"  shadow {f.shadow_release} vs {'/'.join(f.primary_tracks)} {f.primary_release}: {f.pairs} pairs")
        mean = "n/a" if f.token_ratio_pair_mean is None else f"{f.token_ratio_pair_mean:.3f}"
        ratio = "n/a" if f.token_ratio is None else f"{f.token_ratio:.3f}"
        print(f"    completion tokens: shadow {f.shadow.completion_tokens} / primary {f.primary.completion_tokens} = "
              f"{ratio} (ratio of sums: gated); mean of per-pair ratios {mean} over {f.token_ratio_pairs} pairs")
        for side, s in (("primary", f.primary), ("shadow", f.shadow)):
            quantiles = "/".join(f"{v:.3f}" for v in s.latency_seconds.values())
            print(f"    {side:<7} latency p50/p95/p99 {quantiles} s; refusals {s.refusals}/{f.pairs} "
                  f"({s.refusal_rate * 100:.1f} %, {refusal_version})")
        if c.judge is not None:
            j = c.judge
            score = "no parsed verdict" if j.win_rate is None else \
                f"shadow win rate {j.win_rate:.2f}, 95 % Wilson [{j.low:.2f}, {j.high:.2f}]"
            mark = "" if c.standing.gates else ": does not gate"
            print(f"    judge {j.version} ({j.served_model or 'unnamed model'}): {score}; {j.judged} judged of "
                  f"{j.sampled} sampled (seed {j.seed}; {j.wins} won, {j.losses} lost, {j.ties} tied, "
                  f"{j.unparsed} unparsed); {c.standing.reason}{mark}")
        for g in c.gates:
            print(f"    {'ok  ' if g.passed else 'FAIL'} {g.text}")
    if args.show_metrics:
        print(metrics, end="")
    print("verdict: promotable" if promotable else "verdict: refuse promotion: " + "; ".join(failed))


def _calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llmops.release.shadow.judge import JudgeError, calibrate, save_calibration
    from llmops.release.shadow.refusal import SpecError

    spec = _judge_spec(args.judge_spec)
    labelled = Path(args.labelled) if args.labelled else spec.labelled
    if labelled is None:
        raise UsageError(f"--labelled: {spec.path.name} names no labelled set; give one")
    client = _judge_client(args)
    try:
        record = calibrate(client, spec, labelled)
    except SpecError as error:
        raise UsageError(str(error)) from None
    except JudgeError as error:
        print(f"llmops: {error}; no calibration recorded", file=sys.stderr)
        return EXIT_FAILED
    path = save_calibration(_calibrations(args), record)
    accepted = record.kappa >= args.min_kappa
    if args.output == "json":
        print(json.dumps({**record.to_dict(), "min_kappa": args.min_kappa, "calibrated": accepted,
                          "record": str(path)}, sort_keys=True))
    else:
        print(f"judge {record.judge_version} ({record.endpoint_model} at {record.endpoint}): agreement "
              f"{record.agreement:.1%} and Cohen's kappa {record.kappa:.3f} on {record.items} labelled pairs "
              f"({record.unparsed} unparsed) -> {path}")
        print(f"calibrated: its score may gate (kappa at least {args.min_kappa:g})" if accepted else
              f"calibration refused: kappa {record.kappa:.3f} below {args.min_kappa:g}: its score is reported but "
              "does not gate")
    return EXIT_OK if accepted else EXIT_FAILED


def _add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge-model", help="the model name sent to the judge (default: the server's own)")
    parser.add_argument("--judge-spec", default="pairwise-v1",
                        help="the judge's versioned prompt file: a name in llmops/release/judges or a .yaml path")
    parser.add_argument("--judge-timeout", type=float, default=30.0, help="seconds per judge request (default 30)")
    parser.add_argument("--calibrations", metavar="DIR",
                        help=f"judge calibration records (default ${CALIBRATIONS_ENV} or ~/.llmops/judge-calibrations)")
    parser.add_argument("--output", choices=("text", "json"), default="text")


def add_shadow_parsers(sub: Any) -> None:
    compare = sub.add_parser(
        "compare", help="compare a shadow release with the primary on the same requests; exit 0 promotable, "
                        "1 refuse promotion, 2 bad input, 5 metrics not pushed",
        description="Join the window's shadow request-log records with the primary's (stable or canary) by request "
                    "id; report tokens, latency, refusals and an optional judge's win rate; gate on the model's "
                    "rollout.shadow limits. Numbers only: no prompt or answer text is printed or pushed.")
    compare.add_argument("--env", required=True, help="the environment (its targets file names the stack file)")
    compare.add_argument("--model", required=True, help="the model whose shadow release is compared")
    compare.add_argument("--window", required=True, help="how far back from --end: 30m, 1h, 2d")
    compare.add_argument("--end", type=_instant, help="the window's end: epoch seconds or ISO 8601 (default: now)")
    compare.add_argument("--from", dest="from_", metavar="LOCATION",
                         help="request logs: s3://bucket/prefix/, a directory or a file (default: the targets "
                              "file's drift.logs)")
    compare.add_argument("--judge", metavar="URL", help="an OpenAI-compatible server to judge a sample of pairs")
    compare.add_argument("--sample", type=int, default=100, help="pairs the judge sees (seeded sample; default 100)")
    compare.add_argument("--seed", type=int, default=0, help="the sample's and the answer order's seed (default 0)")
    compare.add_argument("--refusal-spec", default="refusal-v1", help="the refusal pattern file (name or .yaml path)")
    compare.add_argument("--pushgateway", metavar="URL", help="push the llmops_shadow_* metrics here")
    compare.add_argument("--show-metrics", action="store_true", help="print the metrics exposition as pushed")
    _add_judge_arguments(compare)
    compare.set_defaults(handler=_compare)
    calibrate = sub.add_parser(
        "calibrate-judge", help="measure a judge's agreement with people's verdicts; record it for compare "
                                "(exit 0 calibrated, 1 refused, 2 bad input)")
    calibrate.add_argument("--judge", required=True, metavar="URL", help="the OpenAI-compatible server")
    calibrate.add_argument("--labelled", metavar="FILE",
                           help="pairs with people's verdicts, JSON lines (default: the judge spec's own set)")
    calibrate.add_argument("--min-kappa", type=float, default=0.6,
                           help="Cohen's kappa at least this calibrates (default 0.6; compare applies the model's "
                                "rollout.shadow.minJudgeKappa)")
    _add_judge_arguments(calibrate)
    calibrate.set_defaults(handler=_calibrate)
