"""Shared fixtures: the real stack programs evaluated once per session under the mock engine."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from llmops.offline.engine import run_program
from llmops.offline.plan import Plan
from llmops.offline.project import Project, load_project, load_stack

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def project() -> Project:
    return load_project(ROOT)


@pytest.fixture(scope="session")
def plans(project: Project) -> dict[str, Plan]:
    """Each real stack file through the real __main__.py (no stand-in program, no stand-in config)."""
    return {name: run_program(project, load_stack(project, name)) for name in STACKS}


@pytest.fixture
def stack_yaml() -> dict:
    """A deep copy of the dev stack file, for tests that break one value at a time."""
    return copy.deepcopy(yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text()))


def write_program_copy(tmp_path: Path, stack_name: str, stack_data: dict) -> Path:
    """This project's program with one stack file of the test's own (the program and components are real)."""
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "__main__.py").write_text((ROOT / "__main__.py").read_text())
    (tmp_path / "stacks" / f"Pulumi.{stack_name}.yaml").write_text(yaml.safe_dump(stack_data))
    return tmp_path
