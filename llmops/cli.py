"""`llmops`: one command line for the stack, its policies and its runbooks.

Thin by design: parse arguments, call a library function, format the result.
Exit codes: 0 success, 1 a failed check, 2 bad usage or bad input (nothing was changed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """Bad usage or input: exit 2."""


def _preview(args: argparse.Namespace) -> int:
    from llmops.offline.engine import DuplicateUrnError, ProgramError, run_program
    from llmops.offline.project import ProjectError, load_project, load_stack
    from llmops.offline.render import render
    from llmops.offline.report import summarize
    from llmops.offline.validate import validate_plan

    try:
        project = load_project(args.program)
        stacks = args.stack or project.stacks()
        if not stacks:
            raise UsageError(f"{project.stack_config_dir}: no Pulumi.<stack>.yaml files; name a stack with --stack")
        settings = [load_stack(project, name) for name in stacks]
    except ProjectError as error:
        raise UsageError(str(error)) from None

    failed = False
    for stack in settings:
        try:
            plan = run_program(project, stack)
        except ProgramError as error:
            if error.user_error:
                raise UsageError(f"stack {stack.name}: {error}") from None
            print(f"stack {stack.name}: the program failed: {error}", file=sys.stderr)
            return EXIT_FAILED
        except DuplicateUrnError as error:
            print(str(error), file=sys.stderr)
            return EXIT_FAILED
        print(summarize(plan))
        if args.json:
            path = _json_path(args.json, stack.name, several=len(settings) > 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(plan.dumps() + "\n")
            print(f"  plan written to {path}")
        if args.render:
            files = render(plan, args.render)
            print(f"  {len(files)} Kubernetes manifests written under {Path(args.render) / plan.stack}")
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


def build_parser() -> argparse.ArgumentParser:
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
    preview.set_defaults(handler=_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"llmops: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
