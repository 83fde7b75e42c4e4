"""The code's layering is kept by import-linter (contracts in pyproject.toml). This proves the contracts
bite: the real tree passes, and a copy of it where the runbook engine imports boto3, or a library imports
the CLI, is refused naming the contract and the import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("components", "runbooks", "llmops", "policies")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.fail(f"import-linter is missing ({linter}); install the dev extra: pip install -e '.[dev]'")
    return subprocess.run([str(linter), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


def copy_of_the_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__", "venv"))
    return tree


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract, chain", [
    ("runbooks/engine/journal.py", "import boto3", "The runbook engine imports no cloud",
     "runbooks.engine.journal -> boto3"),
    ("llmops/pii/scanner.py", "import llmops.cli", "The CLI is the top layer", "llmops.pii.scanner -> llmops.cli"),
    ("components/manifests/vllm.py", "import pulumi", "Kubernetes objects and release ids are plain Python",
     "components.manifests.vllm -> pulumi"),
    ("components/release.py", "import runbooks.engine", "Layers", "components.release -> runbooks.engine"),
])
def test_a_forbidden_import_breaks_the_build_naming_the_contract(tmp_path, module, line, contract, chain):
    tree = copy_of_the_tree(tmp_path)
    path = tree / module
    source = path.read_text()
    path.write_text(source.replace("from __future__ import annotations\n",
                                   f"from __future__ import annotations\n\n{line}\n", 1))
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert contract in result.stdout and "BROKEN" in result.stdout
    assert chain in " ".join(result.stdout.split()), result.stdout  # the offending import, by module
