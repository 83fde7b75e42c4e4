"""RegionalFailover on the offline plan of the real prod stack (and variants of it): health checks that
prove each model is loaded, failover records evaluating them, replication re-encrypted in the
destination, standby modes with their recovery time, and residency enforced on the config."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from components import config
from llmops.offline.engine import run_program
from llmops.offline.project import engine_value, load_project, load_stack
from tests.conftest import write_program_copy

ROOT = Path(__file__).resolve().parents[2]
PROD = "stacks/Pulumi.prod.yaml"


@pytest.fixture
def prod_yaml() -> dict:
    return copy.deepcopy(yaml.safe_load((ROOT / PROD).read_text()))


def parse(stack: dict) -> config.StackConfig:
    return config.parse({k: engine_value(v) for k, v in stack["config"].items()}, PROD)


def error_of(stack: dict) -> str:
    with pytest.raises(config.ConfigError) as caught:
        parse(stack)
    return str(caught.value)


def test_every_model_in_every_region_has_an_https_check_that_needs_the_model_loaded(plans):
    plan = plans["prod"]
    checks = {r.name: r.inputs for r in plan.by_type("aws:route53/healthCheck:HealthCheck")}
    for code, region in (("use1", "us-east-1"), ("usw2", "us-west-2")):
        for model in ("chat", "chat-small"):
            check = checks[f"prod-failover-{code}-{model}"]
            assert check["type"] == "HTTPS_STR_MATCH" and check["port"] == 443 and check["enableSni"] is True
            assert check["fqdn"] == f"{model}.{code}.inference.prod.example.com"
            assert check["resourcePath"] == "/v1/models" and check["searchString"] == f'"id":"{model}"'
            assert (check["requestInterval"], check["failureThreshold"]) == (10, 3)
            assert check["tags"]["llmops.io/region"] == region
        region_check = checks[f"prod-failover-{code}"]
        assert region_check["type"] == "CALCULATED" and region_check["childHealthThreshold"] == 2
        assert region_check["tags"]["llmops.io/region"] == region
        children = sorted(region_check["childHealthchecks"])  # the mock engine's ids are <name>-<hash>
        assert [c.rsplit("-", 1)[0] for c in children] == [f"prod-failover-{code}-chat", f"prod-failover-{code}-chat-small"]


def test_failover_records_point_each_name_at_its_regions_with_their_readiness(plans):
    plan = plans["prod"]
    records = [r for r in plan.by_type("aws:route53/record:Record")]
    assert len(records) == 4
    for record in records:
        i = record.inputs
        code = {"us-east-1": "use1", "us-west-2": "usw2"}[i["setIdentifier"]]
        model = i["name"].split(".")[0]
        assert i["zoneId"] == "Z0PRODEXAMPLE0INFERENCE" and i["type"] == "CNAME" and i["ttl"] == 60
        assert i["name"] == f"{model}.inference.prod.example.com"
        assert i["records"] == [f"{model}.{code}.inference.prod.example.com"]
        role = "PRIMARY" if code == "use1" else "SECONDARY"
        assert i["failoverRoutingPolicies"] == [{"type": role}]
        assert i["healthCheckId"] == plan.outputs["failover"]["healthChecks"][i["setIdentifier"]]
        assert i["healthCheckId"].startswith(f"prod-failover-{code}-")


def test_artifacts_and_snapshots_replicate_reencrypted_with_metrics(plans):
    plan = plans["prod"]
    configs = {r.name: r for r in plan.by_type("aws:s3/bucketReplicationConfig:BucketReplicationConfig")}
    assert set(configs) == {"prod-failover-replicate-artifacts", "prod-failover-replicate-snapshots"}
    for kind, source_name, key_name in (("artifacts", "prod-use1-artifacts", "prod-usw2-registry"),
                                        ("snapshots", "prod-use1-index-snapshots", "prod-usw2-retrieval")):
        replication = configs[f"prod-failover-replicate-{kind}"]
        assert replication.inputs["bucket"].rsplit("-", 1)[0] == source_name  # mock ids: <name>-<hash>
        assert replication.provider.endswith("::prod-use1-aws")
        (rule,) = replication.inputs["rules"]
        assert rule["destination"]["bucket"].rsplit("-", 1)[0] == "arn:aws:s3:::" + source_name.replace("use1", "usw2")
        replica_key = rule["destination"]["encryptionConfiguration"]["replicaKmsKeyId"]
        assert replica_key.startswith(f"arn:aws:kms:us-west-2:123456789012:key/{key_name}-")
        assert rule["destination"]["replicationTime"] == {"status": "Enabled", "time": {"minutes": 15}}
        assert rule["destination"]["metrics"] == {"status": "Enabled", "eventThreshold": {"minutes": 15}}
        assert rule["sourceSelectionCriteria"]["sseKmsEncryptedObjects"] == {"status": "Enabled"}
        policy = json.loads(plan.get("aws:iam/rolePolicy:RolePolicy", f"prod-failover-replicate-{kind}").inputs["policy"])
        resources = [r for s in policy["Statement"]
                     for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
        assert "*" not in resources and all(r.startswith("arn:aws:") for r in resources)
        kms = [s for s in policy["Statement"] if s["Action"][0].startswith("kms:")]
        assert {s["Condition"]["StringLike"]["kms:ViaService"] for s in kms} == {"s3.us-east-1.amazonaws.com",
                                                                                  "s3.us-west-2.amazonaws.com"}


def test_single_region_stacks_have_no_failover(plans):
    for stack in ("dev", "staging"):
        assert not plans[stack].by_type("aws:route53/healthCheck:HealthCheck")
        assert "failover" not in plans[stack].outputs


def test_the_warm_standby_and_its_recovery_time_are_stack_outputs(plans):
    failover = plans["prod"].outputs["failover"]
    assert failover["standby"] == {"us-west-2": {"mode": "warm", "expectedRecoverySeconds": 10 * 3 + 60}}
    assert failover["routing"] == "failover" and failover["detectionSeconds"] == 90


def test_a_cold_standby_keeps_no_gpu_node_or_replica_and_says_how_long_recovery_takes(tmp_path, prod_yaml):
    prod_yaml["config"]["llmops:failover"]["standby"]["us-west-2"] = {"mode": "cold", "nodeStartSeconds": 480}
    program = load_project(write_program_copy(tmp_path, "prod", prod_yaml))
    plan = run_program(program, load_stack(program, "prod"))
    for group in plan.by_type("aws:eks/nodeGroup:NodeGroup"):
        if "gpu" in group.name:
            scaling = group.inputs["scalingConfig"]
            cold = group.name.startswith("prod-usw2")
            assert (scaling["minSize"] == 0 and scaling["desiredSize"] == 0) is cold, group.name
    vllm = [o for o in plan.kubernetes_objects() if o.inputs["kind"] == "Deployment"
            and "llmops.io/model" in o.inputs["metadata"].get("labels", {})]
    assert len(vllm) == 4
    for obj in vllm:
        assert (obj.inputs["spec"].get("replicas") == 0) is ("usw2" in obj.urn), obj.urn
    # chat: 140 GiB -> node 480 s + download 1400 s + load 180 + 560 s; plus detection and DNS 90 s.
    assert plan.outputs["failover"]["standby"]["us-west-2"] == {"mode": "cold", "expectedRecoverySeconds": 2710}
    from llmops.offline.report import summarize

    assert "failover (failover): us-west-2 is a cold standby; expected recovery 45 min 10 s" in summarize(plan)


@pytest.mark.parametrize("change, expected", [
    (lambda s: s["config"].pop("llmops:failover"),
     f"{PROD}: llmops:failover = null: required when the stack has secondary regions (us-west-2): hostedZoneId at least, "
     "so traffic can move between them"),
    (lambda s: s["config"]["llmops:failover"].__setitem__("replicateTo", ["eu-west-1"]),
     f"{PROD}: llmops:failover.replicateTo[0] = \"eu-west-1\": expected one of the allowed regions (data residency: "
     "us-east-1, us-east-2, us-west-2); replicas are data too"),
    (lambda s: s["config"]["llmops:failover"].__setitem__("replicateTo", ["us-east-2"]),
     f"{PROD}: llmops:failover.replicateTo[0] = \"us-east-2\": expected a secondary region of this stack (us-west-2): "
     "its buckets receive the copies"),
    (lambda s: s["config"]["llmops:failover"]["standby"].__setitem__("us-east-2", {"mode": "warm"}),
     f"{PROD}: llmops:failover.standby.us-east-2 = \"warm\": expected a secondary region of this stack: us-west-2"),
    (lambda s: (s["config"]["llmops:failover"].__setitem__("routing", "latency"),
                s["config"]["llmops:failover"]["standby"].__setitem__("us-west-2", {"mode": "cold"})),
     f"{PROD}: llmops:failover.standby.us-west-2.mode = \"cold\": expected warm with latency routing: every region "
     "takes traffic (active-active)"),
    (lambda s: s["config"]["llmops:gpuPools"][1].__setitem__("minSize", 0),
     f"{PROD}: llmops:gpuPools[1].minSize = 0: expected at least 1: us-west-2 is a warm standby, so its models must "
     "stay loaded"),
    (lambda s: s["config"]["llmops:regions"].__setitem__("secondaries", ["us-west-2", "us-east-2"]),
     None),  # failover routing with two secondaries (checked below)
])
def test_failover_config_is_checked_before_anything_is_declared(prod_yaml, change, expected):
    change(prod_yaml)
    if expected is None:
        prod_yaml["config"]["llmops:network"]["vpcCidrs"]["us-east-2"] = "10.62.0.0/16"
        assert error_of(prod_yaml) == (f"{PROD}: llmops:failover.routing = \"failover\": expected latency with 2 "
                                       "secondaries: Route53 failover routing has one PRIMARY and one SECONDARY record per name")
        return
    assert error_of(prod_yaml) == expected
