"""`llmops policy check|config`: the CrossGuard policy pack over each stack's offline plan, with the engine's
enforcement semantics, and the pack config a stack gives `pulumi preview --policy-pack-config`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from llmops.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from llmops.cli.programs import evaluate, program_arguments, stack_settings


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

    project, settings = stack_settings(args)
    pack_configs = [_pack_config(args, stack) for stack in settings]  # bad config: exit 2 before any program runs
    violations, resources = [], {}
    with Worker(project, settings) as worker:
        for stack, (pack_config, source) in zip(settings, pack_configs, strict=True):
            plan = evaluate(worker, stack, args.timeout)
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
    project, settings = stack_settings(args)
    if len(settings) != 1:
        raise UsageError("policy config: name exactly one stack with --stack")
    pack_config, _ = _pack_config(args, settings[0])
    print(json.dumps(pack_config, indent=2, sort_keys=True))
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    policy = commands.add_parser("policy", help="the CrossGuard policy pack, offline").add_subparsers(
        dest="policy_command", required=True)
    check = policy.add_parser(
        "check", help="run the policy pack over the offline plan of each stack",
        description="Evaluate each stack offline and run the policy pack (policies/) over its plan with the engine's "
                    "enforcement semantics. Exit 1 on any mandatory violation, 0 otherwise, 2 on bad usage.")
    check.add_argument("--stack", action="append", metavar="NAME", help="stack to check (repeatable); default: all")
    check.add_argument("--policy-config", metavar="FILE",
                       help="a --policy-pack-config JSON file; default: this project's stack config, else the pack's levels")
    check.add_argument("--output", choices=("text", "json", "sarif"), default="text")
    program_arguments(check)
    check.set_defaults(handler=_policy_check)
    show = policy.add_parser("config", help="print a stack's policy pack config for `pulumi preview --policy-pack-config`")
    show.add_argument("--stack", action="append", metavar="NAME", required=True)
    show.add_argument("--policy-config", metavar="FILE", help=argparse.SUPPRESS)
    program_arguments(show, timeout=False)
    show.set_defaults(handler=_policy_config)
