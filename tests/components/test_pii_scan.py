"""The PII scanner's provisioning (components/pii_scan.py) evaluated under the mock engine, alone: its namespace and
service account valid for the cluster's Kubernetes, its role reading only the given prefixes and writing only the
results prefix, its results bucket private, encrypted and expiring."""

from __future__ import annotations

import json

import pulumi
import pytest
from pulumi.runtime import settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from llmops.offline.engine import CapturingMonitor, ProviderMocks
from llmops.offline.validate import validate_object

TAGS = {"owner": "ml-platform", "cost-center": "cc-1", "environment": "prod"}


@pytest.fixture(scope="module")
def planned():
    mocks = ProviderMocks("llmops", "pii-test", "us-east-1")
    monitor = CapturingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="llmops", stack="pii-test", preview=False, monitor=monitor)
    settings.ROOT.set(None)

    def program() -> None:
        import pulumi_aws as aws

        from components.pii_scan import PiiScanner, PiiScannerArgs

        oidc = aws.iam.OpenIdConnectProvider("oidc", url="https://oidc.eks.us-east-1.amazonaws.com/id/ABC",
                                             client_id_lists=["sts.amazonaws.com"], thumbprint_lists=["0" * 40])
        PiiScanner("use1", PiiScannerArgs(region="us-east-1", oidc_provider=oidc,
                                          readable=["s3://request-logs-use1/inference/"],
                                          key_arn="arn:aws:kms:us-east-1:123456789012:key/k", tags=TAGS))

    try:
        _sync_await(run_in_stack(program))
    finally:
        settings.ROOT.set(None)
    return monitor.captured


def _of(resources, type_):
    return [r for r in resources if r.type == type_]


def test_namespace_and_service_account_are_valid_and_restricted(planned):
    objects = [r.inputs for r in planned if r.is_kubernetes_object]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert kinds == {("Namespace", "pii-scan"), ("ServiceAccount", "pii-scanner")}
    for obj in objects:
        assert validate_object(obj, "1.33") == []
    ns = next(o for o in objects if o["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert account["automountServiceAccountToken"] is False


def test_the_role_reads_only_the_prefix_and_writes_only_the_results(planned):
    (policy,) = _of(planned, "aws:iam/rolePolicy:RolePolicy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ReadSource0"]["Resource"] == "arn:aws:s3:::request-logs-use1/inference/*"
    assert by_sid["WriteResults"]["Resource"].endswith("/pii-scan/results/*")
    assert "request-logs" not in by_sid["WriteResults"]["Resource"]
    assert by_sid["BucketKeys"]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    (role,) = _of(planned, "aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert "system:serviceaccount:pii-scan:pii-scanner" in json.dumps(trust)


def test_the_results_bucket_is_encrypted_and_its_findings_expire(planned):
    (lifecycle,) = _of(planned, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    ids = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    assert ids["expire-objects"]["expiration"]["days"] == 30
    assert "abort-incomplete-uploads" in ids  # a shard killed during a multipart upload leaves nothing behind
    (encryption,) = _of(planned, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"


def test_readable_prefixes_must_be_s3_prefixes():
    from components.pii_scan import PiiScanner, PiiScannerArgs

    with pytest.raises(ValueError, match="readable"):
        PiiScanner.__init__(object.__new__(PiiScanner), "x", PiiScannerArgs(  # type: ignore[arg-type]
            region="us-east-1", oidc_provider=None, readable=["logs/"], key_arn="k", tags=TAGS))  # type: ignore[arg-type]


def test_the_scanner_and_its_job_pass_the_policy_pack_and_a_weakened_job_does_not(planned, project):
    """What the stack provisions and the Job the CLI submits, checked by the pack as prod's stack would be."""
    import copy

    from llmops.offline.plan import Plan, PlannedResource
    from llmops.offline.project import load_stack
    from llmops.pii import cluster
    from llmops.policy.runner import check_plan
    from llmops.policy.settings import pack_config_for_stack

    settings = pack_config_for_stack(load_stack(project, "prod"))
    job = cluster.job_for(cluster.ClusterSettings(
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/llmops/llmops:0.1.0@sha256:" + "0" * 64,
        results="s3://scans/pii-scan/results/", region="us-east-1", tags=TAGS), scan_id="inc-1",
        source="s3://request-logs-use1/inference/", shards=16)

    def plan_with(job_inputs):
        resource = PlannedResource(urn="urn:pulumi:prod::llmops::kubernetes:batch/v1:Job::pii-scan-inc-1",
                                   type="kubernetes:batch/v1:Job", name="pii-scan-inc-1", parent="", provider="",
                                   inputs=job_inputs)
        return Plan(stack="prod", project="llmops", resources=[*planned, resource], outputs={})

    # Resource policies only: stack policies (regions, failover) judge a whole stack, not this part of it.
    assert [v for v in check_plan(plan_with(job), settings) if v.urn] == []
    weak = copy.deepcopy(job)
    weak["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    weak["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/llmops:latest"
    found = {v.policy for v in check_plan(plan_with(weak), settings)}
    assert {"k8s-no-privilege", "k8s-image-digest"} <= found
