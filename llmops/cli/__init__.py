"""`llmops`: one command line for the stack, its policies and its runbooks -- the top layer: nothing imports it.

Thin by design: each command's module parses its arguments, calls a library or the runbook engine, and
formats the result. Exit codes: 0 success, 1 a failed check, 2 bad usage or bad input (nothing was changed),
3 a runbook paused at a step that needs its own approval (resume it with --resume RUN_ID --approve HASH),
130 interrupted (Ctrl-C); `llmops pii scan` adds 4 (some inputs could not be scanned) and 5 (metrics not
pushed).

Third-party libraries log at WARNING and above only; `llmops --verbose` (or LLMOPS_VERBOSE=1) keeps their INFO lines.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
from collections.abc import Sequence

from llmops.cli import drift, drill, pii, policy, preview, release, retrieval, runbook, sandbox
from llmops.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, ProgramFailed, UsageError

VERBOSE_ENV = "LLMOPS_VERBOSE"
# Libraries whose INFO lines are not on-call's business: MLflow creating and upgrading its tables, alembic's
# migration context, botocore's credential lookup, urllib3's retries, the Kubernetes client, httpx's request lines
# under the Qdrant client, werkzeug's access log. WARNING and above still show; our own loggers (llmops.*,
# runbooks.*) and the root logger are left alone.
THIRD_PARTY_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "botocore", "boto3", "s3transfer", "urllib3", "requests",
                       "kubernetes", "qdrant_client", "httpx", "httpcore", "werkzeug", "huey")


def verbose_from_environment() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def configure_logging(verbose: bool) -> None:
    """Quiet third-party loggers (WARNING+) unless verbose. Verbose leaves every logger as its library configures it
    and exports LLMOPS_VERBOSE=1, so that the commands this one starts (drills start llmops) keep their lines too."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return
    # MLflow sets its loggers' level (INFO by default) from this variable when it is first imported, which the
    # commands do lazily, after this: the variable covers that import, setLevel below one that already happened.
    # A level the user chose for MLflow is theirs.
    mlflow_chosen = "MLFLOW_LOGGING_LEVEL" in os.environ
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in THIRD_PARTY_LOGGERS:
        if not (name == "mlflow" and mlflow_chosen):
            logging.getLogger(name).setLevel(logging.WARNING)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help=f"keep third-party libraries' log lines (MLflow, alembic, botocore, ...); also {VERBOSE_ENV}=1")
    commands = parser.add_subparsers(dest="command", required=True)
    preview.add_parsers(commands)
    policy.add_parsers(commands)
    words = sys.argv[1:] if argv is None else list(argv)
    options = list(itertools.takewhile(lambda word: word.startswith("-"), words))  # global ones: -v, -h
    command = words[len(options)] if len(words) > len(options) else None
    if command in (None, "runbook") or {"-h", "--help"} & set(options):
        runbook.add_parsers(commands)  # imports the runbook definitions: only when they are asked for
    else:
        commands.add_parser("runbook", help="executable on-call runbooks")
    pii.add_parsers(commands)
    retrieval.add_parsers(commands)
    release.add_parsers(commands)
    drift.add_parsers(commands)
    drill.add_parsers(commands)
    sandbox.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    configure_logging(args.verbose or verbose_from_environment())
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


__all__ = ["THIRD_PARTY_LOGGERS", "build_parser", "configure_logging", "main"]
