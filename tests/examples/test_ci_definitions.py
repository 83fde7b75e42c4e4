"""The ready-to-copy CI definitions in examples/ci/, tested by running the commands they run.

Each test copies the project as a CI checkout would have it, takes the `run:` steps of the GitHub workflow (each in
`bash --noprofile --norc -eo pipefail`, as `shell: bash` runs them) or the `script:` of the GitLab job (one script,
as the runner runs it), and runs them there with this venv's `python` and `llmops` first on PATH. On our stacks
they exit 0 and leave a report that validates (the SARIF against the schema github/codeql-action/upload-sarif
validates uploads with); on a prod stack cut down to one region they fail, with the violations in the report and,
readable, in the log; on a stack file the loader refuses they fail with exit 2 and leave nothing to upload.

The install step is checked, not run: it is the project's own install (`-c constraints.txt -e .`, as
scripts/dev.sh makes this venv, which adds the dev extra), and running it needs PyPI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from policies.pack import PACK_NAME, POLICY_NAMES

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "examples" / "ci" / "github" / "policy-check.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab" / "policy-check.gitlab-ci.yml"
SARIF_SCHEMA = ROOT / "tests" / "fixtures" / "sarif" / "sarif-schema-2.1.0.json"
INSTALL = "python -m pip install --disable-pip-version-check -c constraints.txt -e ."
# What a CI checkout does not have: version control, local environments, caches, build output.
NOT_CHECKED_OUT = shutil.ignore_patterns(".git", ".venv", "venv", "build", "*.egg-info", "__pycache__", ".*_cache",
                                         ".cache")


# --- the definitions ------------------------------------------------------------------------------------------

def github_job() -> dict[str, Any]:
    return yaml.safe_load(GITHUB.read_text())["jobs"]["policy-check"]


def github_steps() -> dict[str, dict[str, Any]]:
    """The job's steps by name (a step without one: by the action it uses)."""
    return {step.get("name") or step["uses"].split("@")[0]: step for step in github_job()["steps"]}


def gitlab_job() -> dict[str, Any]:
    return yaml.safe_load(GITLAB.read_text())["policy-check"]


def written_file(command: str) -> str:
    """The file a command's `llmops policy check ... > FILE` writes."""
    match = re.search(r"llmops policy check [^\n>|]*> (\S+)", command)
    assert match, f"no `llmops policy check ... > FILE` in {command!r}"
    return match.group(1)


# --- running them ---------------------------------------------------------------------------------------------

def checkout(tmp_path: Path, *, stacks: dict[str, dict[str, Any]] | None = None) -> Path:
    """The project as a CI job checks it out; `stacks` replaces every stack file with these."""
    tree = tmp_path / "checkout"
    shutil.copytree(ROOT, tree, ignore=NOT_CHECKED_OUT)
    if stacks is not None:
        for old in (tree / "stacks").glob("Pulumi.*.yaml"):
            old.unlink()
        for name, data in stacks.items():
            (tree / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tree


def run(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One shell script as the CI runs it: bash, stopping at the first failing command, this venv first on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LLMOPS_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def github_check(tree: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    step = github_steps()["Policy check"]
    return run(step["run"], tree), tree / written_file(step["run"])


def gitlab_script(tree: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    lines = gitlab_job()["script"]
    assert lines[0] == INSTALL
    script = "\n".join(lines[1:])
    return run(script, tree), tree / written_file(script)


def valid_sarif(path: Path) -> dict[str, Any]:
    """The SARIF, checked as upload-sarif checks it: its JSON schema (format checks off, as there)."""
    document = json.loads(path.read_text())
    schema = json.loads(SARIF_SCHEMA.read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema).iter_errors(document)]
    assert errors == [], errors
    assert document["version"] == "2.1.0"
    (run_,) = document["runs"]
    assert run_["tool"]["driver"]["name"] == PACK_NAME
    assert [rule["id"] for rule in run_["tool"]["driver"]["rules"]] == POLICY_NAMES
    assert isinstance(run_["results"], list)
    return run_


@pytest.fixture
def one_region_prod() -> dict[str, dict[str, Any]]:
    """A prod stack cut down to one region (staging's shape): prod-multi-region-failover is mandatory in prod."""
    data = yaml.safe_load((ROOT / "stacks" / "Pulumi.staging.yaml").read_text())
    data["config"]["llmops:environment"] = "prod"
    data["config"]["llmops:tags"]["environment"] = "prod"
    return {"prod": data}


# --- what they say --------------------------------------------------------------------------------------------

def test_the_workflow_asks_for_what_upload_sarif_needs_and_nothing_more():
    document = yaml.safe_load(GITHUB.read_text())
    triggers = document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers and "push" in triggers
    assert document["permissions"] == {}
    assert github_job()["permissions"] == {"contents": "read", "security-events": "write", "actions": "read"}
    assert github_job()["defaults"]["run"]["shell"] == "bash"
    upload = github_steps()["Upload to code scanning"]
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert upload["with"]["sarif_file"] == written_file(github_steps()["Policy check"]["run"])
    assert "!cancelled()" in upload["if"]  # a check that fails still uploads what it found
    assert "github.event.pull_request.head.repo.full_name == github.repository" in upload["if"]  # a fork: read-only


def test_every_action_is_pinned_by_commit_with_its_release_named():
    uses = re.findall(r"uses: (\S+)(.*)", GITHUB.read_text())
    assert {action.split("@")[0] for action, _ in uses} == {
        "actions/checkout", "actions/setup-python", "github/codeql-action/upload-sarif"}
    for action, comment in uses:
        assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", action), f"{action}: pin by the full commit hash"
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), f"{action}: name the release in a comment (# vX.Y.Z)"


def test_both_install_the_project_as_pinned_with_a_python_it_supports():
    requires = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    steps = github_steps()
    assert steps["Install llmops, pinned by pyproject.toml and constraints.txt"]["run"] == INSTALL
    assert gitlab_job()["script"][0] == INSTALL
    assert {"-c", "constraints.txt", "-e", "."} <= set(shlex.split(INSTALL)) and (ROOT / "constraints.txt").is_file()
    python = steps["actions/setup-python"]["with"]["python-version"]
    image = re.fullmatch(r"python:(\d+\.\d+)-slim-\w+", gitlab_job()["image"])
    assert image and image.group(1) == python
    assert requires.contains(f"{python}.0")


def test_the_gitlab_job_keeps_its_report_and_fails_on_violations():
    job = gitlab_job()
    report = written_file("\n".join(job["script"]))
    assert job["artifacts"]["paths"] == [report]
    assert job["artifacts"]["when"] == "always"  # kept when the job fails: that is when it is read
    assert "allow_failure" not in job


# --- what they do ---------------------------------------------------------------------------------------------

def test_the_workflow_passes_our_stacks_with_a_sarif_to_upload(tmp_path):
    tree = checkout(tmp_path)
    result, sarif = github_check(tree)
    assert result.returncode == 0, result.stderr
    assert valid_sarif(sarif)["results"] == []


def test_the_gitlab_job_passes_our_stacks_with_its_json_report(tmp_path):
    tree = checkout(tmp_path)
    result, report = gitlab_script(tree)
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text()) == {"violations": []}


def test_the_workflow_fails_on_a_violating_stack_and_uploads_the_findings(tmp_path, one_region_prod):
    tree = checkout(tmp_path, stacks=one_region_prod)
    result, sarif = github_check(tree)
    assert result.returncode == 1, result.stderr
    results = valid_sarif(sarif)["results"]
    assert results and {r["ruleId"] for r in results} == {"prod-multi-region-failover"}
    assert {r["level"] for r in results} == {"error"}
    for r in results:  # code scanning files each finding under the stack file, which the checkout has
        uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri == "stacks/Pulumi.prod.yaml" and (tree / uri).is_file()
    shown = run(github_steps()["Show the violations"]["run"], tree)  # the step that runs after a failed check
    assert shown.returncode == 0
    assert "stack prod: 3 mandatory" in shown.stdout and "add a secondary region" in shown.stdout


def test_the_gitlab_job_fails_on_a_violating_stack_with_the_findings_kept(tmp_path, one_region_prod):
    tree = checkout(tmp_path, stacks=one_region_prod)
    result, report = gitlab_script(tree)
    assert result.returncode == 1, result.stderr
    violations = json.loads(report.read_text())["violations"]
    assert {(v["stack"], v["policy"], v["enforcement"]) for v in violations} == {
        ("prod", "prod-multi-region-failover", "mandatory")}
    assert "stack prod: 3 mandatory" in result.stdout  # the same findings, readable, in the job log


def test_a_stack_file_the_loader_refuses_fails_both_with_exit_2_and_nothing_to_upload(tmp_path):
    tree = checkout(tmp_path, stacks={})
    (tree / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  llmops:environment: dev\n  llmops:environment: prod\n")
    github, sarif = github_check(tree)
    assert github.returncode == 2 and "duplicate key" in github.stderr
    assert not sarif.exists()  # the upload step's hashFiles('policy.sarif') is empty: it does not run
    gitlab, _ = gitlab_script(tree)
    assert gitlab.returncode == 2 and "duplicate key" in gitlab.stderr
    assert "mandatory" not in gitlab.stdout  # no second, readable run: there are no findings to show
