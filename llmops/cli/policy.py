"""`llmops policy check|config`: the CrossGuard policy pack over each stack's offline plan, with the engine's
enforcement semantics, and the pack config a stack gives `pulumi preview --policy-pack-config`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from llmops.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from llmops.cli.programs import checked, evaluate, pack_config, program_arguments, stack_settings


def _policy_check(args: argparse.Namespace) -> int:
    from llmops.offline.worker import Worker
    from llmops.policy.checks import PlanChecks
    from llmops.policy.report import as_json, sarif, text

    with Worker(jobs=args.jobs) as worker:  # it starts Python and imports Pulumi while the stacks are read
        project, settings = stack_settings(args)
        worker.load(project, settings)  # it loads the libraries the program names while the configs are read
        # A bad config: exit 2 before any program runs.
        pack_configs = {stack.name: pack_config(args, stack) for stack in settings}
        worker.start(PlanChecks(pack_configs=pack_configs))
        violations, resources = [], {}
        for stack in settings:
            plan = evaluate(worker, stack, args.timeout)
            violations.extend(checked(worker, stack).policy_violations)
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
    config, _ = pack_config(args, settings[0])
    print(json.dumps(config, indent=2, sort_keys=True))
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
