"""`llmops pii scan --on-cluster`: the Indexed Job it renders (validated strictly against the cluster's Kubernetes
schema), and the whole run against kmock's Kubernetes API and moto's S3 -- the test playing the Job controller:
it runs each index's pod command as a process with JOB_COMPLETION_INDEX set, and patches the Job's status as the
controller would (completedIndexes, failedIndexes, then a Complete or Failed condition)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable

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


def _job_controller(kube, endpoint: str, fail: set[int], stop: threading.Event,
                    after_each: Callable[[list[int]], None] | None = None) -> threading.Thread:
    """Plays the Job controller and the kubelet: for the Job the CLI submits, runs each index's container command
    (as its pod would) and writes the status as the controller does, index by index (then after_each(done))."""
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
            if after_each is not None:
                after_each(done)
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
        assert "job finished: 3 of 3 shard(s) done, 0 failed; " in result.stderr
    else:
        assert result.returncode == 4, result.stderr
        assert "shard(s) 2 of job pii-scan/pii-scan-t1 failed every retry (MaxFailedIndexesExceeded)" in result.stderr
        assert "1 of 3 shard(s) have no result: 2" in result.stderr and result.stdout == ""


PROGRESS = re.compile(r"^pii: (?:job finished: )?(\d+) of 3 shard\(s\) done, 0 failed; ([\d,]+) of ([\d,]+) bytes scanned")


def test_the_progress_adds_each_completed_shards_bytes_from_its_manifest(aws_env, kube, tmp_path):
    """The test's controller completes one index at a time and waits until the CLI has reported it: each progress
    line's bytes are the sum of the completed shards' manifests, growing to the scope's total."""
    s3 = boto3.client("s3", endpoint_url=aws_env)
    _fill(s3, "onclu-bytes")
    if "scans" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="scans")
    objects, total = cluster.scope(s3, "onclu-bytes", "inference/")
    lines: list[str] = []
    seen = threading.Condition()

    def reported(done: list[int]) -> None:  # the next pod runs once the CLI has shown this one's bytes
        with seen:
            assert seen.wait_for(lambda: any(f"pii: {len(done)} of 3 shard(s) done" in line for line in lines), 60)

    stop = threading.Event()
    controller = _job_controller(kube, aws_env, set(), stop, after_each=reported)
    cli = subprocess.Popen([sys.executable, "-m", "llmops.cli", "pii", "scan", "s3://onclu-bytes/inference/",
                            "--on-cluster", "--shards", "3", "--env", "prod", "--scan-id", "bytes", "--output", "none",
                            "--poll-seconds", "0.1"], cwd=ROOT, text=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env={**os.environ, **_targets(tmp_path, aws_env, kube.url)})

    def read() -> None:
        assert cli.stderr is not None
        for line in cli.stderr:
            with seen:
                lines.append(line.rstrip("\n"))
                seen.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert cli.wait(timeout=120) == 1, "\n".join(lines)
    finally:
        cli.kill()
        stop.set()
        controller.join(timeout=60)
        reader.join(timeout=10)
    shard_bytes = [json.loads(s3.get_object(Bucket="scans", Key=f"pii/results/bytes/shard-{i}.jsonl")["Body"]
                              .read().splitlines()[-1])["manifest"]["bytes"] for i in range(3)]
    assert sum(shard_bytes) == total and all(shard_bytes)
    progress = [(int(m[1]), int(m[2].replace(",", "")), int(m[3].replace(",", "")))
                for m in map(PROGRESS.match, lines) if m]
    assert {done for done, _, _ in progress} == {0, 1, 2, 3}, lines  # every step was reported
    assert all(scope == total for _, _, scope in progress)
    assert all(scanned == sum(shard_bytes[:done]) for done, scanned, _ in progress), lines
    growing = [scanned for _, scanned, _ in progress]
    assert growing == sorted(growing) and growing[0] == 0 and growing[-1] == total
    assert lines[-2].startswith(f"pii: job finished: 3 of 3 shard(s) done, 0 failed; {total:,} of {total:,} bytes "
                                "scanned (100%)"), lines
    assert not any("bytes unknown" in line for line in lines)


def _result(s3, key: str, findings: int, shard: int = 0, shards: int = 3, errors: int = 0) -> dict:
    manifest = {"shard": shard, "shards": shards, "objects": 1, "versions": 1, "bytes": 1000 + findings,
                "errors": [{"path": f"s3://b/{i}", "reason": "x" * 50} for i in range(errors)]}
    lines = [json.dumps({"path": f"s3://b/{i}", "line": i, "entity_type": "EMAIL"}) for i in range(findings)]
    s3.put_object(Bucket="onclu-tails", Key=key, Body="".join(line + "\n" for line in
                                                             [*lines, json.dumps({"manifest": manifest})]).encode())
    return manifest


class _Counting:
    """An S3 client that counts the bytes its get_object bodies deliver."""

    def __init__(self, s3) -> None:
        self.s3, self.received, self.ranges = s3, 0, []

    def get_object(self, **kwargs):
        import io

        self.ranges.append(kwargs.get("Range"))
        response = self.s3.get_object(**kwargs)
        data = response["Body"].read()
        self.received += len(data)
        return {**response, "Body": io.BytesIO(data)}


def test_a_manifest_is_read_from_the_tail_of_a_shard_result(aws_env):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="onclu-tails")
    large = _result(s3, "large.jsonl", findings=5000)  # ~300 KB of findings before the manifest
    size = s3.head_object(Bucket="onclu-tails", Key="large.jsonl")["ContentLength"]
    counting = _Counting(s3)
    assert cluster.read_manifest(counting, "onclu-tails", "large.jsonl") == large
    assert counting.ranges == ["bytes=-65536"] and counting.received == 65536 < size  # one ranged GET, the tail
    small = _result(s3, "small.jsonl", findings=2)  # smaller than the tail: the whole object, in one GET
    assert cluster.read_manifest(s3, "onclu-tails", "small.jsonl") == small
    long = _result(s3, "long.jsonl", findings=100, errors=40)  # a manifest longer than the first tail: it widens
    counting = _Counting(s3)
    assert cluster.read_manifest(counting, "onclu-tails", "long.jsonl", tail=256) == long
    assert counting.ranges == ["bytes=-256", "bytes=-4096"]
    s3.put_object(Bucket="onclu-tails", Key="findings-only.jsonl", Body=b'{"path": "s3://b/1"}\n')
    assert cluster.read_manifest(s3, "onclu-tails", "findings-only.jsonl") is None


def test_a_shard_whose_bytes_cannot_be_read_is_reported_once_and_not_counted(aws_env):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="onclu-unknown")
    for index, body in ((0, {"manifest": {"shard": 0, "shards": 3, "bytes": 700}}), (2, {"path": "s3://b/1"})):
        s3.put_object(Bucket="onclu-unknown", Key=f"r/s1/shard-{index}.jsonl", Body=json.dumps(body).encode() + b"\n")
    scanned = cluster.ScannedBytes(s3, "s3://onclu-unknown/r/s1/", 3, total=2000)

    def state(*done: int) -> cluster.JobState:
        return cluster.JobState(3, frozenset(done), frozenset(), False)

    assert scanned.update(state(0)) == [] and scanned.scanned == 700
    assert scanned.describe() == "700 of 2,000 bytes scanned (35%)"
    assert scanned.update(state(0, 1)) == [(1, "NoSuchKey")]  # no result at all
    assert [index for index, _ in scanned.update(state(0, 1, 2))] == [2]  # its last line is not a manifest
    assert scanned.update(state(0, 1, 2)) == [] and scanned.scanned == 700  # each said once, nothing re-read
    assert scanned.describe() == "700 of 2,000 bytes scanned (35%), bytes unknown for 2 shard(s)"


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
