"""The rollback drill world, started once per session on 127.0.0.1 and reset before every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmops.drill.rollback_drill import DrillSettings, RollbackDrill, staging_objects
from tests.cli_fork import run_llmops

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def drill_world(tmp_path_factory, plans):
    objects = staging_objects()
    drill = RollbackDrill(tmp_path_factory.mktemp("drill"), DrillSettings(verification_window_seconds=2,
                                                                         verification_timeout_seconds=30),
                          objects=objects)
    try:
        drill.start()
    except RuntimeError as error:  # a backend that cannot start fails the tests, with what is missing
        pytest.fail(str(error))
    yield drill
    drill.stop()


@pytest.fixture
def drill(drill_world, monkeypatch):
    drill_world.reset()
    for key, value in drill_world.environment().items():
        monkeypatch.setenv(key, value)
    return drill_world


def run_cli(drill, *args, extra_env=None, timeout=180):
    """`llmops runbook run ...` in its own process, as on-call runs it."""
    env = {**os.environ, **drill.environment(), **(extra_env or {})}
    if "LLMOPS_CRASH_AT" not in (extra_env or {}):
        env.pop("LLMOPS_CRASH_AT", None)
    return run_llmops(["runbook", "run", *args], env=env, timeout=timeout)
