"""The canary drill world (the rollback drill's backends with stable and canary traffic split by the live route),
started once per session and reset before every test."""

from __future__ import annotations

import pytest

from llmops.drill.canary_drill import CanaryDrill
from llmops.drill.rollback_drill import DrillSettings, staging_objects


@pytest.fixture(scope="session")
def canary_world(tmp_path_factory, plans):
    drill = CanaryDrill(tmp_path_factory.mktemp("canary"), DrillSettings(verification_window_seconds=2,
                                                                         verification_timeout_seconds=30),
                        objects=staging_objects(), rate=40.0)
    try:
        drill.start()
    except RuntimeError as error:  # a backend that cannot start fails the tests, with what is missing
        pytest.fail(str(error))
    yield drill
    drill.stop()


@pytest.fixture
def canary(canary_world, monkeypatch):
    canary_world.reset()
    for key, value in canary_world.environment().items():
        monkeypatch.setenv(key, value)
    canary_world.wait_until_degraded()
    return canary_world
