"""Evaluating stack programs for `preview` and `policy check`: which stacks, the worker that runs them under the
mock engine with a time limit, and writing what comes out so that no file is ever seen half-written."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.paths import PROJECT_ROOT
from llmops.cli.errors import ProgramFailed, UsageError

# Seconds a stack's program may run under the mock engine: our largest stack needs a few; a program that
# takes minutes is stuck (waiting on a network it will never reach, or looping), not slow.
DEFAULT_TIMEOUT = 300.0


def program_arguments(parser: argparse.ArgumentParser, *, timeout: bool = True) -> None:
    """--stack, --program (and --timeout, --jobs): which program and stacks a command evaluates, and how."""
    parser.add_argument("--program", default=str(PROJECT_ROOT), metavar="DIR",
                        help="Pulumi Python program directory (with Pulumi.yaml); default: this project")
    if timeout:
        parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                            help=f"stop a stack's program that has not finished after SECONDS and exit 1 "
                                 f"(default {DEFAULT_TIMEOUT:g}; 0: no limit)")
        parser.add_argument("--jobs", type=jobs, default=None, metavar="N",
                            help="stacks evaluated at once, each in a process of its own (default: the number of "
                                 "cores; 1: one after the other)")


def pack_config(args: argparse.Namespace, stack: Any) -> tuple[dict, str]:
    """The policy pack config for a stack and where it comes from: --policy-config, else the stack file (ours),
    else the pack's own levels. Checked in full (levels, settings against each policy's schema): exit 2 before
    any program runs."""
    from components.config import ConfigError
    from llmops.policy.runner import PolicyConfigError, resolve_config
    from llmops.policy.settings import is_llmops_stack, load_pack_config, pack_config_for_stack

    if args.policy_config:
        try:
            return load_pack_config(args.policy_config), str(args.policy_config)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if is_llmops_stack(stack):
        try:
            config = pack_config_for_stack(stack)
            resolve_config(config, str(stack.file))
            return config, str(stack.file)
        except ConfigError as error:
            raise UsageError(f"stack {stack.name}: invalid stack config:\n{error}") from None
        except PolicyConfigError as error:
            raise UsageError(str(error)) from None
    return {}, "the pack's defaults"


def checked(worker: Any, stack: Any) -> Any:
    """The checks' results for the stack just planned (CheckResults); a refused pack config is exit 2."""
    results = worker.checked(stack)
    if results.policy_error is not None:
        raise UsageError(results.policy_error)
    return results


def jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of stacks >= 1; got {text!r}")
    return value


def stack_settings(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from llmops.offline.project import ProjectError, load_project, load_stack

    try:
        project = load_project(args.program)
        stacks = args.stack or project.stacks()
        if not stacks:
            raise UsageError(f"{project.stack_config_dir}: no Pulumi.<stack>.yaml files; name a stack with --stack")
        return project, [load_stack(project, name) for name in stacks]
    except ProjectError as error:
        raise UsageError(str(error)) from None


def evaluate(worker: Any, stack: Any, timeout: float) -> Any:
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


def seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds, a number >= 0 (0: no limit); got {text!r}")
    return value


def check_output(option: str, path: Path, kind: str) -> None:
    """Refuse, before any program runs, an output path that cannot be written: a directory where the plan JSON
    goes, or a file where a directory must be (the path itself for --render, or any parent)."""
    if kind == "file" and path.is_dir():
        raise UsageError(f"{option}: a directory; expected a file path for the plan JSON")
    for parent in ([path] if kind == "directory" else []) + list(path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option}: {parent} is a file; expected a directory")
            return


def write_atomically(path: Path, text: str) -> None:
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
def ctrl_c_deferred() -> Iterator[None]:
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
