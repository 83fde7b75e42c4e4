"""Third-party log lines only when asked for: `llmops` keeps MLflow, alembic, botocore and the others at WARNING
unless `--verbose` (or LLMOPS_VERBOSE=1); our own messages and loggers are untouched either way."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llmops.cli import THIRD_PARTY_LOGGERS, configure_logging, verbose_from_environment

ROOT = Path(__file__).resolve().parents[2]
OURS = ("llmops", "llmops.drift", "runbooks", "runbooks.engine")


@pytest.fixture
def pristine_logging(monkeypatch) -> Iterator[list[logging.LogRecord]]:
    """Logger levels and the environment restored after the test; a root handler at INFO (as `llmops drift watch`
    sets one) that collects what would be printed."""
    for name in ("MLFLOW_LOGGING_LEVEL", "LLMOPS_VERBOSE"):
        monkeypatch.setenv(name, "")  # recorded, so that what configure_logging sets is undone
        monkeypatch.delenv(name)
    names = ("", *THIRD_PARTY_LOGGERS, *OURS, "mlflow.store.db.utils", "botocore.credentials",
             "alembic.runtime.migration", "urllib3.connectionpool", "kubernetes.client.rest")
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).disabled, logging.getLogger(name).propagate)
             for name in names}
    # What earlier tests in this worker did to these loggers is not the CLI's doing: an alembic migration's
    # fileConfig disables the loggers that existed then, and a library may stop propagation. Start from none of it.
    for name in names:
        logging.getLogger(name).disabled = False
        logging.getLogger(name).propagate = True
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = seen.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        root.removeHandler(handler)
        for name, (level, disabled, propagate) in saved.items():
            found = logging.getLogger(name)
            found.setLevel(level)
            found.disabled, found.propagate = disabled, propagate


def mlflow_imported() -> None:
    """What MLflow's import does to its logger (INFO, unless MLFLOW_LOGGING_LEVEL): as when it was imported before
    llmops configured logging (the tests' forking CLI server preloads it)."""
    logging.getLogger("mlflow").setLevel(os.environ.get("MLFLOW_LOGGING_LEVEL") or "INFO")


def log_everywhere() -> None:
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration", "botocore.credentials",
                 "urllib3.connectionpool", "kubernetes.client.rest", "qdrant_client", "httpx", "werkzeug",
                 *OURS):
        logging.getLogger(name).info("info from %s", name)
        logging.getLogger(name).warning("warning from %s", name)


def test_by_default_third_party_loggers_show_warnings_only_and_ours_everything(pristine_logging):
    mlflow_imported()
    configure_logging(verbose=False)
    log_everywhere()
    shown = {(r.name, r.levelname) for r in pristine_logging}
    assert {name for name, level in shown if level == "INFO"} == set(OURS)
    assert {name for name, level in shown if level == "WARNING"} >= {"botocore.credentials", "urllib3.connectionpool",
                                                                      "alembic.runtime.migration", "werkzeug", *OURS}
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"  # for MLflow's own import, which comes later
    assert "LLMOPS_VERBOSE" not in os.environ


def test_verbose_leaves_every_logger_as_its_library_set_it_and_tells_child_commands(pristine_logging):
    mlflow_imported()
    configure_logging(verbose=True)
    logging.getLogger("botocore").setLevel(logging.NOTSET)  # botocore's own default, whatever ran in this process before
    log_everywhere()
    infos = {r.name for r in pristine_logging if r.levelname == "INFO"}
    assert {"mlflow.store.db.utils", "botocore.credentials", *OURS} <= infos
    assert "MLFLOW_LOGGING_LEVEL" not in os.environ
    assert os.environ["LLMOPS_VERBOSE"] == "1"


def test_a_level_chosen_for_mlflow_is_kept(pristine_logging, monkeypatch):
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")
    logging.getLogger("mlflow").setLevel(logging.DEBUG)
    configure_logging(verbose=False)
    assert logging.getLogger("mlflow").level == logging.DEBUG and os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG"
    assert logging.getLogger("alembic").level == logging.WARNING


@pytest.mark.parametrize(("value", "verbose"), [("1", True), ("yes", True), ("true", True), ("", False),
                                                ("0", False), ("false", False), ("no", False)])
def test_llmops_verbose_in_the_environment(monkeypatch, value, verbose):
    monkeypatch.setenv("LLMOPS_VERBOSE", value)
    assert verbose_from_environment() is verbose


# --- the command that printed them: a runbook's dry run against a registry MLflow creates on first use ---------

def dry_run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`llmops [FLAGS] runbook run rollback --dry-run` in a fresh process (MLflow imported after llmops started),
    against a new SQLite registry: MLflow creates its tables and says so at INFO."""
    targets = tmp_path / "targets"
    targets.mkdir(parents=True)
    (targets / "quiet.yaml").write_text(yaml.safe_dump({
        "environment": "quiet", "stack_file": "stacks/Pulumi.staging.yaml", "aws": {"region": "us-east-1"},
        "registry": {"tracking_uri": f"sqlite:///{tmp_path / 'registry.db'}"},
        "kubernetes": {"host": "http://127.0.0.1:9"}, "prometheus": {"url": "http://127.0.0.1:9"},
        "audit": {"uri": str(tmp_path / "audit")}, "evidence": {"uri": str(tmp_path / "evidence")},
        "state_dir": str(tmp_path / "state")}))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LLMOPS_", "MLFLOW_"))}
    env["LLMOPS_TARGETS_DIR"] = str(targets)
    return subprocess.run([sys.executable, "-m", "llmops.cli", *flags, "runbook", "run", "rollback", "--env", "quiet",
                           "--service", "chat-small", "--dry-run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_runbook_run_prints_no_mlflow_lines_unless_verbose(tmp_path):
    quiet = dry_run(tmp_path / "quiet")
    verbose = dry_run(tmp_path / "verbose", "--verbose")
    assert "INFO mlflow" in verbose.stderr, "the run no longer reaches MLflow's table creation: pick another command"
    assert "INFO" not in quiet.stderr
    # Our own messages are the same either way.
    ours = [line for line in verbose.stderr.splitlines() if line.startswith("llmops:")]
    assert ours and [line for line in quiet.stderr.splitlines() if line.startswith("llmops:")] == ours
    assert quiet.returncode == verbose.returncode != 0
