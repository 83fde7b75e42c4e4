"""`llmops`: one command line for the stack, its policies and its runbooks -- the top layer: nothing imports it.

Thin by design: each command's module parses its arguments, calls a library or the runbook engine, and
formats the result. Exit codes: 0 success, 1 a failed check, 2 bad usage or bad input (nothing was changed),
3 a runbook paused at a step that needs its own approval (resume it with --resume RUN_ID --approve HASH),
130 interrupted (Ctrl-C); `llmops pii scan` adds 4 (some inputs could not be scanned) and 5 (metrics not
pushed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from llmops.cli import drift, drill, pii, policy, preview, release, retrieval, runbook
from llmops.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, ProgramFailed, UsageError


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    preview.add_parsers(commands)
    policy.add_parsers(commands)
    words = sys.argv[1:] if argv is None else list(argv)
    if not words or words[0] in ("runbook", "-h", "--help"):
        runbook.add_parsers(commands)  # imports the runbook definitions: only when they are asked for
    else:
        commands.add_parser("runbook", help="executable on-call runbooks")
    pii.add_parsers(commands)
    retrieval.add_parsers(commands)
    release.add_parsers(commands)
    drift.add_parsers(commands)
    drill.add_parsers(commands)
    return parser


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


__all__ = ["build_parser", "main"]
