"""Evaluate stack programs in processes of their own, so `llmops` stays in control of them -- several at once.

A program is someone's code: it can loop forever in an `apply`, sleep on a socket, catch every exception or hold
the interpreter in C. Run in the CLI's own process it could be stopped only from inside (a signal reaches the main
thread between bytecodes, and not while C code runs), and a program stopped half-way would leave Pulumi's runtime,
its threads and its working directory behind. So the CLI starts one worker per command -- a fresh interpreter
running `serve()`, in a session of its own -- and hands it the project and the stacks on stdin.

The worker loads what every stack needs once -- Pulumi, the libraries the program's source names (see
`preload.py`), and the checks the caller asked for -- and then forks one process per stack, up to `jobs` at a
time (default: the cores this process may use). Each evaluates its stack under the mock engine, sends its plan,
runs the checks on it (schema validation, the policy pack: whatever the caller passed) and sends their result.
The worker relays every message to the CLI, tagged with the stack, and reports a process that ended without
finishing (`os._exit` in a program, a signal) with its exit status. Every stack starts from the same loaded
state, so no stack sees modules, caches or config left by another.

The CLI reads the messages and hands plans out in the stacks' order: while it prints, writes and validates one,
the others are being evaluated. `--timeout` counts from the moment a stack's evaluation started. The worker's
whole session -- its forked processes and whatever a program started -- is killed at a timeout, on Ctrl-C, or
whenever the CLI stops early; a worker whose CLI is gone (kill -9) sees its stdin close and kills its session,
and a forked process whose worker is gone sees its lifeline pipe close and exits. Where forking is unsafe (a
library started a thread while loading) the worker evaluates the stacks itself, one after the other.
POSIX only (sessions, process groups, fork, select on pipes), as is the rest of the CLI.
"""

from __future__ import annotations

import collections
import gc
import os
import pickle
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from components.paths import PROJECT_ROOT
from llmops.offline.errors import DuplicateUrnError, EvaluationTimeout, ProgramError
from llmops.offline.plan import Plan
from llmops.offline.project import Project, StackSettings

# Where this llmops is imported from: the worker must run the same code as the CLI that starts it.
_IMPORT_ROOT = PROJECT_ROOT
# The cyclic garbage collector is off while the worker loads (a quarter of the time of a thousand imports went to
# collections finding next to nothing) and in the processes it forks (one stack each, then they exit).
_BOOT = ("import gc; gc.disable(); import sys; sys.path.insert(0, sys.argv[1]); "
         "from llmops.offline.worker import serve; serve()")
_HEADER = 8  # bytes of big-endian length before each pickled message
_INDEX = 4  # bytes of big-endian stack index after the length, on the worker's messages to the CLI
_DONE = b""  # a stack process's last message: it finished (an empty payload)
_GRACE_SECONDS = 1.0  # for the worker to stop what it forked and exit, once told to


class _Expired(Exception):
    pass


def default_jobs() -> int:
    """Stacks evaluated at once: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Worker:
    """One worker process for a list of stacks: `plan(stack, timeout)` for each in order (and `checked(stack)` after
    it when checks were given), then `close()` (or `with`).

    The process starts at once, importing Pulumi, so a caller may create the worker first and hand it the project
    and stacks (`load`) and the checks (`start`) as soon as it has them: the worker loads libraries meanwhile.
    `checks` is called with each plan in the stack's own process, once its plan is sent; it must pickle (a
    module-level function, a functools.partial of one, or an instance of a module-level class), and so must what
    it returns. `plan()` starts the worker without checks if `start` was not called."""

    def __init__(self, project: Project | None = None, stacks: list[StackSettings] | None = None, *,
                 jobs: int | None = None, checks: Callable[[Plan], Any] | None = None, start: bool = True) -> None:
        self._process = subprocess.Popen([sys.executable, "-c", _BOOT, str(_IMPORT_ROOT)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, start_new_session=True)
        self._jobs = jobs or default_jobs()
        self._stacks: list[StackSettings] = []
        self._buffer = bytearray()
        self._messages: dict[int, collections.deque[tuple[Any, ...]]] = collections.defaultdict(collections.deque)
        self._started_at: dict[int, float] = {}  # stack index -> when its evaluation started (monotonic clock)
        self._pids: dict[int, int] = {}  # stack index -> its process (and process group)
        self._over: set[int] = set()  # stacks whose program is over: planned, failed or ended
        self._next = 0  # the stack plan() hands out next
        self._checks_for: int | None = None  # the stack whose checks checked() hands out
        self._loaded = self._started = self._closed = False
        self._selector = selectors.DefaultSelector()
        try:
            assert self._process.stdout is not None and self._process.stdin is not None
            self._stdout = self._process.stdout.fileno()
            self._selector.register(self._stdout, selectors.EVENT_READ)
            if project is not None:
                self.load(project, stacks or [])
                if start:
                    self.start(checks)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def load(self, project: Project, stacks: list[StackSettings]) -> None:
        """Hand over the program and its stacks: the worker loads the libraries the program's source names."""
        from llmops.offline.preload import library_references

        if self._loaded:
            raise RuntimeError("the worker has its stacks already")
        self._loaded = True
        self._stacks = list(stacks)
        self._write((project, self._stacks, self._jobs, library_references(project.main, project.directory)))

    def start(self, checks: Callable[[Plan], Any] | None = None) -> None:
        """Let the worker evaluate, running `checks` on each plan (once; later calls do nothing)."""
        if not self._loaded:
            raise RuntimeError("start() before load()")
        if not self._started:
            self._started = True
            self._write(checks)

    def plan(self, stack: StackSettings, timeout: float | None) -> Plan:
        """The next stack's plan, or the error the program stopped with. A program that has not finished `timeout`
        seconds after its evaluation started -- this stack's, or any other's running meanwhile -- is an
        EvaluationTimeout naming its stack (the worker is stopped)."""
        self.start()
        index = self._next
        if index >= len(self._stacks) or self._stacks[index] != stack:
            raise ValueError(f"stack {stack.name}: not the next stack of this worker")
        self._next += 1
        asked_at = time.monotonic()
        try:
            kind, *details = self._receive(index, lambda: self._deadline(index, timeout, asked_at))
        except _Expired as expired:
            self.close()
            raise EvaluationTimeout(self._stacks[expired.args[0]].name, timeout or 0) from None
        if kind == "plan":
            self._checks_for = index
            return details[0]
        if kind == "duplicate_urns":
            raise DuplicateUrnError(details[0])
        if kind == "ended":
            raise ProgramError(f"it ended the evaluation process ({details[0]}) before declaring everything",
                               declared=0, user_error=False)
        message_text, declared, user_error = details
        raise ProgramError(message_text, declared=declared, user_error=user_error)

    def checked(self, stack: StackSettings) -> Any:
        """What the checks returned for the stack whose plan was handed out last; RuntimeError if they failed."""
        index = self._checks_for
        if index is None or self._stacks[index] != stack:
            raise ValueError(f"stack {stack.name}: checked() before its plan()")
        kind, *details = self._receive(index, lambda: None)
        if kind == "checked":
            return details[0]
        if kind == "ended":
            raise RuntimeError(f"stack {stack.name}: checking the plan ended its process ({details[0]})")
        raise RuntimeError(f"stack {stack.name}: checking the plan failed: {details[0]}")

    def close(self) -> None:
        """Stop the worker and everything it started, if still running, and reap it. Safe to call twice.

        Closing its pipes tells the worker to stop: it kills each stack's process group, reaps the processes (so
        none is left, not even as a zombie) and exits. One that has not within a second (busy in a library's C
        code, or evaluating in its own process) is killed with its session, and so are the stacks' groups."""
        if self._closed:
            return
        self._closed = True
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
        try:
            # Nothing forked before start(): no need to wait for the worker to finish its imports.
            self._process.wait(timeout=_GRACE_SECONDS if self._started else 0)
        except subprocess.TimeoutExpired:
            for group in (self._process.pid, *self._pids.values()):
                try:
                    os.killpg(group, signal.SIGKILL)  # the worker's own session: pgid == pid; each stack's group
                except (ProcessLookupError, PermissionError):
                    pass
            self._process.kill()
            self._process.wait()
        self._selector.close()

    def _write(self, message: Any) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(pickle.dumps(message))
            self._process.stdin.flush()  # and kept open: the worker exits when it closes
        except BrokenPipeError:
            pass  # it is gone already: the first plan() says how it ended

    def _deadline(self, index: int, timeout: float | None, asked_at: float) -> tuple[float, int] | None:
        """The first moment a program runs out of time, and its stack: any stack running counts, not only the one
        waited for. Before any has started (the worker still loading), the time counts from the asking."""
        if not timeout:
            return None
        running = [(started + timeout, i) for i, started in self._started_at.items() if i not in self._over]
        if not self._started_at:
            running.append((asked_at + timeout, index))
        return min(running, default=None)

    def _ending(self) -> str:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its output closed, yet still running: stop it
            self.close()
            return "its output closed while it kept running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def _receive(self, index: int, deadline: Callable[[], tuple[float, int] | None]) -> tuple[Any, ...]:
        """The next message for stack `index` (its "started" notes are taken in passing)."""
        queue = self._messages[index]
        while True:
            while queue:
                message = queue.popleft()
                if message[0] != "started":
                    return message
            if not self._pump(deadline):
                return ("ended", self._ending())

    def _pump(self, deadline: Callable[[], tuple[float, int] | None]) -> bool:
        """Read what the worker sent into the stacks' queues: at least one message, or all there is when a deadline
        has passed (a plan already sent counts as in time). False when the worker's output has closed."""
        while True:
            if self._take_messages():
                return True
            due = deadline()
            remaining = None if due is None else due[0] - time.monotonic()
            if not self._selector.select(None if remaining is None else max(remaining, 0)):
                if due is not None and remaining is not None and remaining <= 0:
                    raise _Expired(due[1])
                continue
            chunk = os.read(self._stdout, 1 << 20)
            if not chunk:
                return False
            self._buffer += chunk

    def _take_messages(self) -> bool:
        got = False
        while len(self._buffer) >= _HEADER + _INDEX:
            size = int.from_bytes(self._buffer[:_HEADER], "big")
            if len(self._buffer) < _HEADER + _INDEX + size:
                break
            index = int.from_bytes(self._buffer[_HEADER:_HEADER + _INDEX], "big")
            message = pickle.loads(self._buffer[_HEADER + _INDEX:_HEADER + _INDEX + size])
            del self._buffer[:_HEADER + _INDEX + size]
            if message[0] == "started":
                self._started_at[index], self._pids[index] = message[1], message[2]
            elif message[0] in ("plan", "program_error", "duplicate_urns", "ended"):
                self._over.add(index)
            self._messages[index].append(message)
            got = True
        return got


# --- the worker's side ---------------------------------------------------------------------------------

def serve() -> None:
    """Load once, then evaluate each stack the CLI sends in a process forked for it, relaying what they send."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the programs' prints go to stderr; stdout carries plans
    import llmops.offline.engine  # noqa: F401 - Pulumi and the mock engine, while the CLI reads the program
    from llmops.offline.preload import preload

    try:
        project, stacks, jobs, references = pickle.load(sys.stdin.buffer)
        preload(references)
        checks = pickle.load(sys.stdin.buffer)  # loads the modules the checks need, too
    except EOFError:  # the CLI stopped before handing everything over (a refused config): nothing to do
        _finish(channel, 1)
    if threading.active_count() > 1:  # a library started a thread: forking now could deadlock a child
        gc.enable()  # one long-lived process, every stack
        _serve_in_process(channel, project, stacks, checks)
    else:
        _Relay(channel, project, stacks, jobs, checks).run()
    _finish(channel, 0)


def _evaluate(send: Callable[[tuple[Any, ...]], bool], project: Project, stack: StackSettings,
              checks: Callable[[Plan], Any] | None) -> bool:
    """Evaluate one stack and send its plan (or how it failed), then the checks' result; True if it had a plan.
    `send` returns False when it sent an error instead of the message (one that does not pickle)."""
    from llmops.offline.engine import run_program

    try:
        plan = run_program(project, stack)
        message: tuple[Any, ...] = ("plan", plan)
    except ProgramError as error:
        message = ("program_error", str(error), error.declared, error.user_error)
    except DuplicateUrnError as error:
        message = ("duplicate_urns", str(error))
    except BaseException as error:  # noqa: BLE001 - sys.exit() in a program, a bug here: report, never hang
        message = ("program_error", f"{type(error).__name__}: {error}", 0, False)
    if not send(message) or message[0] != "plan":
        return False
    if checks is not None:
        try:
            send(("checked", checks(plan)))
        except BaseException as error:  # noqa: BLE001 - reported to the CLI, which stops
            send(("check_failed", f"{type(error).__name__}: {error}"))
    return True


def _pickled(message: tuple[Any, ...]) -> tuple[bytes, bool]:
    """The message pickled, or (False) the error saying it cannot be: an input value that does not pickle."""
    try:
        return pickle.dumps(message), True
    except Exception as error:  # noqa: BLE001
        what = "the plan" if message[0] == "plan" else "the checks' result"
        text = f"cannot hand {what} over: {type(error).__name__}: {error}"
        failed = ("program_error", text, 0, False) if message[0] == "plan" else ("check_failed", text)
        return pickle.dumps(failed), False


def _frame(index: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(_HEADER, "big") + index.to_bytes(_INDEX, "big") + payload


def _serve_in_process(channel: BinaryIO, project: Project, stacks: list[StackSettings],
                      checks: Callable[[Plan], Any] | None) -> None:
    """Each stack in turn, in this process (no fork). As with forked processes, each stack starts with none of the
    program's own modules that an earlier stack imported (they may have read that stack's config)."""
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    loaded = set(sys.modules)
    for index, stack in enumerate(stacks):
        def send(message: tuple[Any, ...], index: int = index) -> bool:
            payload, sent = _pickled(message)
            channel.write(_frame(index, payload))
            channel.flush()
            return sent

        for name in [name for name in sys.modules if name not in loaded]:
            if Path(getattr(sys.modules[name], "__file__", None) or "/").resolve().is_relative_to(project.directory):
                del sys.modules[name]  # the program's: imported afresh, under this stack's config
        send(("started", time.monotonic(), os.getpid()))
        if not _evaluate(send, project, stack, checks):
            break


class _Relay:
    """The worker's loop: fork a process per stack (at most `jobs` at once), relay their messages to the CLI tagged
    with the stack's index, and report any that ended without finishing."""

    def __init__(self, channel: BinaryIO, project: Project, stacks: list[StackSettings], jobs: int,
                 checks: Callable[[Plan], Any] | None) -> None:
        self.channel, self.project, self.stacks, self.jobs, self.checks = channel, project, stacks, jobs, checks
        order = list(range(len(stacks)))
        if 1 < jobs < len(stacks):
            # Not all at once: the longest first, so that it does not start last and finish alone (the size of a
            # stack's config stands in for its program's work: prod has two regions, the largest file); then in
            # the order the CLI hands them out, so that it writes the first while the others are evaluated.
            longest = max(order, key=lambda i: len(repr(sorted(stacks[i].config.items()))))
            order.remove(longest)
            order.insert(0, longest)
        self.pending = collections.deque(order)
        self.running: dict[int, _Child] = {}  # read fd -> child
        self.selector = selectors.PollSelector()  # no kernel object for the children to inherit
        self.lifeline_read, self.lifeline_write = os.pipe()

    def run(self) -> None:
        self.selector.register(0, selectors.EVENT_READ)  # the CLI's end: closed when it stops us, or is gone
        gc.freeze()  # what is loaded now is never collected: its pages stay shared with the children
        try:
            while self.pending or self.running:
                while self.pending and len(self.running) < self.jobs:
                    self.fork(self.pending.popleft())
                for key, _ in self.selector.select():
                    if key.fd == 0:
                        if not os.read(0, 1 << 16):
                            self.stop()
                        continue
                    self.read(self.running[key.fd])
        except BrokenPipeError:  # the CLI stopped reading: it is stopping us
            self.stop()

    def stop(self) -> None:
        """Kill every stack's process with what it started, reap them, and exit."""
        for child in self.running.values():
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for child in self.running.values():
            os.waitpid(child.pid, 0)
        os._exit(1)

    def fork(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        for stream in (self.channel, sys.stdout, sys.stderr):
            stream.flush()  # or the child would write it again
        pid = os.fork()
        if pid == 0:
            self.child(index, read_fd, write_fd)  # never returns
        try:
            os.setpgid(pid, pid)  # as the child does itself: whichever runs first, a kill of its group reaches it
        except (PermissionError, ProcessLookupError):
            pass
        os.close(write_fd)
        self.running[read_fd] = _Child(index, pid, read_fd)
        self.selector.register(read_fd, selectors.EVENT_READ)
        self.send(index, ("started", time.monotonic(), pid))
        self.channel.flush()

    def child(self, index: int, read_fd: int, write_fd: int) -> None:
        code = 1
        try:
            os.setpgid(0, 0)  # a group of its own: stopping it stops what the program started too
            self.selector.close()
            for fd in (read_fd, self.lifeline_write, self.channel.fileno(), *self.running):
                os.close(fd)  # the channel unflushed: what it holds is the worker's to send
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the CLI's pipe stays the worker's alone
            threading.Thread(target=_exit_when_closed, args=(self.lifeline_read,), daemon=True).start()
            # One stack, then exit: the garbage collector stays off (reclaiming cyclic garbage cost about 15% of an
            # evaluation and a check, for a few MB), and Pulumi's stack trace per registration is for source
            # positions the mock engine does not keep.
            from llmops.offline.engine import skip_source_positions

            skip_source_positions()
            stream = os.fdopen(write_fd, "wb")

            def send(message: tuple[Any, ...]) -> bool:
                payload, sent = _pickled(message)
                stream.write(len(payload).to_bytes(_HEADER, "big") + payload)
                stream.flush()
                return sent

            _evaluate(send, self.project, self.stacks[index], self.checks)
            stream.write(len(_DONE).to_bytes(_HEADER, "big"))
            stream.flush()
            code = 0
        finally:
            for handle in (sys.stdout, sys.stderr):
                try:
                    handle.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)

    def read(self, child: _Child) -> None:
        chunk = os.read(child.fd, 1 << 20)
        child.buffer += chunk
        while len(child.buffer) >= _HEADER:
            size = int.from_bytes(child.buffer[:_HEADER], "big")
            if len(child.buffer) < _HEADER + size:
                break
            payload = bytes(child.buffer[_HEADER:_HEADER + size])
            del child.buffer[:_HEADER + size]
            if payload == _DONE:
                child.done = True
            else:
                self.channel.write(_frame(child.index, payload))
        if not chunk or child.done:  # done: it exits now, even if a process it started still holds the pipe
            self.selector.unregister(child.fd)
            os.close(child.fd)
            del self.running[child.fd]
            _, status = os.waitpid(child.pid, 0)
            if not child.done:
                self.send(child.index, ("ended", _status(status)))
        self.channel.flush()

    def send(self, index: int, message: tuple[Any, ...]) -> None:
        self.channel.write(_frame(index, pickle.dumps(message)))


class _Child:
    def __init__(self, index: int, pid: int, fd: int) -> None:
        self.index, self.pid, self.fd = index, pid, fd
        self.buffer = bytearray()
        self.done = False


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


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


def _exit_when_closed(fd: int) -> None:
    while os.read(fd, 1 << 10):  # nothing is ever written: this returns b"" when the worker is gone
        pass
    try:
        os.killpg(0, signal.SIGKILL)  # this process and whatever the program started
    finally:
        os._exit(1)


__all__ = ["Worker", "default_jobs", "serve"]
