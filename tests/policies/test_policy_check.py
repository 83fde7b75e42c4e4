"""`llmops policy check` end to end: our stacks, a program with known mistakes, formats, config, the real pack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc

from llmops.cli import main
from llmops.offline.project import load_stack
from llmops.policy.runner import check_plan, resolve_config
from llmops.policy.settings import pack_config_for_stack
from policies.pack import POLICY_NAMES
from runbooks.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
INSECURE = ROOT / "tests" / "fixtures" / "programs" / "insecure"


def run_json(capsys, *args):
    code = main(["policy", "check", *args, "--output", "json"])
    return code, json.loads(capsys.readouterr().out)["violations"]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_our_stacks_have_no_violation(plans, project, stack):
    # RegionalFailover declares what prod-multi-region-failover asks for: no advisory finding is left either.
    assert check_plan(plans[stack], pack_config_for_stack(load_stack(project, stack))) == []


def test_cli_passes_our_stacks(capsys):
    code, violations = run_json(capsys)
    assert code == 0
    assert violations == []


def test_the_insecure_program_gets_exactly_its_five_violations(capsys):
    code, violations = run_json(capsys, "--program", str(INSECURE))
    assert code == 1
    found = sorted((v["policy"], v["name"], v["enforcement"]) for v in violations)
    assert found == [
        ("gpu-node-group-tainted", "gpus", "mandatory"),
        ("k8s-image-digest", "exporter", "mandatory"),
        ("k8s-no-privilege", "node-debugger", "mandatory"),
        ("rds-encrypted-private", "reports", "mandatory"),
        ("s3-public-access-blocked", "exports", "mandatory"),
    ]
    assert all(v["urn"].startswith("urn:pulumi:test::insecure::") and v["stack"] == "test" for v in violations)


def test_a_policy_config_file_can_relax_a_policy(capsys, tmp_path):
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"all": "mandatory", "k8s-image-digest": "advisory",
                                  "rds-encrypted-private": "disabled"}))
    code, violations = run_json(capsys, "--program", str(INSECURE), "--policy-config", str(config))
    assert code == 1
    levels = {v["policy"]: v["enforcement"] for v in violations}
    assert levels["k8s-image-digest"] == "advisory" and "rds-encrypted-private" not in levels


def test_sarif_output_is_sarif_2_1_0(capsys):
    assert main(["policy", "check", "--program", str(INSECURE), "--output", "sarif"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == "2.1.0"
    (run,) = document["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == POLICY_NAMES
    assert len(run["results"]) == 5
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"] and result["level"] == "error"
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "Pulumi.test.yaml"
        assert result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].startswith("urn:pulumi:")


def test_text_output_is_a_readable_report(capsys):
    assert main(["policy", "check", "--program", str(INSECURE)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "stack test: 5 mandatory, 0 advisory violation(s) (25 policies over 9 resources)"
    assert "  [mandatory] s3-public-access-blocked  exports" in out


def test_bad_usage_exits_2_and_names_the_problem(capsys, tmp_path):
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"k8s-image-digests": "advisory"}))
    assert main(["policy", "check", "--program", str(INSECURE), "--policy-config", str(config)]) == 2
    assert "no policy named k8s-image-digests" in capsys.readouterr().err
    config.write_text(json.dumps({"k8s-image-digest": "strict"}))
    assert main(["policy", "check", "--program", str(INSECURE), "--policy-config", str(config)]) == 2
    assert "k8s-image-digest = 'strict': expected one of" in capsys.readouterr().err
    assert main(["policy", "check", "--stack", "nope"]) == 2


def test_unknown_override_in_a_stack_file_is_refused(tmp_path, stack_yaml, capsys):
    from tests.conftest import write_program_copy

    stack_yaml["config"]["llmops:policy"] = {"enforcement": "mandatory", "overrides": {"k8s-image-digests": "advisory"}}
    program = write_program_copy(tmp_path, "dev", stack_yaml)
    assert main(["policy", "check", "--program", str(program), "--stack", "dev"]) == 2
    assert "llmops:policy.overrides.k8s-image-digests: no such policy" in capsys.readouterr().err


def test_policy_config_prints_what_the_cli_takes(capsys):
    assert main(["policy", "config", "--stack", "prod"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["all"] == "mandatory"
    # The failover policy is mandatory in prod now that RegionalFailover declares what it asks for.
    assert "enforcementLevel" not in config["prod-multi-region-failover"]
    assert config["data-residency"]["allowedRegions"] == ["us-east-1", "us-east-2", "us-west-2"]
    resolved = resolve_config(config)
    assert resolved["prod-multi-region-failover"][0].value == "mandatory"
    assert resolved["k8s-image-digest"][1]["environment"] == "prod"
    # The pack reads no catalogue of its own: `pulumi preview --policy-pack-config` hands it the names.
    assert config["alert-runbooks"]["runbooks"] == sorted(load_catalog())


def test_a_policy_setting_of_the_wrong_shape_is_refused_naming_the_key(capsys, tmp_path):
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"alert-runbooks": {"runbooks": "rollback"}}))
    assert policy_check_refusal(capsys, config) == (
        f"{config}: alert-runbooks.runbooks: 'rollback' is not of type 'array'")
    config.write_text(json.dumps({"all": {"runbooks": []}}))
    assert policy_check_refusal(capsys, config) == f"{config}: all.runbooks: [] should be non-empty"
    config.write_text(json.dumps({"data-residency": {"environment": "qa"}}))
    assert policy_check_refusal(capsys, config) == (
        f"{config}: data-residency.environment: 'qa' is not one of ['dev', 'staging', 'prod']")


@pytest.fixture
def served_pack():
    """The pack as the Pulumi CLI runs it: `python policies/__main__.py` prints its port and serves gRPC."""
    # Unbuffered: the pack writes its port without a flush, and this must not depend on the caller's environment.
    process = subprocess.Popen([sys.executable, str(ROOT / "policies" / "__main__.py")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=ROOT / "policies",
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
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


def test_the_served_pack_gives_the_same_verdict_as_the_offline_check(served_pack):
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "llmops-policies" and [p.name for p in info.policies] == POLICY_NAMES
    served_pack.Configure(proto.ConfigureAnalyzerRequest(policyConfig={
        name: proto.PolicyConfig(enforcementLevel=proto.MANDATORY) for name in POLICY_NAMES}))
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "exporter", "namespace": "jobs",
                               "labels": {"owner": "o", "cost-center": "c", "environment": "e"}},
                  "spec": {"template": {"spec": {"containers": [{"name": "exporter", "image": "nginx:1.27"}]}}}}
    properties = struct_pb2.Struct()
    properties.update(deployment)
    response = served_pack.Analyze(proto.AnalyzeRequest(type="kubernetes:apps/v1:Deployment", properties=properties,
                                                        urn="urn:pulumi:s::p::kubernetes:apps/v1:Deployment::exporter",
                                                        name="exporter"))
    served = sorted((d.policyName, d.message) for d in response.diagnostics)

    from tests.policies.builders import PlanBuilder

    builder = PlanBuilder()
    builder.add("kubernetes:apps/v1:Deployment", "exporter", deployment)
    offline = sorted((v.policy, v.message) for v in check_plan(builder.plan(), {"all": "mandatory"})
                     if v.policy in {p for p, _ in served})
    assert [p for p, _ in served] == ["k8s-image-digest", "k8s-no-privilege", "k8s-resource-limits",
                                      "k8s-run-as-non-root"]
    descriptions = {p.name: p.description for p in info.policies}
    assert [(p, m.removeprefix(descriptions[p] + "\n")) for p, m in served] == offline


def policy_check_refusal(capsys, config_file) -> str:
    code = main(["policy", "check", "--program", str(INSECURE), "--policy-config", str(config_file)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1, err
    return err.removeprefix("llmops: ").strip()


def test_a_policy_config_that_is_not_utf8_names_the_file_and_line(capsys, tmp_path):
    config = tmp_path / "policy.json"
    config.write_bytes(b'{\n  "all": "mandatory",\n  "k8s-image-digest": "adv\xe9sory"\n}\n')
    assert policy_check_refusal(capsys, config) == (
        f"{config}: line 3, column 27: not UTF-8 (byte 0xe9); expected UTF-8 text (JSON)")


def test_invalid_json_names_the_file_line_and_column(capsys, tmp_path):
    config = tmp_path / "policy.json"
    config.write_text('{\n  "all": "mandatory",\n  "k8s-image-digest": advisory\n}\n')
    assert policy_check_refusal(capsys, config) == f"{config}: line 3, column 23: not valid JSON: Expecting value"
    config.write_text("")
    assert policy_check_refusal(capsys, config) == f"{config}: line 1, column 1: not valid JSON: Expecting value"


def test_a_policy_config_must_be_an_object_of_known_policies(capsys, tmp_path):
    config = tmp_path / "policy.json"
    config.write_text('["k8s-image-digest"]')
    assert policy_check_refusal(capsys, config) == (
        f"{config}: expected a JSON object of policy names to levels or settings, found a list")
    config.write_text('{"k8s-image-digest": 3}')
    assert policy_check_refusal(capsys, config) == (
        f"{config}: k8s-image-digest = 3: expected a level (advisory, mandatory, remediate, disabled) or an object")
    assert policy_check_refusal(capsys, tmp_path) == f"{tmp_path}: cannot read (Is a directory); expected a file"


def test_policy_config_refuses_the_file_it_would_print(capsys, tmp_path):
    # `llmops policy config --policy-config FILE` hands FILE on to `pulumi preview`: it must be a valid one.
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"k8s-image-digests": "advisory"}))
    assert main(["policy", "config", "--stack", "dev", "--policy-config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{config}: no policy named k8s-image-digests; policies: " in captured.err



def test_converting_each_resource_once_per_check_changes_no_verdict(plans, project):
    """check_plan converts each message from protobuf once instead of once per policy: same findings, same words."""
    from llmops.offline.engine import run_program
    from llmops.offline.project import load_project
    from llmops.policy import runner

    insecure = load_project(INSECURE)
    for plan, config, found in ((run_program(insecure, load_stack(insecure, "test")), {"all": "mandatory"}, 5),
                                (plans["prod"], pack_config_for_stack(load_stack(project, "prod")), 0)):
        assert runner._CONVERTED.get() is None  # outside a check, the servicer converts as it always did
        once = check_plan(plan, config)
        assert once == runner._check_plan(plan, config, "policy config")  # converted per policy, as the engine does
        assert len(once) == found
