"""The pack is installed alone: the Pulumi CLI copies nothing but policies/ and installs policies/requirements.txt
into a virtualenv of its own. So no module in it may import project code or reach a file outside its folder,
and a copy of the folder, anywhere and under any name, must serve the same verdicts."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc

from policies.pack import POLICY_NAMES

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policies"
PROJECT_PACKAGES = {"components", "runbooks", "llmops", "tests", "scripts"}


def pack_modules() -> list[Path]:
    """The pack's Python files (not the virtualenv the Pulumi CLI creates inside it)."""
    return sorted(p for p in PACK.rglob("*.py") if not {"venv", "__pycache__"} & set(p.relative_to(PACK).parts))


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def reaches_outside(tree: ast.AST) -> list[str]:
    """Expressions that name a path above the pack's folder: `__file__` climbed more than one `.parent` (a module's
    own folder is the pack), `.parents[...]`, `..` in a string, `os.pardir`, or a path through a project folder."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "parent" and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "parent":
            found.append(f"line {node.lineno}: .parent.parent")
        elif isinstance(node, ast.Attribute) and node.attr in ("parents", "pardir"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("dirname") and node.args \
                and isinstance(node.args[0], ast.Call) and ast.unparse(node.args[0].func).endswith("dirname"):
            found.append(f"line {node.lineno}: dirname(dirname(...))")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.search(r"(^|/)\.\.(/|$)", node.value):
                found.append(f"line {node.lineno}: {node.value!r}")
            elif re.search(rf"(^|/)({'|'.join(PROJECT_PACKAGES)})/|/({'|'.join(PROJECT_PACKAGES)})$", node.value):
                found.append(f"line {node.lineno}: {node.value!r}")
    return sorted(found)


def test_the_scan_sees_what_it_must_refuse():
    """The checks below can fail: the old catalog lookup and an import of project code are both caught."""
    old = ast.parse('CATALOG = Path(__file__).resolve().parent.parent / "runbooks" / "catalog.yaml"\n'
                    'METRICS = Path("components/manifests/metrics.yaml")\n'
                    "from components.manifests import rule_lint\n")
    assert reaches_outside(old) == ["line 1: .parent.parent", "line 2: 'components/manifests/metrics.yaml'"]
    assert imported_roots(old) & PROJECT_PACKAGES == {"components"}


@pytest.mark.parametrize("module", pack_modules(), ids=lambda p: str(p.relative_to(PACK)))
def test_no_pack_module_imports_project_code_or_reaches_outside_the_pack(module):
    tree = ast.parse(module.read_text(), str(module))
    assert imported_roots(tree) & PROJECT_PACKAGES == set()
    assert reaches_outside(tree) == []


def requirement_pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def test_the_pack_imports_only_what_its_requirements_install_pinned_as_the_project_pins_them():
    pack_pins = requirement_pins((PACK / "requirements.txt").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    project_pins = requirement_pins("\n".join(project))
    distributions = packages_distributions()
    third_party = set()
    for module in pack_modules():
        for root in imported_roots(ast.parse(module.read_text())):
            if root in sys.stdlib_module_names or root in ("__future__", "policies"):
                continue
            assert root in distributions, f"{module.name} imports {root}, which no installed distribution provides"
            third_party.update(re.sub(r"[-_.]+", "-", d.lower()) for d in distributions[root])
    # Exactly what the modules import: a missing pin breaks the CLI's venv, an unused one is dead weight.
    assert set(pack_pins) == third_party
    # The offline check drives pulumi-policy's private servicer: the served pack must run the same release.
    assert pack_pins == {name: project_pins.get(name) for name in pack_pins}


def isolated_env() -> dict[str, str]:
    """Only the venv's site-packages on the path, and (python -S) no .pth files: the editable install of this
    project, which would make `components` and `runbooks` importable from anywhere, is not loaded. Unbuffered:
    the pack writes its port to stdout without a flush."""
    return {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def test_the_isolated_interpreter_cannot_import_the_project(tmp_path):
    for package in ("components", "runbooks", "llmops", "policies"):
        result = subprocess.run([sys.executable, "-S", "-c", f"import {package}"], env=isolated_env(), cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, package


@pytest.fixture
def copied_pack(tmp_path):
    """The pack copied alone under another name, run as the Pulumi CLI runs it (`python <pack folder>`, from the
    user's directory), with nothing of the project importable."""
    copy = tmp_path / "elsewhere" / "guardrails"
    shutil.copytree(PACK, copy, ignore=shutil.ignore_patterns("venv", "__pycache__"))
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    process = subprocess.Popen([sys.executable, "-S", str(copy)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=workdir, env=isolated_env())
    try:
        port = process.stdout.readline().decode().strip()
        assert port.isdigit(), process.stderr.read().decode()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=30)


BASE = "https://runbooks.example.com/llmops"


def prometheus_rule(url: str) -> struct_pb2.Struct:
    properties = struct_pb2.Struct()
    properties.update({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                       "metadata": {"name": "alerts", "namespace": "monitoring"},
                       "spec": {"groups": [{"name": "g", "rules": [
                           {"alert": "A", "expr": "up == 0", "labels": {"severity": "page"},
                            "annotations": {"runbook_url": url}}]}]}})
    return properties


def alert_findings(stub, url: str) -> list[str]:
    response = stub.Analyze(proto.AnalyzeRequest(
        type="kubernetes:monitoring.coreos.com/v1:PrometheusRule", properties=prometheus_rule(url),
        urn="urn:pulumi:s::p::kubernetes:monitoring.coreos.com/v1:PrometheusRule::alerts", name="alerts"))
    return [d.message.split("\n", 1)[1] for d in response.diagnostics if d.policyName == "alert-runbooks"]


def test_a_copy_of_the_pack_alone_checks_runbook_links_against_the_names_in_its_config(copied_pack):
    settings = struct_pb2.Struct()
    settings.update({"runbookBaseUrl": BASE, "runbooks": ["failover", "rollback"]})
    copied_pack.Configure(proto.ConfigureAnalyzerRequest(policyConfig={
        name: proto.PolicyConfig(enforcementLevel=proto.MANDATORY, properties=settings) for name in POLICY_NAMES}))
    assert alert_findings(copied_pack, f"{BASE}/rollback.md") == []
    assert alert_findings(copied_pack, f"{BASE}/reindex.md") == [
        f"PrometheusRule alerts, group g, alert A: runbook_url {BASE}/reindex.md names no catalogued runbook page; "
        f"use {BASE}/<failover|rollback>.md."]
