"""`llmops preview`: evaluate stack programs offline under Pulumi's mock engine and show what they declare;
optionally write the plan as JSON, render every Kubernetes object, and validate them against their schemas."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from llmops.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from llmops.cli.programs import check_output, ctrl_c_deferred, evaluate, program_arguments, stack_settings, write_atomically


def _preview(args: argparse.Namespace) -> int:
    from llmops.offline.render import render
    from llmops.offline.report import summarize
    from llmops.offline.validate import validate_plan
    from llmops.offline.worker import Worker

    project, settings = stack_settings(args)
    for stack in settings if args.json else []:
        check_output(f"--json {args.json}", _json_path(args.json, stack.name, several=len(settings) > 1), "file")
    if args.render:
        check_output(f"--render {args.render}", Path(args.render), "directory")
    failed = False
    with Worker(project, settings) as worker:
        for stack in settings:
            plan = evaluate(worker, stack, args.timeout)
            with ctrl_c_deferred():
                print(summarize(plan))
                try:
                    if args.json:
                        path = _json_path(args.json, stack.name, several=len(settings) > 1)
                        write_atomically(path, plan.dumps() + "\n")
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


def _json_path(template: str, stack: str, several: bool) -> Path:
    if "{stack}" in template:
        return Path(template.replace("{stack}", stack))
    path = Path(template)
    return path.with_name(f"{path.stem}.{stack}{path.suffix}") if several else path


def add_parsers(commands: Any) -> None:
    preview = commands.add_parser(
        "preview", help="evaluate stack programs offline under Pulumi's mock engine and show what they declare",
        description="Run the real stack program with the real stack config under Pulumi's mock engine "
                    "(no CLI, no cloud credentials, no network) and summarize every resource it declares.")
    preview.add_argument("--stack", action="append", metavar="NAME",
                         help="stack to preview (repeatable); default: every Pulumi.<stack>.yaml of the program")
    preview.add_argument("--json", metavar="FILE",
                         help="write the plan as JSON (secrets masked); with several stacks, FILE may contain {stack}")
    preview.add_argument("--render", metavar="DIR", help="write every Kubernetes object as YAML under DIR/<stack>/")
    preview.add_argument("--validate", action="store_true",
                         help="validate every Kubernetes object against its schema (strict); exit 1 on a violation")
    program_arguments(preview)
    preview.set_defaults(handler=_preview)
