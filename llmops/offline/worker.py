"""Evaluate stack programs in a process of their own, so `llmops` stays in control of them.

A program is someone's code: it can loop forever in an `apply`, sleep on a socket, catch every
exception or hold the interpreter in C. Run in the CLI's own process it could be stopped only from
inside (a signal reaches the main thread between bytecodes, and not while C code runs), and a program
stopped half-way would leave Pulumi's runtime, its threads and its working directory behind. So the
CLI starts one worker per command -- a fresh interpreter running `serve()` -- hands it the project and
the stacks on stdin, and reads one plan per stack back from the worker's stdout (length-prefixed
pickles; the program's own prints go to stderr, so `--output json` stays JSON).

The worker runs in a session of its own: the terminal's Ctrl-C reaches only the CLI, which then kills
the worker's whole process group (the program's children too) -- as it does at the timeout, or
whenever it stops early for any reason. A worker whose CLI is gone (kill -9) sees its stdin close and
exits. One worker evaluates every stack in turn, so imports (pulumi_aws, the components) are paid
once, as before; while it evaluates the next stack, the CLI prints, writes and validates the last one.
POSIX only (sessions, process groups, select on pipes), as is the rest of the CLI.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Any, BinaryIO

from components.paths import PROJECT_ROOT
from llmops.offline.errors import DuplicateUrnError, EvaluationTimeout, ProgramError
from llmops.offline.plan import Plan
from llmops.offline.project import Project, StackSettings

# Where this llmops is imported from: the worker must run the same code as the CLI that starts it.
_IMPORT_ROOT = PROJECT_ROOT
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from llmops.offline.worker import serve; serve()"
_HEADER = 8  # bytes of big-endian length before each pickled message


class _Expired(Exception):
    pass


class Worker:
    """One worker process for a list of stacks; `plan(stack, timeout)` for each in order, then `close()` (or `with`)."""

    def __init__(self, project: Project, stacks: list[StackSettings]) -> None:
        self._process = subprocess.Popen([sys.executable, "-c", _BOOT, str(_IMPORT_ROOT)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, start_new_session=True)
        self._buffer = bytearray()
        self._selector = selectors.DefaultSelector()
        try:
            assert self._process.stdout is not None and self._process.stdin is not None
            self._stdout = self._process.stdout.fileno()
            self._selector.register(self._stdout, selectors.EVENT_READ)
            try:
                self._process.stdin.write(pickle.dumps((project, stacks)))
                self._process.stdin.flush()  # and kept open: the worker exits when it closes
            except BrokenPipeError:
                pass  # it is gone already: the first plan() says how it ended
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def plan(self, stack: StackSettings, timeout: float | None) -> Plan:
        """The next stack's plan, or the error the program stopped with; EvaluationTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout if timeout else None
        try:
            message = self._receive(deadline)
        except _Expired:
            self.close()
            raise EvaluationTimeout(stack.name, timeout or 0) from None
        if message is None:
            raise ProgramError(f"it ended the evaluation process ({self._ending()}) before declaring everything",
                               declared=0, user_error=False)
        kind, *details = message
        if kind == "plan":
            return details[0]
        if kind == "duplicate_urns":
            raise DuplicateUrnError(details[0])
        message_text, declared, user_error = details
        raise ProgramError(message_text, declared=declared, user_error=user_error)

    def close(self) -> None:
        """Stop the worker and everything it started, if still running, and reap it. Safe to call twice."""
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)  # its own session: pgid == pid
            except (ProcessLookupError, PermissionError):
                self._process.kill()
        self._process.wait()
        self._selector.close()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass

    def _ending(self) -> str:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its output closed, yet still running: stop it
            self.close()
            return "its output closed while it kept running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def _receive(self, deadline: float | None) -> Any:
        header = self._read(_HEADER, deadline)
        if header is None:
            return None
        payload = self._read(int.from_bytes(header, "big"), deadline)
        return None if payload is None else pickle.loads(payload)

    def _read(self, size: int, deadline: float | None) -> bytes | None:
        while len(self._buffer) < size:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise _Expired
            if not self._selector.select(remaining):
                continue
            chunk = os.read(self._stdout, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


# --- the worker's side ---------------------------------------------------------------------------------

def serve() -> None:
    """Evaluate each stack the CLI sends and write back its plan; stop at the first that fails."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the program's prints go to stderr; stdout carries plans
    project, stacks = pickle.load(sys.stdin.buffer)
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    from llmops.offline.engine import run_program

    for stack in stacks:
        try:
            plan = run_program(project, stack)
            message: tuple[Any, ...] = ("plan", plan)
        except ProgramError as error:
            message = ("program_error", str(error), error.declared, error.user_error)
        except DuplicateUrnError as error:
            message = ("duplicate_urns", str(error))
        except BaseException as error:  # noqa: BLE001 - sys.exit() in a program, a bug here: report, never hang
            message = ("program_error", f"{type(error).__name__}: {error}", 0, False)
        _send(channel, message)
        if message[0] != "plan":
            break
    _finish(channel, 0)


def _send(channel: BinaryIO, message: tuple[Any, ...]) -> None:
    try:
        payload = pickle.dumps(message)
    except Exception as error:  # noqa: BLE001 - e.g. an input value that cannot be pickled
        payload = pickle.dumps(("program_error", f"cannot hand the plan over: {type(error).__name__}: {error}", 0, False))
    channel.write(len(payload).to_bytes(_HEADER, "big") + payload)
    channel.flush()


def _finish(channel: BinaryIO, code: int) -> None:
    """Exit now: threads the program left running must not keep the worker alive."""
    for stream in (sys.stdout, sys.stderr, channel):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _exit_when_orphaned() -> None:
    sys.stdin.buffer.read()  # returns when the CLI closes our stdin or is gone
    os._exit(1)
