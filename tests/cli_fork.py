"""`llmops ...` in a process of its own, as on-call runs it -- forked from one process that has imported
everything once, so a test pays the fork (milliseconds), not Python's start and the imports of MLflow,
the Kubernetes client and boto3 (about 3.5 s a run, hundreds of runs in the suite).

Each run is a real child process: its own environment, working directory, stdout and stderr; it ends
with `main`'s exit code, or is killed (the crash suites' SIGKILL reads as -9, as with subprocess). The
server process starts no thread, so forking it is safe. Tests that signal a running process themselves
(Ctrl-C, SIGTERM) still start `python -m llmops.cli` with subprocess.

Run as `python -m tests.cli_fork`, it is the server: one JSON request per line on stdin, one answer per
line on its own pipe.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What a runbook's or a scan's first call would import: paid once, in the server.
PRELOAD = ("llmops.cli", "runbooks.definitions", "runbooks.launch", "runbooks.adapters.aws",
           "runbooks.adapters.kubernetes_cluster", "runbooks.adapters.mlflow_registry", "runbooks.adapters.prometheus",
           "runbooks.adapters.route53_dns", "runbooks.adapters.s3_objects", "llmops.retrieval.store",
           "llmops.pii.detectors", "mlflow.tracking", "mlflow.artifacts",
           "kubernetes.client", "kubernetes.config",
           "boto3", "botocore.session", "yaml", "ruamel.yaml", "qdrant_client", "qdrant_client.local.qdrant_local",
           "portalocker",
           # MLflow's SQL stores import these on first use (about 1 s more a run).
           "mlflow.store.model_registry.sqlalchemy_store", "mlflow.store.tracking.sqlalchemy_store",
           "mlflow.store.db.utils", "alembic.command", "alembic.config", "alembic.migration", "alembic.runtime.migration",
           "sqlalchemy.dialects.sqlite", "mako.template", "cryptography.fernet")


class ForkedCli:
    """The test side: one server per test process, started on first use."""

    _lock = threading.Lock()
    _instance: ForkedCli | None = None

    def __init__(self) -> None:
        read_answers, self._answers_fd = os.pipe()
        self.process = subprocess.Popen([sys.executable, "-m", "tests.cli_fork", str(self._answers_fd)], cwd=ROOT,
                                        stdin=subprocess.PIPE, pass_fds=(self._answers_fd,), text=True)
        os.close(self._answers_fd)
        self._answers = os.fdopen(read_answers)
        ready = json.loads(self._answers.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError(f"the forking CLI server did not start: {ready}")

    @classmethod
    def shared(cls) -> ForkedCli:
        with cls._lock:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = cls()
                atexit.register(cls._instance.stop)
            return cls._instance

    def run(self, argv: list[str], *, env: dict[str, str], cwd: Path = ROOT,
            timeout: float = 300) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="llmops-cli-") as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            request = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(out), "stderr": str(err),
                       "timeout": timeout}
            with self._lock:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
                answer = json.loads(self._answers.readline() or '{"error": "the server ended"}')
            if "error" in answer:
                raise RuntimeError(f"llmops {' '.join(argv)}: {answer['error']}")
            if answer.get("timed_out"):
                raise subprocess.TimeoutExpired(["llmops", *argv], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess(["llmops", *argv], answer["returncode"], out.read_text(),
                                               err.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_llmops(argv: list[str], *, env: dict[str, str], cwd: Path = ROOT,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """`llmops ARGV` in a child process of its own, with exactly this environment."""
    return ForkedCli.shared().run(argv, env=env, cwd=cwd, timeout=timeout)


# --- the server ------------------------------------------------------------------------------------------------

def _child(request: dict[str, Any]) -> None:
    """In the forked child: become `llmops ARGV` and never return."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own process group: a kill of the run reaches what it starts
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the child's whole life
        os.dup2(sys.stdin.fileno(), 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.argv = ["llmops", *request["argv"]]
        from llmops.cli import main

        try:
            result = main(request["argv"])
            code = result if isinstance(result, int) else 0
        except SystemExit as exit_:
            if isinstance(exit_.code, int) or exit_.code is None:
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to a real process: a traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            return {"returncode": code}
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"timed_out": True}
        time.sleep(0.005)


def _warm_boto3() -> None:
    """Load the AWS service models our adapters use into boto3's default session (about 0.1 s a client otherwise).
    The throwaway clients get explicit keys, so the session resolves and caches no credentials: each child still
    reads its own environment's."""
    import boto3

    boto3.setup_default_session()
    for service in ("s3", "dynamodb", "sns", "sqs", "sts", "route53", "secretsmanager"):
        boto3.client(service, region_name="us-east-1", aws_access_key_id="warm", aws_secret_access_key="warm")


def serve(answers_fd: int) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    importlib.import_module("llmops.pii.detectors").Engine()  # compiles the scanner's database once, for every child
    _warm_boto3()
    answers = os.fdopen(answers_fd, "w")
    if threading.active_count() != 1:  # forking a threaded process is not safe: refuse rather than hang
        answers.write(json.dumps({"error": f"threads after the imports: {threading.enumerate()}"}) + "\n")
        answers.flush()
        return
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            answers.close()
            _child(request)
        answers.write(json.dumps(_wait(pid, float(request.get("timeout", 300)))) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))


def as_a_terminal_starts_it() -> None:
    """`preexec_fn` for a CLI process a test will interrupt: SIGINT and SIGTERM unblocked and at their defaults, as a
    shell starts a program from a terminal. A test run started in the background (`cmd &`, nohup) has SIGINT ignored,
    every process it starts inherits that, and Python then leaves Ctrl-C ignored -- rightly, but the test is about
    Ctrl-C at a terminal."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
