"""Every policy, with a minimal resource that violates it and one that satisfies it, through the same
offline path as `llmops policy check` (the pack's analyzer servicer, driven like the engine)."""

from __future__ import annotations

import copy
import json

import pytest

from components.instance_types import GPU_INSTANCE_TYPES
from llmops.policy.runner import check_plan
from policies.gpu import gpus_per_instance
from policies.pack import POLICY_NAMES
from tests.policies.builders import PlanBuilder

DIGEST = "repo/app@sha256:" + "a" * 64
LABELS = {"owner": "ml-platform", "cost-center": "cc-1", "environment": "prod"}
RUNBOOK_BASE = "https://runbooks.example.com/llmops"
CONTEXT = {"environment": "prod", "allowedRegions": ["us-east-1", "us-west-2"], "runbookBaseUrl": RUNBOOK_BASE,
           "runbooks": ["failover", "pii-incident", "reindex", "rollback"]}


def container(**overrides):
    base = {"name": "app", "image": DIGEST, "ports": [{"containerPort": 8000}],
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 1000},
            "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
            "livenessProbe": {"httpGet": {"path": "/health", "port": 8000}}}
    base.update(overrides)
    return base


def deployment(name="app", namespace="serving", *, pod=None, containers=None, labels=None, spec=None):
    template_labels = {"app": name}
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {**LABELS, **(labels or {})}},
            "spec": {"replicas": 2, "selector": {"matchLabels": template_labels},
                     "template": {"metadata": {"labels": template_labels},
                                  "spec": {"containers": containers or [container()], **(pod or {})}},
                     **(spec or {})}}
    return body


def pdb(name="app", namespace="serving", selector=None):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector or {"app": name}}}}


def gpu_pod(gpus="1", *, tolerate=True, select=True, request=None):
    resources = {"limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": gpus},
                 "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": request or gpus}}
    pod = {}
    if tolerate:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if select:
        pod["nodeSelector"] = {"llmops.io/pool": "l4"}
    return pod, [container(resources=resources)]


def bucket_set(b: PlanBuilder, name, *, provider="", public=False, kms=True, versioned=True, force_destroy=False,
               holds="model artifacts"):
    b.add("aws:s3/bucket:Bucket", name, {"forceDestroy": force_destroy, "tags": {"llmops.io/holds": holds}},
          provider=provider)
    flags = not public
    b.add("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{name}-pab",
          {"bucket": name, "blockPublicAcls": flags, "blockPublicPolicy": flags, "ignorePublicAcls": flags,
           "restrictPublicBuckets": flags}, provider=provider, depends={"bucket": name})
    algorithm = "aws:kms" if kms else "AES256"
    b.add("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", f"{name}-sse",
          {"bucket": name, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}}]},
          provider=provider, depends={"bucket": name})
    if versioned:
        b.add("aws:s3/bucketVersioning:BucketVersioning", f"{name}-versioning",
              {"bucket": name, "versioningConfiguration": {"status": "Enabled"}}, provider=provider,
              depends={"bucket": name})


def k8s(b: PlanBuilder, type_, obj, provider=""):
    b.add(type_, obj["metadata"]["name"], obj, provider=provider)


DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def case_image_digest(bad):
    b = PlanBuilder()
    k8s(b, DEPLOYMENT, deployment(containers=[container(image="repo/app:1.2" if bad else DIGEST)]))
    return b


def case_limits(bad):
    b = PlanBuilder()
    limits = {"cpu": "1"} if bad else {"cpu": "1", "memory": "1Gi"}
    k8s(b, DEPLOYMENT, deployment(containers=[container(resources={"limits": limits})]))
    return b


def case_gpu_requests(bad):
    b = PlanBuilder()
    pod, containers = gpu_pod(tolerate=not bad)
    k8s(b, DEPLOYMENT, deployment(pod=pod, containers=containers))
    return b


def case_gpu_request_differs(bad):
    b = PlanBuilder()
    pod, containers = gpu_pod("2", request="1" if bad else "2")
    k8s(b, DEPLOYMENT, deployment(pod=pod, containers=containers))
    return b


def case_privileged(bad):
    b = PlanBuilder()
    context = {"privileged": True, "allowPrivilegeEscalation": True, "runAsNonRoot": True} if bad else \
        {"allowPrivilegeEscalation": False, "runAsNonRoot": True}
    k8s(b, DEPLOYMENT, deployment(containers=[container(securityContext=context)]))
    return b


def case_privileged_allow_list(bad):
    """The NVIDIA device plugin is allow-listed by name; the same pod under another name is not."""
    b = PlanBuilder()
    body = deployment(name="nvidia-device-plugin" if not bad else "gpu-helper", namespace="kube-system",
                      containers=[container(securityContext={"privileged": True})])
    body["kind"] = "DaemonSet"
    k8s(b, "kubernetes:apps/v1:DaemonSet", body)
    return b


def case_non_root(bad):
    b = PlanBuilder()
    context = {"allowPrivilegeEscalation": False, "runAsUser": 0} if bad else \
        {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 1000}
    k8s(b, DEPLOYMENT, deployment(containers=[container(securityContext=context)]))
    return b


def case_probes(bad):
    b = PlanBuilder()
    serving = container()
    if bad:
        serving.pop("livenessProbe")
    k8s(b, DEPLOYMENT, deployment(containers=[serving]))
    return b


def case_pdb(bad):
    b = PlanBuilder()
    k8s(b, DEPLOYMENT, deployment())
    k8s(b, "kubernetes:policy/v1:PodDisruptionBudget", pdb(selector={"app": "other"} if bad else None))
    return b


def case_pdb_metrics_port_only(bad):
    """A port named `metrics` is scraped, not served: a Deployment with only that one needs no budget."""
    b = PlanBuilder()
    ports = [{"name": "metrics", "containerPort": 9109}] + ([{"name": "http", "containerPort": 8000}] if bad else [])
    k8s(b, DEPLOYMENT, deployment(containers=[container(ports=ports)]))
    return b


def role(rules, kind="Role"):
    metadata = {"name": "controller", "labels": LABELS, **({"namespace": "serving"} if kind == "Role" else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata, "rules": rules}


PATCH_DEPLOYMENTS = {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["chat"], "verbs": ["patch"]}


def case_rbac_wildcard(bad):
    b = PlanBuilder()
    rule = {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]} if bad else PATCH_DEPLOYMENTS
    k8s(b, "kubernetes:rbac.authorization.k8s.io/v1:Role", role([rule]))
    return b


def case_rbac_secrets_and_escalation(bad):
    b = PlanBuilder()
    rules = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
             {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]}] if bad else \
        [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    k8s(b, "kubernetes:rbac.authorization.k8s.io/v1:Role", role(rules))
    return b


def case_rbac_cluster_wide(bad):
    b = PlanBuilder()
    kind = "ClusterRole" if bad else "Role"
    k8s(b, f"kubernetes:rbac.authorization.k8s.io/v1:{kind}", role([PATCH_DEPLOYMENTS], kind))
    return b


def case_rbac_binding(bad):
    b = PlanBuilder()
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "controller", "namespace": "serving", "labels": LABELS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole" if bad else "Role",
                           "name": "edit" if bad else "controller"},
               "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": "serving"}]}
    k8s(b, "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", binding)
    return b


def case_labels(bad):
    b = PlanBuilder()
    labels = {"app.kubernetes.io/component": "llm-serving"}
    if not bad:
        labels["llmops.io/model"] = "chat"
    k8s(b, DEPLOYMENT, deployment(labels=labels))
    return b


def node_group(name, *, tainted=True, max_size=2, instance="g6.xlarge", pool="l4", cluster="c1"):
    inputs = {"amiType": "AL2023_x86_64_NVIDIA", "instanceTypes": [instance], "clusterName": cluster,
              "labels": {"llmops.io/pool": pool},
              "scalingConfig": {"minSize": 0, "desiredSize": 1, "maxSize": max_size}}
    if tainted:
        inputs["taints"] = [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    return inputs


def case_gpu_taint(bad):
    b = PlanBuilder()
    b.add("aws:eks/nodeGroup:NodeGroup", "gpu", node_group("gpu", tainted=not bad))
    b.add("aws:eks/nodeGroup:NodeGroup", "system",
          {"amiType": "AL2023_x86_64_STANDARD", "instanceTypes": ["m7i.large"]})
    return b


def case_rollout_fits(bad):
    b = PlanBuilder()
    b.add("aws:eks/nodeGroup:NodeGroup", "gpu", node_group("gpu", max_size=2))  # 2 GPUs
    provider = b.k8s_provider("c1-k8s", "c1")
    pod, containers = gpu_pod("1")
    surge = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1 if bad else 0, "maxUnavailable": 1}}}
    body = deployment(pod=pod, containers=containers, spec=surge)  # 2 replicas x 1 GPU, +1 when surging
    k8s(b, DEPLOYMENT, body, provider=provider)
    return b


def case_public_bucket(bad):
    b = PlanBuilder()
    bucket_set(b, "artifacts", public=bad)
    return b


def case_bucket_kms(bad):
    b = PlanBuilder()
    bucket_set(b, "artifacts", kms=not bad)
    return b


def case_bucket_versioned(bad):
    b = PlanBuilder()
    bucket_set(b, "snapshots", versioned=not bad, holds="index snapshots")
    return b


def case_force_destroy(bad):
    b = PlanBuilder()
    bucket_set(b, "artifacts", force_destroy=bad)
    return b


def rds(**overrides):
    inputs = {"engine": "postgres", "storageEncrypted": True, "publiclyAccessible": False, "deletionProtection": True,
              "backupRetentionPeriod": 7}
    inputs.update(overrides)
    return inputs


def case_rds_private(bad):
    b = PlanBuilder()
    b.add("aws:rds/instance:Instance", "db", rds(storageEncrypted=not bad, publiclyAccessible=bad))
    return b


def case_rds_protected(bad):
    b = PlanBuilder()
    b.add("aws:rds/instance:Instance", "db", rds(deletionProtection=not bad, backupRetentionPeriod=1 if bad else 7))
    return b


def case_elasticache(bad):
    b = PlanBuilder()
    b.add("aws:elasticache/replicationGroup:ReplicationGroup", "redis",
          {"atRestEncryptionEnabled": True, "transitEncryptionEnabled": not bad})
    return b


def case_kms(bad):
    b = PlanBuilder()
    b.add("aws:kms/key:Key", "key", {"enableKeyRotation": not bad})
    return b


def case_eks_endpoint(bad):
    b = PlanBuilder()
    vpc = {"endpointPublicAccess": True}
    if not bad:
        vpc["publicAccessCidrs"] = ["203.0.113.0/24"]
    b.add("aws:eks/cluster:Cluster", "eks", {"vpcConfig": vpc, "encryptionConfig": {"resources": ["secrets"],
                                                                                     "provider": {"keyArn": "arn:k"}}})
    return b


def case_eks_secrets(bad):
    b = PlanBuilder()
    encryption = {} if bad else {"encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:k"}}}
    b.add("aws:eks/cluster:Cluster", "eks", {"vpcConfig": {"endpointPublicAccess": False}, **encryption})
    return b


def case_iam(bad):
    b = PlanBuilder()
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"} if bad else \
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::artifacts/*"}
    document = {"Version": "2012-10-17", "Statement": [statement]}
    b.add("aws:iam/rolePolicy:RolePolicy", "policy", {"policy": json.dumps(document)})
    return b


def alert_rule(url, severity="page"):
    b = PlanBuilder()
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "alerts", "namespace": "monitoring", "labels": LABELS},
            "spec": {"groups": [{"name": "g", "rules": [
                {"alert": "A", "expr": "up == 0", "labels": {"severity": severity} if severity else {},
                 "annotations": {"summary": "s", "description": "d", "runbook_url": url}}]}]}}
    k8s(b, "kubernetes:monitoring.coreos.com/v1:PrometheusRule", rule)
    return b


def case_alerts(bad):
    return alert_rule(f"{RUNBOOK_BASE}/" + ("restart-everything.md" if bad else "rollback.md"))


def case_prod_failover(bad):
    b = PlanBuilder()
    regions = ["us-east-1"] if bad else ["us-east-1", "us-west-2"]
    for region in regions:
        b.aws_provider(f"aws-{region}", region)
        b.add("aws:route53/healthCheck:HealthCheck", f"hc-{region}",
              {"type": "HTTPS", "tags": {"llmops.io/region": region}})
        b.add("aws:route53/record:Record", f"record-{region}",
              {"setIdentifier": region, "healthCheckId": f"hc-{region}",
               "failoverRoutingPolicies": [{"type": "PRIMARY"}]})
    return b


def case_residency(bad):
    b = PlanBuilder()
    provider = b.aws_provider("aws-eu", "eu-west-1" if bad else "us-west-2")
    b.add("aws:s3/bucket:Bucket", "data", {"tags": {}}, provider=provider)
    return b


CASES = {
    "k8s-image-digest": [case_image_digest], "k8s-resource-limits": [case_limits],
    "k8s-gpu-requests": [case_gpu_requests, case_gpu_request_differs],
    "k8s-no-privilege": [case_privileged, case_privileged_allow_list], "k8s-run-as-non-root": [case_non_root],
    "k8s-serving-probes": [case_probes], "k8s-serving-pdb": [case_pdb, case_pdb_metrics_port_only],
    "k8s-required-labels": [case_labels],
    "k8s-rbac-least-privilege": [case_rbac_wildcard, case_rbac_secrets_and_escalation, case_rbac_cluster_wide,
                                 case_rbac_binding],
    "gpu-node-group-tainted": [case_gpu_taint], "gpu-rollout-within-pool": [case_rollout_fits],
    "s3-public-access-blocked": [case_public_bucket], "s3-sse-kms": [case_bucket_kms],
    "s3-versioning": [case_bucket_versioned], "s3-no-force-destroy": [case_force_destroy],
    "rds-encrypted-private": [case_rds_private], "rds-protected": [case_rds_protected],
    "elasticache-encrypted": [case_elasticache], "kms-key-rotation": [case_kms],
    "eks-private-endpoint": [case_eks_endpoint], "eks-secrets-encryption": [case_eks_secrets],
    "iam-no-wildcards": [case_iam], "alert-runbooks": [case_alerts],
    "prod-multi-region-failover": [case_prod_failover], "data-residency": [case_residency],
}


def test_every_policy_has_cases():
    assert sorted(CASES) == sorted(POLICY_NAMES)


def violations_of(policy, builder, context=CONTEXT):
    config = {"all": "mandatory", **{name: dict(context) for name in POLICY_NAMES}}
    return [v for v in check_plan(builder.plan(), config) if v.policy == policy]


PARAMS = [(policy, case) for policy, cases in CASES.items() for case in cases]


@pytest.mark.parametrize("policy,case", PARAMS, ids=[f"{p}-{c.__name__}" for p, c in PARAMS])
def test_policy_flags_the_violating_resource(policy, case):
    found = violations_of(policy, case(True))
    assert found, f"{policy} did not flag {case.__name__}"
    assert all(v.enforcement == "mandatory" and v.message for v in found)


@pytest.mark.parametrize("policy,case", PARAMS, ids=[f"{p}-{c.__name__}" for p, c in PARAMS])
def test_policy_passes_the_satisfying_resource(policy, case):
    assert violations_of(policy, case(False)) == []


def test_messages_say_what_to_change():
    (violation,) = violations_of("k8s-image-digest", case_image_digest(True))
    assert violation.message == ("serving/app container app: image 'repo/app:1.2' is not pinned; use "
                                 "REPOSITORY[:TAG]@sha256:<digest> so what runs cannot change under the same name.")


def test_rbac_findings_name_the_rule_and_what_to_remove():
    messages = sorted(v.message for v in violations_of("k8s-rbac-least-privilege", case_rbac_secrets_and_escalation(True)))
    assert messages == [
        "Role serving/controller rule 0: access to ['secrets'] reaches credentials or other pods; remove it "
        "(IRSA gives AWS access without Kubernetes secrets).",
        "Role serving/controller rule 1: verbs ['bind'] let the subject gain permissions it was not given; remove them."]


def test_dev_may_force_destroy_and_skip_deletion_protection():
    dev = {**CONTEXT, "environment": "dev"}
    assert violations_of("s3-no-force-destroy", case_force_destroy(True), dev) == []
    assert violations_of("rds-protected", case_rds_protected(True), dev) == []
    assert violations_of("prod-multi-region-failover", case_prod_failover(True), dev) == []


def test_enforcement_levels_follow_the_config():
    plan = case_kms(True).plan()
    advisory = check_plan(plan, {"all": "mandatory", "kms-key-rotation": "advisory"})
    assert [v.enforcement for v in advisory if v.policy == "kms-key-rotation"] == ["advisory"]
    assert [v for v in check_plan(plan, {"all": "mandatory", "kms-key-rotation": "disabled"})
            if v.policy == "kms-key-rotation"] == []
    assert {v.enforcement for v in check_plan(plan, {"all": "advisory"})} == {"advisory"}


def test_the_pack_knows_the_gpu_counts_the_config_does():
    """policies/ runs in its own virtualenv and carries its own GPU table; it must agree with the catalog."""
    for instance_type, spec in GPU_INSTANCE_TYPES.items():
        assert gpus_per_instance(instance_type) == spec.gpus, instance_type
    assert gpus_per_instance("m7i.large") == 0


def test_a_deployment_with_default_strategy_surges_25_percent():
    b = case_rollout_fits(False)
    body = copy.deepcopy(b.resources[-1].inputs)
    body["spec"].pop("strategy")
    body["spec"]["replicas"] = 2  # default maxSurge 25% of 2 rounds up to 1: 3 GPUs on a 2-GPU pool
    b.resources.pop()
    k8s(b, DEPLOYMENT, body, provider=b.resources[-1].urn)
    assert violations_of("gpu-rollout-within-pool", b)


def test_a_shadow_that_does_not_fit_beside_stable_and_canary_is_refused():
    """A hand-built plan: stable 2 x 1 GPU fills the 2-GPU pool; a shadow Deployment (1 replica, 1 GPU) on the same
    pool is one GPU too many, and the finding names it with its count."""
    b = case_rollout_fits(False)
    assert violations_of("gpu-rollout-within-pool", b) == []
    pod, containers = gpu_pod("1")
    shadow = deployment("app-shadow", pod=pod, containers=containers, labels={"llmops.io/track": "shadow"},
                        spec={"replicas": 1, "strategy": {"type": "RollingUpdate",
                                                          "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}})
    k8s(b, DEPLOYMENT, shadow, provider=b.resources[-1].provider)
    (violation,) = violations_of("gpu-rollout-within-pool", b)
    assert violation.message == (
        "cluster c1, pool 'l4': at their replica ceilings and mid-rollout the Deployments need 3 GPUs "
        "(serving/app 2, serving/app-shadow 1) but the pool holds at most 2; lower maxSurge to 0 or raise the pool's "
        "maxSize.")


def alert_messages(url, context=CONTEXT, **rule):
    return [v.message for v in violations_of("alert-runbooks", alert_rule(url, **rule), context)]


def test_a_runbook_link_to_no_configured_runbook_names_the_ones_there_are():
    assert alert_messages(f"{RUNBOOK_BASE}/restart-everything.md") == [
        f"PrometheusRule alerts, group g, alert A: runbook_url {RUNBOOK_BASE}/restart-everything.md names no "
        f"catalogued runbook page; use {RUNBOOK_BASE}/<failover|pii-incident|reindex|rollback>.md."]
    assert alert_messages(f"{RUNBOOK_BASE}/rollback.md", severity=None) == [
        "PrometheusRule alerts, group g, alert A: no severity label; add labels.severity (page or ticket)."]


def test_without_runbook_names_in_the_config_only_the_links_shape_is_checked():
    """A pack run with no `runbooks` cannot know the catalogue: any page under the base URL passes, nothing else."""
    no_names = {key: value for key, value in CONTEXT.items() if key != "runbooks"}
    assert alert_messages(f"{RUNBOOK_BASE}/restart-everything.md", no_names) == []
    for url in (f"{RUNBOOK_BASE}/", f"{RUNBOOK_BASE}/pages/rollback.md", "https://wiki.example.com/llmops/rollback.md",
                f"{RUNBOOK_BASE}/rollback.html", f"{RUNBOOK_BASE}/rollback.md#verify"):
        assert alert_messages(url, no_names) == [
            f"PrometheusRule alerts, group g, alert A: runbook_url {url} is not a runbook page; "
            f"use {RUNBOOK_BASE}/<runbook>.md."], url


def test_with_no_config_at_all_any_http_page_passes_and_severity_is_still_required():
    assert alert_messages("https://wiki.example.com/oncall/rollback.md", {}) == []
    assert alert_messages("rollback.md", {}) == [
        "PrometheusRule alerts, group g, alert A: runbook_url rollback.md is not a runbook page; "
        "use <runbookBaseUrl>/<runbook>.md."]
    assert alert_messages("https://wiki.example.com/oncall/rollback.md", {}, severity="") == [
        "PrometheusRule alerts, group g, alert A: no severity label; add labels.severity (page or ticket)."]
