"""`llmops runbook list|show|pages|run|targets`: the on-call runbooks from the command line. Parsing builds one
subcommand per runbook from its typed parameters; everything else is the runbook engine's."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from components.paths import STACKS_DIR
from llmops.cli.errors import EXIT_FAILED, EXIT_OK, UsageError


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
    page = pages[args.name]
    if args.raw or not sys.stdout.isatty():
        # Piped or redirected (`> page.md`, `| grep`, a pager of one's own): the Markdown itself, byte for byte.
        sys.stdout.write(page)
        return EXIT_OK
    from rich.console import Console

    # rich decides the rest as the terminal allows: colour only where it is supported and NO_COLOR is unset, the
    # terminal's width for tables and text; crop=False lets a long command run past it (see _terminal_page).
    Console().print(_terminal_page(page), crop=False)
    return EXIT_OK


def _terminal_page(page: str) -> Any:
    """The page as rich renders Markdown, except code blocks: commands on-call copies into a shell, so rich neither
    wraps nor crops them (the terminal wraps a long line softly, and a copy of it is still one line) and draws no
    padded box around them (a copy has no stray spaces)."""
    from rich.markdown import CodeBlock, Markdown
    from rich.syntax import Syntax

    class CopyableCode(CodeBlock):
        def __rich_console__(self, console: Any, options: Any) -> Any:
            code = str(self.text).rstrip()
            text = Syntax(code, self.lexer_name, theme=self.theme, background_color="default").highlight(code)
            text.rstrip()
            text.no_wrap, text.overflow = True, "ignore"
            yield text

    class Page(Markdown):
        elements = {**Markdown.elements, "fence": CopyableCode, "code_block": CopyableCode}

    return Page(page, code_theme="ansi_dark")  # the terminal's own palette: readable on a light background too


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

    stack_file = STACKS_DIR / f"Pulumi.{args.stack}.yaml"
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



def add_parsers(commands: Any) -> None:
    from runbooks.definitions import RUNBOOKS
    from runbooks.engine.runner import run_id
    from runbooks.targets import environment_name

    runbook = commands.add_parser("runbook", help="executable on-call runbooks").add_subparsers(
        dest="runbook_command", required=True)
    runbook.add_parser("list", help="the runbook catalog").set_defaults(handler=_runbook_list)
    show = runbook.add_parser("show", help="a runbook's page (Markdown rendered from its definition)",
                              description="Print a runbook's page: formatted on a terminal, the Markdown itself when "
                                          "stdout is a pipe or a file.")
    show.add_argument("name")
    show.add_argument("--raw", action="store_true", help="the Markdown itself even on a terminal")
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

