"""The release controller as the real stacks render it: one per region where a model has a rollout policy, none in
dev; RBAC and IAM exactly as narrow as its work; targets that load as runbook targets in the pod; and its stall
alert under promtool."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from components import config
from components.manifests import release_controller as manifests
from components.manifests import vllm
from components.release_controller import stalled_after_seconds
from llmops.offline.engine import run_program
from llmops.offline.project import load_project, load_stack
from llmops.offline.validate import kubernetes_version_for, validate_object
from runbooks.targets import load_targets
from tests.conftest import write_program_copy

CONTROLLED = ["staging", "prod"]
NAME = "release-controller"
RBAC = "kubernetes:rbac.authorization.k8s.io/v1:"


def controller_objects(plan):
    """Every Kubernetes object of the controller (all named release-controller*)."""
    return [r for r in plan.kubernetes_objects() if r.inputs["metadata"]["name"].startswith(NAME)]


def by_cluster(plan, kind):
    """Kubernetes provider URN -> the controller's one object of this kind in that cluster."""
    found = {}
    for resource in controller_objects(plan):
        if resource.inputs["kind"] == kind:
            assert resource.provider not in found, f"two {kind}s of the controller in one cluster"
            found[resource.provider] = resource.inputs
    return found


def cfg_of(project, stack):
    return config.parse(load_stack(project, stack).config, stack)


# --- where it runs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", CONTROLLED)
def test_every_region_runs_one_controller_with_all_its_objects(plans, stack):
    plan = plans[stack]
    regions = plan.by_type("llmops:infra:Region")
    controllers = plan.by_type("llmops:serving:ReleaseController")
    assert sorted(c.parent for c in controllers) == sorted(r.urn for r in regions)
    clusters = {p.urn for p in plan.by_type("pulumi:providers:kubernetes")}
    for kind in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "ServiceMonitor"):
        found = by_cluster(plan, kind)
        assert set(found) == clusters, f"{stack}: {kind} missing in a cluster"
        assert all(obj["metadata"]["namespace"] == "serving" for obj in found.values())


def test_dev_has_no_rollout_policy_and_renders_no_controller(plans):
    plan = plans["dev"]
    assert not plan.by_type("llmops:serving:ReleaseController")
    assert not controller_objects(plan)
    assert not [r for r in plan.by_type("aws:iam/role:Role") if NAME in r.name]
    rules = [rule for r in plan.kubernetes_objects() if r.inputs["kind"] == "PrometheusRule"
             for group in r.inputs["spec"]["groups"] for rule in group["rules"]]
    assert rules and not [r for r in rules if r.get("alert") == "LlmopsReleaseControllerStalled"]
    assert all(out.get("releaseController") is None for out in plan.outputs["regions"].values())


def test_a_configured_controller_with_no_rollout_policy_is_not_deployed(tmp_path, stack_yaml):
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llmops/llmops:0.1.0@sha256:" + "0" * 64
    stack_yaml["config"]["llmops:releaseController"] = {"image": image}
    assert not any("rollout" in model for model in stack_yaml["config"]["llmops:models"])
    project = load_project(write_program_copy(tmp_path, "dev", stack_yaml))
    plan = run_program(project, load_stack(project, "dev"))
    assert plan.by_type("llmops:infra:Region") and not plan.by_type("llmops:serving:ReleaseController")
    assert not controller_objects(plan)


@pytest.mark.parametrize("stack", CONTROLLED)
def test_the_controllers_objects_are_valid_for_their_clusters_kubernetes(plans, stack):
    plan = plans[stack]
    objects = controller_objects(plan)
    assert len(objects) == 7 * len(plan.by_type("llmops:infra:Region"))
    for resource in objects:
        version = kubernetes_version_for(plan, resource, "1.33")
        assert validate_object(resource.inputs, version) == [], resource.urn


# --- RBAC --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", CONTROLLED)
def test_rbac_reads_deployments_and_routes_and_patches_only_the_rollout_models(plans, project, stack):
    plan = plans[stack]
    models = [m.name for m in cfg_of(project, stack).models if m.rollout is not None]
    assert len(models) == 1  # staging: chat-small, prod: chat; the other model has no policy and is not patchable
    (model,) = models
    expected = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [model, f"{model}-canary"],
         "verbs": ["patch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "resourceNames": [model],
         "verbs": ["patch"]},
    ]
    for role in by_cluster(plan, "Role").values():
        assert role["metadata"]["namespace"] == "serving"
        assert role["rules"] == expected
    for binding in by_cluster(plan, "RoleBinding").values():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": "serving"}]
    # Nothing cluster-wide anywhere in the stack, and the names it may patch are the models' own.
    assert not plan.by_type(f"{RBAC}ClusterRole") and not plan.by_type(f"{RBAC}ClusterRoleBinding")
    served = {d.inputs["metadata"]["name"] for d in plan.kubernetes_objects() if d.inputs["kind"] == "Deployment"
              and vllm.MODEL_LABEL in d.inputs["metadata"]["labels"]}
    assert model in served and len(served) > 1  # a model without a policy is served, yet not in the Role


# --- IAM ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", CONTROLLED)
def test_iam_reaches_exactly_the_lock_topic_records_prefix_and_key(plans, stack):
    plan = plans[stack]
    primary = plan.outputs["primaryRegion"]
    ops = plan.outputs["regions"][primary]["operations"]
    account = ops["keyArn"].split(":")[4]
    for region, out in plan.outputs["regions"].items():
        code = config.region_code(region)
        policy = plan.get("aws:iam/rolePolicy:RolePolicy", f"{stack}-{code}-{NAME}")
        statements = json.loads(policy.inputs["policy"])["Statement"]
        prefix = f"{NAME}/{region}"
        bucket = f"arn:aws:s3:::{ops['evidenceBucket']}"
        assert statements == [
            {"Sid": "RunbookLock", "Effect": "Allow", "Resource": f"arn:aws:dynamodb:{primary}:{account}:table/"
             f"{ops['lockTable']}", "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                               "dynamodb:DeleteItem"]},
            {"Sid": "Notify", "Effect": "Allow", "Action": "sns:Publish", "Resource": ops["topicArn"]},
            {"Sid": "Records", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
             "Resource": f"{bucket}/{prefix}/*"},
            {"Sid": "ListRecords", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
             "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
            {"Sid": "RunbookKey", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"],
             "Resource": ops["keyArn"], "Condition": {"StringEquals": {"kms:ViaService": [
                 f"dynamodb.{primary}.amazonaws.com", f"s3.{primary}.amazonaws.com", f"sns.{primary}.amazonaws.com"]}}},
        ]
        # Assumable only by serving/release-controller, through this region's cluster.
        role = plan.get("aws:iam/role:Role", f"{stack}-{code}-{NAME}")
        (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        issuer = out["oidcProviderArn"].split(":oidc-provider/")[1]
        assert trust["Principal"] == {"Federated": out["oidcProviderArn"]}
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Condition"] == {"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:serving:{NAME}",
                                                       f"{issuer}:aud": "sts.amazonaws.com"}}
        assert out["releaseController"]["recordsPrefix"] == prefix


# --- the pod -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", CONTROLLED)
def test_one_hardened_replica_runs_watch_for_its_region_with_the_irsa_role(plans, project, stack):
    plan = plans[stack]
    cfg = cfg_of(project, stack)
    accounts = by_cluster(plan, "ServiceAccount")
    regions = {out["releaseController"]["roleArn"]: region for region, out in plan.outputs["regions"].items()}
    for provider, deployment in by_cluster(plan, "Deployment").items():
        role_arn = accounts[provider]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        region = regions[role_arn]  # each cluster's account carries its own region's role
        spec = deployment["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
        pod = spec["template"]["spec"]
        assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        (copy,) = pod["initContainers"]  # the stack config, copied where the runbooks may pin their changes
        assert copy["command"] == ["cp", f"/etc/llmops/targets/Pulumi.{stack}.yaml", f"/var/lib/llmops/Pulumi.{stack}.yaml"]
        assert copy["image"] == cfg.release_controller.image and copy["securityContext"]["readOnlyRootFilesystem"]
        assert container["image"] == cfg.release_controller.image
        assert container["command"] == ["llmops", "release", "watch", "--env", stack, "--region", region,
                                        "--metrics-port", "9109"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"] == container["resources"]["limits"]
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        env = {e["name"]: e["value"] for e in container["env"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts["targets"]["mountPath"] == env["LLMOPS_TARGETS_DIR"] and mounts["targets"]["readOnly"] is True
        assert volumes["targets"] == {"name": "targets", "configMap": {"name": f"{NAME}-targets"}}
        assert all("emptyDir" in volumes[name] for name in mounts if name != "targets")
        assert container["ports"] == [{"name": "metrics", "containerPort": 9109, "protocol": "TCP"}]


@pytest.mark.parametrize("stack", CONTROLLED)
def test_the_targets_in_the_configmap_load_as_runbook_targets_for_the_pod(plans, project, stack, tmp_path):
    plan = plans[stack]
    cfg = cfg_of(project, stack)
    primary = plan.outputs["primaryRegion"]
    ops = plan.outputs["regions"][primary]["operations"]
    deployments = by_cluster(plan, "Deployment")
    roles = {out["releaseController"]["roleArn"]: (region, out) for region, out in plan.outputs["regions"].items()}
    for provider, config_map in by_cluster(plan, "ConfigMap").items():
        region, out = roles[by_cluster(plan, "ServiceAccount")[provider]["metadata"]["annotations"][
            "eks.amazonaws.com/role-arn"]]
        directory = tmp_path / region
        directory.mkdir()
        for name, text in config_map["data"].items():
            (directory / name).write_text(text)
        targets = load_targets(stack, directory)
        assert targets.kubernetes is not None and targets.kubernetes.in_cluster
        assert (targets.kubernetes.host, targets.kubernetes.context, targets.kubernetes.kubeconfig) == (None,) * 3
        assert targets.kubernetes.namespace == "serving"
        assert targets.registry is not None and targets.registry.tracking_uri == out["registry"]["trackingUri"]
        assert targets.prometheus is not None and targets.prometheus.url == cfg.serving.prometheus_url
        assert targets.aws.region == primary and targets.lock.table == ops["lockTable"]
        records = f"s3://{ops['evidenceBucket']}/{NAME}/{region}"
        assert (targets.audit.uri, targets.evidence.uri) == (f"{records}/audit", f"{records}/evidence")
        assert targets.audit.kms_key_id == targets.evidence.kms_key_id == ops["keyArn"]
        assert targets.notifications.topic_arn == ops["topicArn"]
        # In the pod: the stack file is the init container's copy in the writable state emptyDir.
        pod = deployments[provider]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["LLMOPS_TARGETS_DIR"] == "/etc/llmops/targets"
        state_mount = next(path for path in mounts if targets.state_dir.startswith(path + "/"))
        assert targets.stack_file == f"{state_mount}/Pulumi.{stack}.yaml"
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mounts[state_mount])
        # The stack file is the deployed config: it parses to the same StackConfig.
        assert config.load_file(directory / f"Pulumi.{stack}.yaml") == cfg


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_a_stack_config_written_back_as_a_stack_file_parses_to_itself(project, stack, tmp_path):
    cfg = cfg_of(project, stack)
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config.stack_file_config(cfg)}))
    assert config.load_file(path) == cfg


@pytest.mark.parametrize("stack", CONTROLLED)
def test_prometheus_scrapes_the_metrics_port(plans, stack):
    plan = plans[stack]
    services, monitors = by_cluster(plan, "Service"), by_cluster(plan, "ServiceMonitor")
    deployments = by_cluster(plan, "Deployment")
    for provider, service in services.items():
        pod_labels = deployments[provider]["spec"]["template"]["metadata"]["labels"]
        assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
        assert service["spec"]["ports"] == [{"name": "metrics", "port": 9109, "targetPort": "metrics", "protocol": "TCP"}]
        monitor = monitors[provider]["spec"]
        assert all(service["metadata"]["labels"].get(k) == v for k, v in monitor["selector"]["matchLabels"].items())
        assert monitor["endpoints"][0]["port"] == "metrics" and monitor["endpoints"][0]["path"] == "/metrics"


def test_the_manifests_refuse_a_controller_with_nothing_to_judge_or_a_model_named_like_it():
    spec = manifests.ReleaseControllerSpec(environment="prod", region="us-east-1", namespace="serving", image="i",
                                           role_arn="r", models=(), targets={}, stack_config={}, tags={
                                               "owner": "o", "cost-center": "c", "environment": "prod"})
    with pytest.raises(ValueError, match="nothing to judge|without a model"):
        manifests.release_controller_objects(spec)
    clash = manifests.ReleaseControllerSpec(**{**spec.__dict__, "models": ("release-controller",)})
    with pytest.raises(ValueError, match="would be named 'release-controller'"):
        manifests.release_controller_objects(clash)


# --- the stall alert ---------------------------------------------------------------------------------------

def stall_rule(plan, provider=None):
    rules = [rule for r in plan.kubernetes_objects() if r.inputs["kind"] == "PrometheusRule"
             and (provider is None or r.provider == provider)
             for group in r.inputs["spec"]["groups"] for rule in group["rules"]
             if rule.get("alert") == "LlmopsReleaseControllerStalled"]
    return rules


def test_the_stall_threshold_is_stalled_intervals_times_the_slowest_interval(project):
    cfg = cfg_of(project, "staging")
    assert stalled_after_seconds(cfg) == 6 * 5
    chat = next(m for m in cfg.models if m.rollout is not None)
    slower = chat.model_copy(update={"rollout": chat.rollout.model_copy(update={"interval_seconds": 20})})
    other = next(m for m in cfg.models if m.name != chat.name)
    faster = other.model_copy(update={"rollout": chat.rollout})  # 5 s
    changed = cfg.model_copy(update={"models": [slower, faster], "release_controller":
                                     cfg.release_controller.model_copy(update={"stalled_intervals": 3})})
    assert stalled_after_seconds(changed) == 3 * 20


@pytest.mark.parametrize("stack", CONTROLLED)
def test_each_region_alerts_on_its_stalled_controller_with_a_ticket_and_the_runbook(plans, project, stack):
    plan = plans[stack]
    cfg = cfg_of(project, stack)
    threshold = stalled_after_seconds(cfg)
    for provider in (p.urn for p in plan.by_type("pulumi:providers:kubernetes")):
        (rule,) = stall_rule(plan, provider)
        metric = 'llmops_release_last_decision_timestamp_seconds{namespace="serving"}'
        assert rule["expr"] == f"time() - max by (model) ({metric}) > {threshold}\n or absent({metric})"
        assert rule["labels"]["severity"] == "ticket" and rule["for"] == "2m"
        assert rule["annotations"]["runbook_url"] == f"{cfg.alerting.runbook_base_url}/release-controller.md"


def promtool_test(promtool, tmp_path, rule, series, checks) -> subprocess.CompletedProcess:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "llmops-release", "rules": [rule]}]}))
    tests = tmp_path / "rules.test.yml"
    tests.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": rule["alert"], "exp_alerts": alerts}
                            for at, alerts in checks]}]}))
    return subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)


def firing(rule, labels):
    return [{"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": rule["annotations"]}]


def test_the_stall_alert_fires_when_decisions_stop_or_vanish_and_not_while_they_continue(plans, promtool, tmp_path):
    rule = stall_rule(plans["staging"])[0]
    series = 'llmops_release_last_decision_timestamp_seconds{namespace="serving",model="chat",pod="rc-1"}'
    # Decisions every minute, then none after minute 10: at 11m the last is 60 s old (> 30 s), for 2m -> 13m.
    stops = [{"series": series, "values": "0+60x10 600x30"}]
    result = promtool_test(promtool, tmp_path, rule, stops, [
        ("10m", []), ("12m", []), ("13m", firing(rule, {"model": "chat"}))])
    assert result.returncode == 0, result.stdout + result.stderr
    steady = [{"series": series, "values": "0+60x40"}]  # the scrape always sees a decision of the same minute
    result = promtool_test(promtool, tmp_path, rule, steady, [("5m", []), ("20m", []), ("39m", [])])
    assert result.returncode == 0, result.stdout + result.stderr
    # Not running, or not scraped: no series at all, from the start.
    gone = [{"series": 'up{job="kubelet"}', "values": "1x40"}]
    result = promtool_test(promtool, tmp_path, rule, gone, [("1m", []), ("2m", firing(rule, {"namespace": "serving"}))])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_promtool_harness_can_fail(plans, promtool, tmp_path):
    rule = stall_rule(plans["staging"])[0]
    series = 'llmops_release_last_decision_timestamp_seconds{namespace="serving",model="chat",pod="rc-1"}'
    result = promtool_test(promtool, tmp_path, rule, [{"series": series, "values": "0+60x40"}],
                           [("20m", firing(rule, {"model": "chat"}))])
    assert result.returncode != 0
