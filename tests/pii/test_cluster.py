"""`llmops pii scan --on-cluster`: the Indexed Job it renders (validated strictly against the cluster's Kubernetes
schema), and the whole run against kmock's Kubernetes API and moto's S3 -- the test playing the Job controller:
it runs each index's pod command as a process with JOB_COMPLETION_INDEX set, and patches the Job's status as the
controller would (completedIndexes, failedIndexes, then a Complete or Failed condition)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import boto3
import pytest
import yaml

from components.manifests.pii_scan import ScanJobSpec, iam_statements, scan_job
from llmops.offline.validate import validate_object
from llmops.pii import cluster
from tests.pii.test_cli import ROOT, llmops
from tests.pii.test_shards import _fill, _jsonl, _local

TAGS = {"owner": "ml-platform", "cost-center": "cc-1", "environment": "prod"}
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llmops/llmops:0.1.0@sha256:" + "0" * 64


def _settings(**overrides) -> cluster.ClusterSettings:
    return cluster.ClusterSettings(image=IMAGE, results="s3://scans/pii/results/", region="us-east-1", tags=TAGS,
                                   **overrides)


def test_the_job_is_indexed_hardened_and_valid_for_the_clusters_kubernetes():
    job = cluster.job_for(_settings(), scan_id="inc-2041", source="s3://logs/inference/", shards=16, versions=True)
    assert validate_object(job, "1.33") == []
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 16, 16)
    assert spec["backoffLimitPerIndex"] == 2 and spec["maxFailedIndexes"] == 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "pii-scanner"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] and not container["securityContext"]["allowPrivilegeEscalation"]
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert container["args"][:8] == ["pii", "scan", "s3://logs/inference/", "--shards", "16", "--results",
                                     "s3://scans/pii/results/inc-2041/", "--output"]
    assert "--versions" in container["args"]
    with pytest.raises(ValueError, match="at most 8"):
        cluster.job_for(_settings(max_pods=8), scan_id="x", source="s3://logs/a/", shards=9)


def test_the_scanner_role_reads_only_the_prefix_and_writes_only_the_results():
    statements = iam_statements(sources=["s3://logs/inference/"], results="s3://scans/pii/results/",
                                region="us-east-1", key_arns=["arn:aws:kms:us-east-1:123456789012:key/k"])
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ReadSource0"]["Resource"] == "arn:aws:s3:::logs/inference/*"
    assert set(by_sid["ReadSource0"]["Action"]) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert by_sid["ListSource0"]["Condition"] == {"StringLike": {"s3:prefix": ["inference/*"]}}
    assert by_sid["WriteResults"]["Resource"] == "arn:aws:s3:::scans/pii/results/*"
    writes = [s for s in statements if any(a.startswith("s3:Put") for a in s["Action"])]
    assert writes == [by_sid["WriteResults"]]
    assert all("*" not in s["Action"] and s["Resource"] != "*" for s in statements)


def test_the_estimate_is_bytes_over_per_pod_throughput_and_pods():
    settings = _settings(mb_per_second_per_pod=10.0, pod_price_per_hour=0.05, startup_seconds=0)
    plan = cluster.estimate(10**12, 1000, 16, settings)
    assert plan.seconds == pytest.approx(10**12 / (10e6 * 16))
    assert plan.cost_usd == pytest.approx(16 * plan.seconds / 3600 * 0.05)
    assert cluster.indexes("0-3,7") == {0, 1, 2, 3, 7} and cluster.indexes(None) == set()


@pytest.fixture
def kube():
    from llmops.drill.backends import KubernetesApi

    api = KubernetesApi().start()
    yield api
    api.stop()


def _targets(tmp_path, endpoint: str, kube_url: str, **scan) -> dict[str, str]:
    directory = tmp_path / "targets"
    directory.mkdir(parents=True)
    cluster_scan = {"results": "s3://scans/pii/results/", "readable": ["s3://onclu"], "image": IMAGE, **scan}
    (directory / "prod.yaml").write_text(yaml.safe_dump({
        "environment": "prod", "stack_file": "stacks/Pulumi.prod.yaml",
        "aws": {"region": "us-east-1", "endpoint_url": endpoint}, "kubernetes": {"host": kube_url},
        "audit": {"uri": str(tmp_path / "audit")}, "evidence": {"uri": str(tmp_path / "evidence")},
        "pii": {"quarantine_bucket": "quarantine", "cluster_scan": cluster_scan}}))
    return {"LLMOPS_TARGETS_DIR": str(directory)}


def _job_controller(kube, endpoint: str, fail: set[int], stop: threading.Event) -> threading.Thread:
    """Plays the Job controller and the kubelet: for the Job the CLI submits, runs each index's container command
    (as its pod would) and writes the status as the controller does, index by index."""
    from kubernetes import client

    batch = client.BatchV1Api(kube.api)

    def run() -> None:
        from kubernetes.client.exceptions import ApiException

        while not stop.is_set():
            try:  # kmock answers 404 to a list of a kind it has no object of yet
                jobs = batch.list_namespaced_job("pii-scan").items
            except ApiException:
                jobs = []
            if jobs:
                break
            time.sleep(0.1)
        else:
            return
        job = batch.read_namespaced_job(jobs[0].metadata.name, "pii-scan").to_dict()
        container = job["spec"]["template"]["spec"]["containers"][0]
        args = list(container["args"])
        done: list[int] = []
        for index in range(job["spec"]["completions"]):
            if index in fail:
                continue
            pod = subprocess.run([sys.executable, "-m", "llmops.cli", *args, "--endpoint-url", endpoint], cwd=ROOT,
                                 env={**os.environ, "JOB_COMPLETION_INDEX": str(index)}, capture_output=True, timeout=120)
            assert pod.returncode == 0, pod.stderr
            done.append(index)
            batch.patch_namespaced_job_status(job["metadata"]["name"], "pii-scan", {"status": {
                "completedIndexes": ",".join(map(str, done)), "succeeded": len(done), "active": 0}})
        conditions = ([{"type": "FailureTarget", "status": "True", "reason": "MaxFailedIndexesExceeded"},
                       {"type": "Failed", "status": "True", "reason": "MaxFailedIndexesExceeded"}] if fail else
                      [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}])
        status = {"failedIndexes": ",".join(map(str, sorted(fail))), "failed": len(fail), "conditions": conditions}
        batch.patch_namespaced_job_status(job["metadata"]["name"], "pii-scan", {"status": status})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("fail", [set(), {2}], ids=["complete", "a-failed-index"])
def test_a_cluster_scan_submits_the_job_follows_it_and_merges_its_shards(aws_env, kube, tmp_path, fail):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    bucket = f"onclu-{len(fail)}"
    _fill(s3, bucket)
    if "scans" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="scans")
    local = _local(aws_env, bucket)
    stop = threading.Event()
    controller = _job_controller(kube, aws_env, fail, stop)
    result = llmops("pii", "scan", f"s3://{bucket}/inference/", "--on-cluster", "--shards", "3", "--env", "prod",
                    "--scan-id", f"t{len(fail)}", "--output", "jsonl", "--poll-seconds", "0.2",
                    env=_targets(tmp_path, aws_env, kube.url))
    stop.set()
    controller.join(timeout=60)
    assert "14 object(s)" in result.stderr and "pod(s): about" in result.stderr  # the estimate, before it starts
    assert "submitted job pii-scan/pii-scan-t" in result.stderr
    from kubernetes import client

    submitted = client.BatchV1Api(kube.api).read_namespaced_job(f"pii-scan-t{len(fail)}", "pii-scan")
    assert validate_object(json.loads(json.dumps(client.ApiClient().sanitize_for_serialization(submitted))), "1.33") == []
    if not fail:
        assert result.returncode == 1, result.stderr  # personal data found, as a local scan says
        assert _jsonl(result.stdout) == local
        assert "3 of 3 shard(s) done, 0 failed" in result.stderr
    else:
        assert result.returncode == 4, result.stderr
        assert "shard(s) 2 of job pii-scan/pii-scan-t1 failed every retry (MaxFailedIndexesExceeded)" in result.stderr
        assert "1 of 3 shard(s) have no result: 2" in result.stderr and result.stdout == ""


def test_a_scan_above_the_approval_limit_is_not_started_without_approval(aws_env, kube, tmp_path):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    _fill(s3, "onclu-costly", objects=4)
    result = llmops("pii", "scan", "s3://onclu-costly/inference/", "--on-cluster", "--shards", "4", "--env", "prod",
                    env=_targets(tmp_path, aws_env, kube.url, pod_price_per_hour=1000.0, approval_over_usd=1.0))
    assert result.returncode == 3 and "above the approval limit" in result.stderr and "--yes" in result.stderr
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException):  # nothing submitted: kmock has no Job at all
        client.BatchV1Api(kube.api).list_namespaced_job("pii-scan")
    outside = llmops("pii", "scan", "s3://elsewhere/x/", "--on-cluster", "--shards", "2", "--env", "prod",
                     env=_targets(tmp_path / "b", aws_env, kube.url))
    assert outside.returncode == 2 and "may only read s3://onclu" in outside.stderr


def test_the_image_defaults_to_the_stacks_llmops_image():
    from runbooks.adapters.pii_cluster import stack_llmops_image
    from runbooks.targets import Targets

    targets = Targets.model_validate({"environment": "prod", "stack_file": "stacks/Pulumi.prod.yaml",
                                      "aws": {"region": "us-east-1"}, "audit": {"uri": "/tmp/a"},
                                      "evidence": {"uri": "/tmp/e"}})
    assert "/llmops/llmops:" in stack_llmops_image(targets)


def test_a_scan_spec_rejects_no_shards():
    with pytest.raises(ValueError):
        scan_job(ScanJobSpec(scan_id="x", source="s3://a/b/", results="s3://a/r/x/", shards=0, image=IMAGE,
                             region="us-east-1", tags=TAGS))
