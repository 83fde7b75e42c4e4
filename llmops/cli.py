"""`llmops`: one command line for the stack, its policies and its runbooks.

Thin by design: parse arguments, call a library function, format the result.
Exit codes: 0 success, 1 a failed check, 2 bad usage or bad input (nothing was changed),
3 a runbook paused at a step that needs its own approval (resume it with --resume RUN_ID --approve HASH),
130 `preview` or `policy check` interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llmops.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Seconds a stack's program may run under the mock engine: our largest stack needs a few; a program that
# takes minutes is stuck (waiting on a network it will never reach, or looping), not slow.
DEFAULT_TIMEOUT = 300.0


class ProgramFailed(Exception):
    """The program under evaluation crashed or declared duplicate URNs: exit 1."""


def _stack_settings(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from llmops.offline.project import ProjectError, load_project, load_stack

    try:
        project = load_project(args.program)
        stacks = args.stack or project.stacks()
        if not stacks:
            raise UsageError(f"{project.stack_config_dir}: no Pulumi.<stack>.yaml files; name a stack with --stack")
        return project, [load_stack(project, name) for name in stacks]
    except ProjectError as error:
        raise UsageError(str(error)) from None


def _evaluate(worker: Any, stack: Any, timeout: float) -> Any:
    """The stack's plan from the worker; its program's failure as exit 2 (its own error) or 1 (a crash, a hang)."""
    from llmops.offline.errors import DuplicateUrnError, EvaluationTimeout, ProgramError

    try:
        return worker.plan(stack, timeout)
    except ProgramError as error:
        if error.user_error:
            raise UsageError(f"stack {stack.name}: {error}") from None
        raise ProgramFailed(f"stack {stack.name}: the program failed: {error}") from None
    except DuplicateUrnError as error:
        raise ProgramFailed(str(error)) from None
    except EvaluationTimeout as error:
        raise ProgramFailed(f"{error} (--timeout {timeout:g}); it was stopped") from None


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds, a number >= 0 (0: no limit); got {text!r}")
    return value


def _check_output(option: str, path: Path, kind: str) -> None:
    """Refuse, before any program runs, an output path that cannot be written: a directory where the plan JSON
    goes, or a file where a directory must be (the path itself for --render, or any parent)."""
    if kind == "file" and path.is_dir():
        raise UsageError(f"{option}: a directory; expected a file path for the plan JSON")
    for parent in ([path] if kind == "directory" else []) + list(path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option}: {parent} is a file; expected a directory")
            return


def _write_atomically(path: Path, text: str) -> None:
    """Write `path` so that it is never seen half-written: a scratch file beside it, then a rename."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(descriptor, 0o666 & ~umask)  # as a plain write would have made it
        with os.fdopen(descriptor, "w") as stream:
            stream.write(text)
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Ctrl-C waits until the files being written are complete; it is delivered (KeyboardInterrupt) right after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # handlers can be changed only from the main thread, and restored only if set from Python
        return
    # A handler that only takes note, not a blocked signal mask: with other threads in the process (seen in a test
    # run) the kernel hands a blocked SIGINT to one of them, and Python raises it in the main thread anyway,
    # whenever it next checks -- possibly in the middle of a file.
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # now, to the handler it had (KeyboardInterrupt unless changed)


def _preview(args: argparse.Namespace) -> int:
    from llmops.offline.render import render
    from llmops.offline.report import summarize
    from llmops.offline.validate import validate_plan
    from llmops.offline.worker import Worker

    project, settings = _stack_settings(args)
    for stack in settings if args.json else []:
        _check_output(f"--json {args.json}", _json_path(args.json, stack.name, several=len(settings) > 1), "file")
    if args.render:
        _check_output(f"--render {args.render}", Path(args.render), "directory")
    failed = False
    with Worker(project, settings) as worker:
        for stack in settings:
            plan = _evaluate(worker, stack, args.timeout)
            with _ctrl_c_deferred():
                print(summarize(plan))
                try:
                    if args.json:
                        path = _json_path(args.json, stack.name, several=len(settings) > 1)
                        _write_atomically(path, plan.dumps() + "\n")
                        print(f"  plan written to {path}")
                    if args.render:
                        files = render(plan, args.render)
                        print(f"  {len(files)} files (Kubernetes manifests and rule files) written under "
                              f"{Path(args.render) / plan.stack}")
                except OSError as error:  # what the checks above cannot see (permissions, a full disk)
                    where = error.filename or args.json or args.render
                    raise UsageError(f"{where}: cannot write ({error.strerror or error})") from None
            if args.validate:
                violations = validate_plan(plan)
                objects = len(plan.kubernetes_objects())
                if violations:
                    failed = True
                    print(f"  schema validation: {len(violations)} violation(s) in {objects} objects", file=sys.stderr)
                    for violation in violations:
                        print(f"    {violation}", file=sys.stderr)
                else:
                    print(f"  schema validation: {objects} Kubernetes objects valid (strict)")
            print()
    return EXIT_FAILED if failed else EXIT_OK


def _pack_config(args: argparse.Namespace, stack: Any) -> tuple[dict, str]:
    from components.config import ConfigError
    from llmops.policy.runner import PolicyConfigError
    from llmops.policy.settings import is_llmops_stack, load_pack_config, pack_config_for_stack

    if args.policy_config:
        try:
            return load_pack_config(args.policy_config), str(args.policy_config)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if is_llmops_stack(stack):
        try:
            return pack_config_for_stack(stack), str(stack.file)
        except ConfigError as error:
            raise UsageError(f"stack {stack.name}: invalid stack config:\n{error}") from None
        except PolicyConfigError as error:
            raise UsageError(str(error)) from None
    return {}, "the pack's defaults"


def _policy_check(args: argparse.Namespace) -> int:
    from llmops.offline.worker import Worker
    from llmops.policy.report import as_json, sarif, text
    from llmops.policy.runner import PolicyConfigError, check_plan

    project, settings = _stack_settings(args)
    pack_configs = [_pack_config(args, stack) for stack in settings]  # bad config: exit 2 before any program runs
    violations, resources = [], {}
    with Worker(project, settings) as worker:
        for stack, (pack_config, source) in zip(settings, pack_configs):
            plan = _evaluate(worker, stack, args.timeout)
            try:
                violations.extend(check_plan(plan, pack_config, source))
            except PolicyConfigError as error:
                raise UsageError(str(error)) from None
            resources[stack.name] = len(plan.resources)
    if args.output == "json":
        print(as_json(violations))
    elif args.output == "sarif":
        root = project.directory
        files = {s.name: str(s.file.relative_to(root)) if s.file.is_relative_to(root) else str(s.file) for s in settings}
        print(sarif(violations, files))
    else:
        print(text(violations, resources))
    return EXIT_FAILED if any(v.enforcement == "mandatory" for v in violations) else EXIT_OK


def _policy_config(args: argparse.Namespace) -> int:
    project, settings = _stack_settings(args)
    if len(settings) != 1:
        raise UsageError("policy config: name exactly one stack with --stack")
    pack_config, _ = _pack_config(args, settings[0])
    print(json.dumps(pack_config, indent=2, sort_keys=True))
    return EXIT_OK


def _runbook_list(args: argparse.Namespace) -> int:
    from runbooks.catalog import load_catalog
    from runbooks.definitions import RUNBOOKS

    for entry in load_catalog().values():
        status = "executable" if entry.name in RUNBOOKS else "documented"
        print(f"{entry.name:<14} {status:<11} {entry.title}")
    return EXIT_OK


def _runbook_show(args: argparse.Namespace) -> int:
    from runbooks.docs import rendered_pages

    pages = {path.stem: text for path, text in rendered_pages().items()}
    if args.name not in pages:
        raise UsageError(f"no runbook {args.name!r}; runbooks: {', '.join(pages)}")
    print(pages[args.name], end="")
    return EXIT_OK


def _runbook_pages(args: argparse.Namespace) -> int:
    from runbooks.docs import stale_pages, write_pages

    if args.check:
        stale = stale_pages()
        for path in stale:
            print(f"stale: {path} (run `llmops runbook pages`)", file=sys.stderr)
        return EXIT_FAILED if stale else EXIT_OK
    for path in write_pages():
        print(f"wrote {path}")
    return EXIT_OK


def _runbook_run(args: argparse.Namespace) -> int:
    from runbooks.definitions import RUNBOOKS
    from runbooks.engine import Interrupted, RunbookError
    from runbooks.engine.runner import RunOptions, signals_interrupt
    from runbooks.launch import launch

    raw = {p.name: getattr(args, p.name, None) for p in RUNBOOKS[args.runbook].params}
    interactive = sys.stdin.isatty() and args.output == "text"
    options = RunOptions(dry_run=args.dry_run, yes=args.yes, approve=args.approve, resume=args.resume,
                         ask=(lambda prompt: input(prompt)) if interactive else None)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def refused(status: str, message: str, code: int) -> int:
        if args.output == "json":
            print(json.dumps({"status": status, "error": message}))
        print(f"llmops: {args.runbook}: {message}", file=sys.stderr)
        return code

    try:
        with signals_interrupt():
            result = launch(args.runbook, args.env, raw, options, progress)
    except RunbookError as error:
        return refused("refused" if error.exit_code == 2 else "failed", str(error), error.exit_code)
    except Interrupted as stop:  # before the run was journaled
        return refused("interrupted", f"interrupted by {stop.name} before the run started; nothing was changed",
                       stop.exit_code)
    except Exception as error:  # noqa: BLE001 - an adapter's surprise: one clear line, the traceback on request
        if os.environ.get("LLMOPS_DEBUG"):
            raise
        return refused("failed", f"unexpected {type(error).__name__}: {error}. If a run id was printed above, its "
                       "journal records what was done: resume it with --resume. (LLMOPS_DEBUG=1 shows the traceback)",
                       EXIT_FAILED)
    if args.output == "json":
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(result.plan.render())
        if result.status == "planned":
            print(f"dry run: nothing was changed. To apply exactly this plan: --approve {result.plan.hash}")
        else:
            for step in result.steps:
                print(f"  {step['step']}: {step['outcome']}")
            print(f"run {result.run_id}: {result.status}"
                  + (f"; evidence: {result.evidence_key}" if result.evidence_key else ""))
            if result.error:
                print(f"  {result.error}", file=sys.stderr)
    return result.exit_code


def _name_option(parse: Any) -> Any:
    """An argparse type from one of the runbooks' parsers: a bad value is exit 2 naming the option."""
    def check(value: str) -> str:
        try:
            return str(parse(value))
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{value!r}: {error}") from None
    return check


def _runbook_targets(args: argparse.Namespace) -> int:
    import yaml

    from components import config as stack_config
    from runbooks.targets import targets_from_outputs

    stack_file = PROJECT_ROOT / "stacks" / f"Pulumi.{args.stack}.yaml"
    try:
        cfg = stack_config.load_file(stack_file)
        outputs = json.loads(Path(args.outputs).read_text())
        document = targets_from_outputs(cfg.environment, outputs, stack_file=f"stacks/{stack_file.name}",
                                        prometheus_url=cfg.serving.prometheus_url)
    except stack_config.ConfigError as error:
        raise UsageError(str(error)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise UsageError(f"{args.outputs}: not the stack's outputs (pulumi stack output --json): {error!r}") from None
    text = yaml.safe_dump(document, sort_keys=False)
    if args.out:
        out = Path(args.out)
        scratch = out.with_name(f".{out.name}.tmp")
        try:
            scratch.write_text(text)
            os.replace(scratch, out)
        except OSError as error:
            scratch.unlink(missing_ok=True)
            raise UsageError(f"--out {args.out}: cannot write it: {error.strerror or error}") from None
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return EXIT_OK


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


def _json_path(template: str, stack: str, several: bool) -> Path:
    if "{stack}" in template:
        return Path(template.replace("{stack}", stack))
    path = Path(template)
    return path.with_name(f"{path.stem}.{stack}{path.suffix}") if several else path


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    preview = commands.add_parser(
        "preview", help="evaluate stack programs offline under Pulumi's mock engine and show what they declare",
        description="Run the real stack program with the real stack config under Pulumi's mock engine "
                    "(no CLI, no cloud credentials, no network) and summarize every resource it declares.")
    preview.add_argument("--stack", action="append", metavar="NAME",
                         help="stack to preview (repeatable); default: every Pulumi.<stack>.yaml of the program")
    preview.add_argument("--program", default=str(PROJECT_ROOT), metavar="DIR",
                         help="Pulumi Python program directory (with Pulumi.yaml); default: this project")
    preview.add_argument("--json", metavar="FILE",
                         help="write the plan as JSON (secrets masked); with several stacks, FILE may contain {stack}")
    preview.add_argument("--render", metavar="DIR", help="write every Kubernetes object as YAML under DIR/<stack>/")
    preview.add_argument("--validate", action="store_true",
                         help="validate every Kubernetes object against its schema (strict); exit 1 on a violation")
    _timeout_argument(preview)
    preview.set_defaults(handler=_preview)

    policy = commands.add_parser("policy", help="the CrossGuard policy pack, offline").add_subparsers(
        dest="policy_command", required=True)
    check = policy.add_parser(
        "check", help="run the policy pack over the offline plan of each stack",
        description="Evaluate each stack offline and run the policy pack (policies/) over its plan with the engine's "
                    "enforcement semantics. Exit 1 on any mandatory violation, 0 otherwise, 2 on bad usage.")
    check.add_argument("--stack", action="append", metavar="NAME", help="stack to check (repeatable); default: all")
    check.add_argument("--program", default=str(PROJECT_ROOT), metavar="DIR", help="Pulumi Python program directory")
    check.add_argument("--policy-config", metavar="FILE",
                       help="a --policy-pack-config JSON file; default: this project's stack config, else the pack's levels")
    check.add_argument("--output", choices=("text", "json", "sarif"), default="text")
    _timeout_argument(check)
    check.set_defaults(handler=_policy_check)
    show = policy.add_parser("config", help="print a stack's policy pack config for `pulumi preview --policy-pack-config`")
    show.add_argument("--stack", action="append", metavar="NAME", required=True)
    show.add_argument("--program", default=str(PROJECT_ROOT), metavar="DIR")
    show.add_argument("--policy-config", metavar="FILE", help=argparse.SUPPRESS)
    show.set_defaults(handler=_policy_config)
    words = sys.argv[1:] if argv is None else list(argv)
    if not words or words[0] in ("runbook", "-h", "--help"):
        _runbook_parsers(commands)  # imports the runbook definitions: only when they are asked for
    else:
        commands.add_parser("runbook", help="executable on-call runbooks")
    from llmops.pii.cli import add_parsers as pii_parsers

    pii_parsers(commands)
    from llmops.retrieval.cli import add_parsers as retrieval_parsers

    retrieval_parsers(commands)
    drill = commands.add_parser("drill", help="on-call drills on real local backends").add_subparsers(
        dest="drill", required=True)
    rollback_drill = drill.add_parser(
        "rollback", help="a bad release is live; run the rollback runbook against local backends "
                         "(needs the dev extra and Debian's prometheus, prometheus-pushgateway)")
    rollback_drill.add_argument("--keep", action="store_true",
                                help="keep the drill's directory (evidence, audit log, pinned stack file) afterwards")
    rollback_drill.set_defaults(handler=_drill_rollback)
    return parser


def _timeout_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"stop a stack's program that has not finished after SECONDS and exit 1 "
                             f"(default {DEFAULT_TIMEOUT:g}; 0: no limit)")


def _runbook_parsers(commands: Any) -> None:
    from runbooks.definitions import RUNBOOKS
    from runbooks.engine.runner import run_id
    from runbooks.targets import environment_name

    runbook = commands.add_parser("runbook", help="executable on-call runbooks").add_subparsers(
        dest="runbook_command", required=True)
    runbook.add_parser("list", help="the runbook catalog").set_defaults(handler=_runbook_list)
    show = runbook.add_parser("show", help="a runbook's page (Markdown rendered from its definition)")
    show.add_argument("name")
    show.set_defaults(handler=_runbook_show)
    pages = runbook.add_parser("pages", help="render runbooks/pages/*.md from the definitions")
    pages.add_argument("--check", action="store_true", help="exit 1 if a committed page is stale")
    pages.set_defaults(handler=_runbook_pages)
    targets = runbook.add_parser("targets", help="write an environment's targets file from the stack's outputs")
    targets.add_argument("--stack", required=True, help="the stack (its file gives the environment and Prometheus URL)")
    targets.add_argument("--outputs", required=True, metavar="FILE", help="`pulumi stack output --json -s STACK` saved to a file")
    targets.add_argument("--out", metavar="FILE", help="where to write (default: stdout), e.g. stacks/targets/prod.yaml")
    targets.set_defaults(handler=_runbook_targets)
    run = runbook.add_parser("run", help="run a runbook").add_subparsers(dest="runbook", required=True)
    for name, definition in RUNBOOKS.items():
        parser = run.add_parser(name, help=definition.title, description=definition.summary)
        parser.add_argument("--env", required=True, type=_name_option(environment_name),
                            help="environment (stacks/targets/<env>.yaml)")
        for param in definition.params:
            if param.switch:
                parser.add_argument(param.option, dest=param.name, action="store_const", const="yes", help=param.help)
            else:
                parser.add_argument(param.option, dest=param.name, metavar=param.name.upper(), help=param.help)
        parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
        parser.add_argument("--yes", action="store_true", help="approve the plan shown")
        parser.add_argument("--approve", metavar="HASH",
                            help="approve only if the plan still has this hash; with --resume, the hash of the step "
                                 "the run paused at (a step that needs its own approval)")
        parser.add_argument("--resume", metavar="RUN_ID", type=_name_option(run_id),
                            help="resume a run that stopped (crash, kill, Ctrl-C)")
        parser.add_argument("--output", choices=("text", "json"), default="text")
        parser.set_defaults(handler=_runbook_run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        # Every command writes its files whole or not at all (scratch file, then rename); a program under
        # evaluation ran in a worker, which is stopped; a runbook journals where it stopped (the engine says how
        # to resume). Nothing more to say than this.
        print("llmops: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as error:
        print(f"llmops: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ProgramFailed as error:
        print(f"llmops: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `llmops ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
