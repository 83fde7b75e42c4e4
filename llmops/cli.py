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
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """Bad usage or input: exit 2."""


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


def _evaluate(project: Any, stack: Any) -> Any:
    from llmops.offline.engine import DuplicateUrnError, ProgramError, run_program

    try:
        return run_program(project, stack)
    except ProgramError as error:
        if error.user_error:
            raise UsageError(f"stack {stack.name}: {error}") from None
        raise ProgramFailed(f"stack {stack.name}: the program failed: {error}") from None
    except DuplicateUrnError as error:
        raise ProgramFailed(str(error)) from None


def _preview(args: argparse.Namespace) -> int:
    from llmops.offline.render import render
    from llmops.offline.report import summarize
    from llmops.offline.validate import validate_plan

    project, settings = _stack_settings(args)
    failed = False
    for stack in settings:
        plan = _evaluate(project, stack)
        print(summarize(plan))
        if args.json:
            path = _json_path(args.json, stack.name, several=len(settings) > 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(plan.dumps() + "\n")
            print(f"  plan written to {path}")
        if args.render:
            files = render(plan, args.render)
            print(f"  {len(files)} files (Kubernetes manifests and rule files) written under {Path(args.render) / plan.stack}")
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
    from llmops.policy.report import as_json, sarif, text
    from llmops.policy.runner import PolicyConfigError, check_plan

    project, settings = _stack_settings(args)
    violations, resources = [], {}
    for stack in settings:
        pack_config, source = _pack_config(args, stack)
        plan = _evaluate(project, stack)
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
    check.set_defaults(handler=_policy_check)
    show = policy.add_parser("config", help="print a stack's policy pack config for `pulumi preview --policy-pack-config`")
    show.add_argument("--stack", action="append", metavar="NAME", required=True)
    show.add_argument("--program", default=str(PROJECT_ROOT), metavar="DIR")
    show.add_argument("--policy-config", metavar="FILE", help=argparse.SUPPRESS)
    show.set_defaults(handler=_policy_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"llmops: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ProgramFailed as error:
        print(f"llmops: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
