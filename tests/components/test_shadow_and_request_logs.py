"""Shadow releases in the rendered stacks (their own Deployment and Service, reached by the route's mirror only,
counted in the pool) and the request logs' durable copy (a bucket per region that only Fluent Bit writes, under one
prefix, with every record's model, track and release)."""

from __future__ import annotations

import json

import pytest

from components import config
from components.manifests import request_logs
from components.manifests.vllm import (
    MIRRORED,
    REQUEST_ID_HEADER_ENV,
    REQUEST_LOG_ENV,
    TRACK_LABEL,
    TRAFFIC_LABEL,
)
from components.vllm_service import VllmServiceArgs, vllm_spec
from llmops.offline.project import load_stack
from llmops.offline.report import summarize
from tests.components.test_drift_monitor import classic_sections
from tests.conftest import STACKS, objects_of

LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


def named(plan, kind, name, namespace="serving"):
    return next(o for o in objects_of(plan, kind) if o["metadata"]["name"] == name
                and o["metadata"].get("namespace") == namespace)


def env_of(deployment):
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_staging_renders_chat_smalls_shadow_beside_stable_and_canary(plans, project):
    cfg = config.parse(load_stack(project, "staging").config, "staging")
    model = next(m for m in cfg.models if m.name == "chat-small")
    assert model.shadow is not None and model.shadow.sample_percent == 10
    plan = plans["staging"]
    shadow = named(plan, "Deployment", "chat-small-shadow")
    assert shadow["spec"]["replicas"] == model.shadow.replicas  # fixed: the autoscaler sizes the stable only
    labels = shadow["spec"]["template"]["metadata"]["labels"]
    assert labels[TRACK_LABEL] == "shadow" and labels[TRAFFIC_LABEL] == MIRRORED
    (container,) = shadow["spec"]["template"]["spec"]["containers"]
    stable = named(plan, "Deployment", "chat-small")
    (stable_container,) = stable["spec"]["template"]["spec"]["containers"]
    assert container["image"] == stable_container["image"]  # the same container, the shadow's release
    assert container["readinessProbe"] and container["livenessProbe"] and container["startupProbe"]
    assert "--served-model-name" in container["args"] and "/models/llama-3-1-8b-instruct/5" in container["args"]
    named(plan, "PodDisruptionBudget", "chat-small-shadow")
    service = named(plan, "Service", "chat-small-shadow")
    assert service["spec"]["selector"][TRACK_LABEL] == "shadow"
    for other in ("chat-small", "chat-small-canary"):  # no other Service selects the shadow's pods
        selector = named(plan, "Service", other)["spec"]["selector"]
        assert not all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("stack", STACKS)
def test_every_serving_container_logs_its_model_track_and_release(plans, stack):
    for deployment in objects_of(plans[stack], "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") != "llm-serving":
            continue
        env = env_of(deployment)
        assert env[REQUEST_LOG_ENV["model"]] == labels["llmops.io/model"]
        assert env[REQUEST_LOG_ENV["track"]] == labels[TRACK_LABEL]
        assert env[REQUEST_LOG_ENV["release"]] == labels["llmops.io/release"]
        assert env[REQUEST_ID_HEADER_ENV] == "x-request-id"  # mirrored and primary records join on it


def test_a_cold_standby_runs_no_shadow(project):
    cfg = config.parse(load_stack(project, "staging").config, "staging")
    model = next(m for m in cfg.models if m.name == "chat-small")
    args = VllmServiceArgs(model=model, pool=cfg.pool(model.pool), surge=0, region_code="use1", serving=cfg.serving,
                           namespace="serving", gateway="inference", registry_uri="http://mlflow",
                           fetch_image=cfg.registry.image, retrieval_fingerprints={"docs": "f"}, tags=dict(cfg.tags))
    assert vllm_spec(args).shadow is not None
    assert vllm_spec(VllmServiceArgs(**{**args.__dict__, "cold": True})).shadow is None


def test_shadow_gpus_are_counted_in_the_pool_and_its_surge(project):
    cfg = config.parse(load_stack(project, "staging").config, "staging")
    model = next(m for m in cfg.models if m.name == "chat-small")
    assert model.shadow_gpus() == 1
    assert model.peak_gpus() == (model.ceiling + 1 + 1) * model.tensor_parallel_size
    assert config.rollout_surge(cfg, model) == 0  # 12 of 12 GPUs held: no room to surge


def test_the_plan_prints_what_each_shadow_costs(plans):
    text = summarize(plans["staging"])
    assert ("  shadow: chat-small in us-east-1 mirrors 10% of its requests to version 5 (release "
            in text) and "1 replica(s), 1 GPU(s) of pool l4" in text
    assert "shadow:" not in summarize(plans["prod"])


# --- the request logs' durable copy ---------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_every_region_keeps_its_request_logs_in_an_expiring_encrypted_bucket(plans, project, stack):
    plan = plans[stack]
    cfg = config.parse(load_stack(project, stack).config, stack)
    for region, out in plan.outputs["regions"].items():
        name = f"{stack}-{config.region_code(region)}-request-logs"
        logs = out["requestLogs"]
        assert logs["prefix"] == "requests/" and logs["uri"] == f"s3://{logs['bucket']}/requests/"
        bucket = plan.get("aws:s3/bucket:Bucket", name)
        assert bucket.inputs["tags"] == {"llmops.io/holds": "serving request logs"}
        rules = {r["id"]: r for r in plan.get(LIFECYCLE, name).inputs["rules"]}
        assert rules["expire-objects"]["expiration"]["days"] == cfg.request_logs.retention_days
        assert plan.get("aws:kms/key:Key", name).inputs["enableKeyRotation"] is True
        policy = json.loads(plan.get("aws:s3/bucketPolicy:BucketPolicy", name).inputs["policy"])
        assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("stack", STACKS)
def test_only_fluent_bit_may_write_and_only_under_the_prefix(plans, stack):
    plan = plans[stack]
    for region, out in plan.outputs["regions"].items():
        name = f"{stack}-{config.region_code(region)}-request-logs"
        bucket_arn = f"arn:aws:s3:::{out['requestLogs']['bucket']}"
        statements = json.loads(plan.get("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])["Statement"]
        assert [(s["Sid"], s["Action"]) for s in statements] == [("WriteRequestLogs", "s3:PutObject"),
                                                                 ("RequestLogsKey", "kms:GenerateDataKey")]
        assert statements[0]["Resource"] == f"{bucket_arn}/requests/*"
        assert statements[1]["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}
        (trust,) = json.loads(plan.get("aws:iam/role:Role", name).inputs["assumeRolePolicy"])["Statement"]
        issuer = out["oidcProviderArn"].split(":oidc-provider/")[1]
        assert trust["Condition"]["StringEquals"][f"{issuer}:sub"] == "system:serviceaccount:logging:fluent-bit"


@pytest.mark.parametrize("stack", STACKS)
def test_fluent_bit_ships_every_request_log_record_to_the_regions_bucket(plans, stack):
    plan = plans[stack]
    configs = [o for o in objects_of(plan, "ConfigMap") if o["metadata"]["name"] == request_logs.FLUENT_BIT_CONFIG_MAP]
    buckets = {out["requestLogs"]["bucket"]: region for region, out in plan.outputs["regions"].items()}
    assert len(configs) == len(buckets)
    for found in configs:
        assert found["metadata"]["namespace"] == "logging"
        sections = classic_sections(found["data"][request_logs.FLUENT_BIT_CONF])
        assert [kind for kind, _ in sections] == ["INPUT", "FILTER", "OUTPUT"]
        (_, tail), (_, grep), (_, s3) = sections
        assert tail["Name"] == "tail" and tail["Tag"] == "llmops.requests.*"
        assert grep["Name"] == "grep" and grep["Regex"] == 'log "request_id"'  # request-log records only, all kept
        assert s3["Name"] == "s3" and s3["Match"] == tail["Tag"]
        assert buckets[s3["bucket"]] == s3["region"]
        assert s3["s3_key_format"].startswith("/requests/") and s3["use_put_object"] == "On"
        assert s3["log_key"] == "log" and s3["compression"] == "gzip"


def test_request_logs_retention_is_typed(stack_yaml):
    from tests.components.test_config import error_of

    stack_yaml["config"]["llmops:requestLogs"] = {"retentionDays": 0}
    assert error_of(stack_yaml) == ("stacks/Pulumi.dev.yaml: llmops:requestLogs.retentionDays = 0: expected a value "
                                    ">= 1")
