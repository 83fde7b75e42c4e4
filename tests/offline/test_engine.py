"""The offline harness on a program that is not ours: capture, secrets, duplicates, errors, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmops.cli import main
from llmops.offline.engine import DuplicateUrnError, ProgramError, run_program
from llmops.offline.plan import SECRET_MASK
from llmops.offline.project import ProjectError, load_project, load_stack

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "programs" / "sample"


@pytest.fixture(scope="module")
def sample():
    return load_project(SAMPLE)


def test_captures_type_name_parent_provider_and_wire_inputs(sample):
    plan = run_program(sample, load_stack(sample, "test"))
    bucket = plan.get("aws:s3/bucket:Bucket", "reports")
    assert bucket.inputs == {"bucketPrefix": "reports", "tags": {"team": "search"}}
    assert bucket.parent == "urn:pulumi:test::sample::pulumi:pulumi:Stack::sample-test"
    assert bucket.provider == ""  # the default provider
    deployment = plan.get("kubernetes:apps/v1:Deployment", "web")
    assert deployment.provider == "urn:pulumi:test::sample::pulumi:pulumi:Stack$pulumi:providers:kubernetes::cluster"
    assert deployment.inputs["spec"]["replicas"] == 3 and isinstance(deployment.inputs["spec"]["replicas"], int)
    assert deployment.inputs["apiVersion"] == "apps/v1"


def test_config_reaches_the_program_as_the_cli_passes_it(sample):
    settings = load_stack(sample, "test")
    assert settings.config["sample:replicas"] == "3"
    assert json.loads(settings.config["sample:labels"]) == {"team": "search"}
    assert settings.secret_keys == ["sample:dbPassword"]


def test_secrets_are_masked_in_inputs_and_outputs(sample):
    plan = run_program(sample, load_stack(sample, "test"))
    assert plan.get("aws:ssm/parameter:Parameter", "db-password").inputs["value"] == SECRET_MASK
    assert plan.outputs["password"] == SECRET_MASK
    assert "v1:AAAABBBBCCCC" not in plan.dumps()


def test_mock_provider_computes_region_aware_outputs(sample):
    plan = run_program(sample, load_stack(sample, "test"))
    assert plan.outputs["region"] == "eu-west-1"  # from aws:region, as the default provider would use


def test_duplicate_urns_fail_as_in_the_real_engine(sample):
    urn = r"urn:pulumi:dupe::sample::pulumi:pulumi:Stack\$aws:s3/bucket:Bucket::reports$"
    with pytest.raises(DuplicateUrnError, match=rf"rejects: {urn}"):
        run_program(sample, load_stack(sample, "dupe"))


def test_run_error_is_a_user_error_with_its_message(sample):
    with pytest.raises(ProgramError) as caught:
        run_program(sample, load_stack(sample, "broken"))
    assert caught.value.user_error and "sample:bucketPrefix must not be empty" in str(caught.value)


def test_unknown_stack_and_missing_program_are_named(sample, tmp_path):
    with pytest.raises(ProjectError, match=r"Pulumi.nope.yaml: no such stack file; stacks of sample: broken, dupe, test"):
        load_stack(sample, "nope")
    with pytest.raises(ProjectError, match=r"no Pulumi.yaml"):
        load_project(tmp_path)


def test_cli_json_and_render_for_any_program(tmp_path, capsys):
    plan_file, manifests = tmp_path / "plan.json", tmp_path / "manifests"
    code = main(["preview", "--program", str(SAMPLE), "--stack", "test", "--json", str(plan_file),
                 "--render", str(manifests), "--validate"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "stack test (sample): 4 resources" in out
    document = json.loads(plan_file.read_text())
    assert set(document) == {"stack", "resources", "outputs"}
    assert {tuple(sorted(r)) for r in document["resources"]} == {("inputs", "name", "parent", "provider", "type", "urn")}
    rendered = manifests / "test" / "cluster" / "default" / "deployment-web.yaml"
    assert yaml.safe_load(rendered.read_text())["spec"]["replicas"] == 3


def test_cli_exit_codes(capsys, tmp_path):
    assert main(["preview", "--program", str(SAMPLE), "--stack", "dupe"]) == 1
    assert main(["preview", "--program", str(SAMPLE), "--stack", "broken"]) == 2
    assert main(["preview", "--program", str(SAMPLE), "--stack", "nope"]) == 2
    assert main(["preview", "--program", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sample:bucketPrefix must not be empty" in err and "no Pulumi.yaml" in err


def test_invalid_manifest_fails_validation_with_exit_1(tmp_path, capsys):
    program = tmp_path / "program"
    program.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.test.yaml"):
        (program / name).write_text((SAMPLE / name).read_text())
    source = (SAMPLE / "__main__.py").read_text().replace('"replicas": replicas,', '"replicas": replicas, "replica": 2,')
    (program / "__main__.py").write_text(source)
    assert main(["preview", "--program", str(program), "--stack", "test", "--validate"]) == 1
    err = capsys.readouterr().err
    assert "Deployment/default/web: spec: Additional properties are not allowed ('replica' was unexpected)" in err
