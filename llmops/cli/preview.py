"""`llmops preview`: evaluate stack programs offline under Pulumi's mock engine and show what they declare;
optionally write the plan as JSON, render every Kubernetes object, validate them against their schemas, and run
the policy pack over the same plans (what `llmops policy check` reports, without evaluating the stacks again)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from llmops.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from llmops.cli.programs import (
    check_output,
    checked,
    ctrl_c_deferred,
    evaluate,
    pack_config,
    program_arguments,
    stack_settings,
    write_atomically,
)


def _preview(args: argparse.Namespace) -> int:
    from llmops.offline.worker import Worker

    began = time.monotonic()
    if args.policy_config and not args.policy:
        raise UsageError("--policy-config: only with --policy")
    with Worker(jobs=args.jobs) as worker:  # it starts Python and imports Pulumi while the stacks are read
        project, settings = stack_settings(args)
        for stack in settings if args.json else []:
            check_output(f"--json {args.json}", _json_path(args.json, stack.name, several=len(settings) > 1), "file")
        if args.render:
            check_output(f"--render {args.render}", Path(args.render), "directory")
        if args.report:
            check_output(f"--report {args.report}", Path(args.report), "file")
        worker.load(project, settings)  # it loads the libraries the program names while the policy configs are read
        if args.validate or args.policy:
            from llmops.policy.checks import PlanChecks

            # A bad policy config: exit 2 before any program runs.
            pack_configs = {stack.name: pack_config(args, stack) for stack in settings} if args.policy else {}
            worker.start(PlanChecks(validate=args.validate, pack_configs=pack_configs))
        stacks, violations, failed = _plan_stacks(args, worker, settings)
    if args.policy:
        from llmops.policy.report import text

        print("policy check:")
        print(text(violations, {entry["stack"]: entry["resources"] for entry in stacks}))
        failed = failed or any(v.enforcement == "mandatory" for v in violations)
    code = EXIT_FAILED if failed else EXIT_OK
    if args.report:
        report = {"project": project.name, "program": str(project.directory), "stacks": stacks, "exit_code": code,
                  "seconds": round(time.monotonic() - began, 2)}
        with ctrl_c_deferred():
            try:
                write_atomically(Path(args.report), json.dumps(report, indent=2) + "\n")
            except OSError as error:
                raise UsageError(f"{args.report}: cannot write ({error.strerror or error})") from None
    return code


def _plan_stacks(args: argparse.Namespace, worker: Any, settings: list[Any]) -> tuple[list[dict[str, Any]], list[Any], bool]:
    """Each stack's plan in order: its summary, files and checks. Returns the report's entries, the policy
    violations and whether an object failed its schema."""
    from llmops.offline.render import render
    from llmops.offline.report import summarize

    failed = False
    stacks: list[dict[str, Any]] = []
    violations: list[Any] = []
    for stack in settings:
        plan = evaluate(worker, stack, args.timeout)
        entry: dict[str, Any] = {"stack": stack.name, "resources": len(plan.resources),
                                 "kubernetes_objects": len(plan.kubernetes_objects()), "plan": None,
                                 "manifests": None, "schema_violations": None, "policy": None}
        with ctrl_c_deferred():
            print(summarize(plan))
            try:
                if args.json:
                    path = _json_path(args.json, stack.name, several=len(settings) > 1)
                    write_atomically(path, plan.dumps() + "\n")
                    print(f"  plan written to {path}")
                    entry["plan"] = str(path)
                if args.render:
                    files = render(plan, args.render)
                    print(f"  {len(files)} files (Kubernetes manifests and rule files) written under "
                          f"{Path(args.render) / plan.stack}")
                    entry["manifests"] = str(Path(args.render) / plan.stack)
            except OSError as error:  # what the checks above cannot see (permissions, a full disk)
                where = error.filename or args.json or args.render
                raise UsageError(f"{where}: cannot write ({error.strerror or error})") from None
        if args.validate or args.policy:
            results = checked(worker, stack)
            if results.schema_violations is not None:
                failed = _print_validation(results) or failed
                entry["schema_violations"] = len(results.schema_violations)
            if results.policy_violations is not None:
                violations.extend(results.policy_violations)
                entry["policy"] = _policy_counts(results.policy_violations)
        stacks.append(entry)
        print()
    return stacks, violations, failed


def _print_validation(results: Any) -> bool:
    """Print the schema validation's outcome; True if an object is invalid."""
    objects, violations = results.kubernetes_objects, results.schema_violations
    if violations:
        print(f"  schema validation: {len(violations)} violation(s) in {objects} objects", file=sys.stderr)
        for violation in violations:
            print(f"    {violation}", file=sys.stderr)
        return True
    print(f"  schema validation: {objects} Kubernetes objects valid (strict)")
    return False


def _policy_counts(violations: list[Any]) -> dict[str, int]:
    from policies.pack import POLICIES

    counts = {"policies": len(POLICIES), "mandatory": 0, "advisory": 0}
    for violation in violations:
        counts[violation.enforcement] = counts.get(violation.enforcement, 0) + 1
    return counts


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
    preview.add_argument("--policy", action="store_true",
                         help="also run the policy pack over each plan, as `llmops policy check` does (text report); "
                              "exit 1 on a mandatory violation")
    preview.add_argument("--policy-config", metavar="FILE",
                         help="with --policy: a --policy-pack-config JSON file; default: this project's stack config, "
                              "else the pack's levels")
    preview.add_argument("--report", metavar="FILE",
                         help="write a JSON summary: per stack resources, Kubernetes objects, schema violations, "
                              "policy violations, and the files written")
    program_arguments(preview)
    preview.set_defaults(handler=_preview)
