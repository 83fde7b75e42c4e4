"""Shared fixtures: the real stack programs evaluated once per session under the mock engine."""

from __future__ import annotations

import copy
import shutil
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


def debian_tool(command: str, package: str) -> str:
    """A tool the tests run from Debian's packages (scripts/dev.sh installs them); missing is a failure, not a skip."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} is missing: install Debian's {package} "
                    f"(apt-get install -y --no-install-recommends {package}); scripts/dev.sh does this")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return debian_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def luajit() -> str:
    """The Lua Fluent Bit embeds (LuaJIT, Lua 5.1): the drift shipper's sampling filter runs in it."""
    return debian_tool("luajit", "luajit")


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


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's real HTTP server on 127.0.0.1, in its own process (boto3 talks to it over the wire); stopped at the end."""
    from llmops.drill.backends import MotoServer

    try:
        server = MotoServer().start()
    except RuntimeError as error:  # a missing backend is a failure, never a skip
        pytest.fail(f"moto[server] is required for AWS API tests (pip install -e '.[dev]'): {error}")
    yield server.url
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch):
    """Credentials and region for boto3 against the moto server, and nothing real."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


def objects_of(plan: Plan, kind: str) -> list[dict]:
    """Every rendered Kubernetes object of one kind in a plan."""
    return [r.inputs for r in plan.kubernetes_objects() if r.inputs["kind"] == kind]


def pod_specs(plan: Plan) -> list[tuple[str, dict]]:
    """(object name, pod spec) for every workload that creates pods."""
    found = []
    for obj in (r.inputs for r in plan.kubernetes_objects()):
        spec = obj.get("spec", {})
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            found.append((f"{obj['kind']}/{obj['metadata']['name']}", spec["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            found.append((f"CronJob/{obj['metadata']['name']}", spec["jobTemplate"]["spec"]["template"]["spec"]))
    return found
