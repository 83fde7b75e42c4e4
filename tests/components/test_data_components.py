"""Registry, feature store and retrieval index as planned: encrypted, private, least-privilege, no secrets."""

from __future__ import annotations

import json

import pytest

from llmops.offline.engine import RANDOM_PASSWORD_MARKER
from llmops.offline.render import render
from tests.conftest import objects_of, pod_specs

STACKS = ["dev", "staging", "prod"]


def one(plan, type_, suffix):
    found = [r for r in plan.by_type(type_) if r.name.endswith(suffix)]
    assert found, f"no {type_} named *{suffix}"
    return found


# --- no secret anywhere ----------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_value_in_the_plan_or_any_manifest(plans, stack, tmp_path):
    plan = plans[stack]
    text = plan.dumps()
    assert RANDOM_PASSWORD_MARKER not in text  # generated tokens went only to write-only attributes
    for path in render(plan, tmp_path):
        assert RANDOM_PASSWORD_MARKER not in path.read_text()
    assert not objects_of(plan, "Secret")  # no Kubernetes Secret carries a password of ours
    for name, pod in pod_specs(plan):
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                if any(word in env["name"].upper() for word in ("PASSWORD", "TOKEN", "API_KEY")) and "ARN" not in env["name"]:
                    # Only by reference to a Secret the cluster keeps (the drift monitor's embeddings key), never a value.
                    if set(env) != {"name", "valueFrom"} or set(env["valueFrom"]) != {"secretKeyRef"}:
                        pytest.fail(f"{name}/{container['name']} sets {env['name']} in its manifest")


@pytest.mark.parametrize("stack", STACKS)
def test_write_only_secrets_are_versioned_and_masked(plans, stack):
    plan = plans[stack]
    for version in plan.by_type("aws:secretsmanager/secretVersion:SecretVersion"):
        assert version.inputs["secretStringWo"] == "[secret]" and version.inputs["secretStringWoVersion"] == 1
        assert "secretString" not in version.inputs
    for group in plan.by_type("aws:elasticache/replicationGroup:ReplicationGroup"):
        assert group.inputs["authTokenWo"] == "[secret]" and "authToken" not in group.inputs


# --- buckets -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_every_bucket_is_private_encrypted_versioned_and_tls_only(plans, stack):
    plan = plans[stack]
    buckets = plan.by_type("aws:s3/bucket:Bucket")
    # artifacts, features, index snapshots, request logs, PII scan results per region; runbook evidence and the PII
    # quarantine in the primary
    assert len(buckets) == 5 * len(plan.by_type("llmops:infra:Region")) + 2
    for bucket in buckets:
        name = bucket.name
        block = plan.get("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name).inputs
        assert all(block[k] is True
                   for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        encryption = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        rule = plan.get(encryption, name).inputs["rules"][0]
        assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
        assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")
        versioning = plan.get("aws:s3/bucketVersioning:BucketVersioning", name).inputs
        assert versioning["versioningConfiguration"]["status"] == "Enabled"
        policy = json.loads(plan.get("aws:s3/bucketPolicy:BucketPolicy", name).inputs["policy"])
        (statement,) = policy["Statement"]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        quarantine = bucket.name.endswith("-pii-quarantine")
        # Evidence of personal data is never force-destroyed, not even in dev; it is object-locked for legal holds.
        assert bucket.inputs["forceDestroy"] is (stack == "dev" and not quarantine)
        assert bucket.inputs.get("objectLockEnabled", False) is quarantine


# --- model registry ------------------------------------------------------------------------------------------

def test_registry_database_hardening_per_environment(plans):
    for stack in STACKS:
        for db in plans[stack].by_type("aws:rds/instance:Instance"):
            i = db.inputs
            assert i["storageEncrypted"] is True and i["kmsKeyId"].startswith("arn:aws:kms:")
            assert i["publiclyAccessible"] is False
            assert i["manageMasterUserPassword"] is True and "password" not in i
            assert i["backupRetentionPeriod"] >= 7
            assert i["deletionProtection"] is (stack != "dev")
            assert i["skipFinalSnapshot"] is (stack == "dev")
            assert ("finalSnapshotIdentifier" in i) is (stack != "dev")
            assert i["multiAz"] is (stack == "prod")
    params = plans["prod"].by_type("aws:rds/parameterGroup:ParameterGroup")[0].inputs["parameters"]
    assert {"name": "rds.force_ssl", "value": "1"} in params


def test_registry_database_only_reachable_from_the_cluster(plans):
    plan = plans["prod"]
    for rule in plan.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        assert "cidrIpv4" not in rule.inputs and rule.inputs["referencedSecurityGroupId"].startswith("sg-")
    groups = [g for g in plan.by_type("aws:ec2/securityGroup:SecurityGroup") if "registry-db" in g.name]
    assert groups and all(g.inputs["ingress"] == [] for g in groups)


@pytest.mark.parametrize("stack", STACKS)
def test_service_account_roles_reach_only_their_own_bucket_key_and_secret(plans, stack):
    plan = plans[stack]
    policies = plan.by_type("aws:iam/rolePolicy:RolePolicy")
    assert policies
    for policy in policies:
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), policy.name
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all(r != "*" for r in resources), policy.name
    mlflow = json.loads(next(p for p in policies if p.name.endswith("-mlflow")).inputs["policy"])
    secret = next(s for s in mlflow["Statement"] if s["Sid"] == "ReadSecret")
    assert secret["Resource"].startswith("arn:aws:secretsmanager:") and "rds!db-" in secret["Resource"]


def test_mlflow_migrates_once_in_a_job_before_the_server_starts(plans):
    plan = plans["prod"]
    jobs = [r for r in plan.kubernetes_objects() if r.inputs["kind"] == "Job" and r.inputs["metadata"]["namespace"] == "registry"]
    assert len(jobs) == 2  # one per region
    for job in jobs:
        command = job.inputs["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[command.index("--") + 1:][:2] == ["python", "/opt/llmops/mlflow_migrate.py"]
        server = next(r for r in plan.kubernetes_objects() if r.inputs["kind"] == "Deployment"
                      and r.inputs["metadata"]["name"] == "mlflow" and r.provider == job.provider)
        assert job.urn in server.dependencies
        server_command = server.inputs["spec"]["template"]["spec"]["containers"][0]["command"]
        assert "mlflow_migrate.py" not in " ".join(server_command) and "db" not in server_command[-12:]
        uri = server_command[server_command.index("--backend-store-uri") + 1]
        assert uri.startswith("postgresql://mlflow@") and uri.endswith("sslmode=require") and ":5432/mlflow" in uri


# --- feature store ------------------------------------------------------------------------------------------

def test_redis_is_encrypted_and_fails_over_outside_dev(plans):
    for stack in STACKS:
        groups = plans[stack].by_type("aws:elasticache/replicationGroup:ReplicationGroup")
        assert len(groups) == len(plans[stack].by_type("llmops:infra:Region"))
        for group in groups:
            i = group.inputs
            assert i["atRestEncryptionEnabled"] is True and i["kmsKeyId"].startswith("arn:aws:kms:")
            assert i["transitEncryptionEnabled"] is True and i["transitEncryptionMode"] == "required"
            assert i["automaticFailoverEnabled"] is i["multiAzEnabled"] is (stack != "dev")


def feature_store_yaml(plan) -> str:
    (config_map,) = [c for c in objects_of(plan, "ConfigMap") if c["metadata"]["name"] == "feast-repo"][:1]
    return config_map["data"]["feature_store.yaml"]


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_feature_store_yaml_loads_with_feasts_own_parser(plans, stack, tmp_path, monkeypatch):
    try:
        from feast.repo_config import load_repo_config
    except ImportError as error:
        pytest.fail(f"Feast is needed to check feature_store.yaml (pip install -e '.[dev]'): {error}")
    text = feature_store_yaml(plans[stack])
    assert "${REDIS_PASSWORD}" in text and "password=" + RANDOM_PASSWORD_MARKER not in text
    (tmp_path / "feature_store.yaml").write_text(text)
    monkeypatch.setenv("REDIS_PASSWORD", "from-secrets-manager")
    config = load_repo_config(tmp_path, tmp_path / "feature_store.yaml")
    assert config.project == f"llmops_{stack}"
    assert config.online_store.connection_string.endswith(",ssl=true,password=from-secrets-manager")
    assert config.registry.path.startswith("s3://") and config.registry.path.endswith("/registry/registry.db")


def test_materialization_runs_on_a_schedule_without_overlap(plans):
    (cron,) = [c for c in objects_of(plans["dev"], "CronJob") if c["metadata"]["name"] == "feast-materialize"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    command = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "materialize_incremental" in command[-1] and "sh" not in command


# --- retrieval index ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_qdrant_volumes_are_encrypted_gp3_and_kept(plans, stack):
    plan = plans[stack]
    (statefulset,) = objects_of(plan, "StatefulSet")[:1]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    classes = {c["metadata"]["name"]: c for c in objects_of(plan, "StorageClass")}
    storage_class = classes[claim["spec"]["storageClassName"]]
    assert storage_class["parameters"]["type"] == "gp3" and storage_class["parameters"]["encrypted"] == "true"
    assert storage_class["reclaimPolicy"] == "Retain"
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    addons = {a.inputs["addonName"] for a in plan.by_type("aws:eks/addon:Addon")}
    assert "aws-ebs-csi-driver" in addons


@pytest.mark.parametrize("stack", STACKS)
def test_qdrant_is_reachable_only_from_serving_and_its_own_namespace(plans, stack):
    plan = plans[stack]
    (policy,) = [p for p in objects_of(plan, "NetworkPolicy") if p["metadata"]["name"] == "qdrant"][:1]
    (rule,) = policy["spec"]["ingress"]
    sources = {s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in rule["from"]}
    assert sources == {"retrieval", "serving"}
    assert {p["port"] for p in rule["ports"]} == {6333, 6334}
    services = [s for s in objects_of(plan, "Service") if s["metadata"]["namespace"] == "retrieval"]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)


def test_qdrant_api_key_comes_from_secrets_manager_at_start(plans):
    (statefulset,) = objects_of(plans["prod"], "StatefulSet")[:1]
    pod = statefulset["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["API_KEY_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert "$API_KEY_SECRET_ARN" in init["command"][-1]  # passed by environment, not spliced into the script
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secret-config"]["emptyDir"]["medium"] == "Memory"


def test_snapshots_go_to_the_encrypted_bucket_on_a_schedule(plans):
    (cron,) = [c for c in objects_of(plans["prod"], "CronJob") if c["metadata"]["name"] == "qdrant-snapshot"][:1]
    upload = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "--sse aws:kms" in upload["command"][-1]
    env = {e["name"]: e["value"] for e in upload["env"]}
    bucket = [b for b in plans["prod"].by_type("aws:s3/bucket:Bucket") if "index-snapshots" in b.name]
    assert any(env["BUCKET"].startswith(b.name) for b in bucket), env["BUCKET"]
