"""The pii-incident runbook with a scope above pii.cluster_scan_over_bytes: its scan runs as an Indexed Job (kmock's
Kubernetes API, the test playing the Job controller; moto's S3), and the merged findings feed the same quarantine,
redaction and deletion as a local scan -- the same end state. A crash while the Job runs resumes by following the
Job already submitted, never a second one."""

from __future__ import annotations

import json
import threading

import pytest
import yaml

from tests.pii.test_cluster import IMAGE, _job_controller
from tests.runbooks.pii_world import PiiWorld
from tests.runbooks.test_pii_incident import STEPS, assert_contained, assert_no_pii, start


@pytest.fixture
def kube():
    from llmops.drill.backends import KubernetesApi

    api = KubernetesApi().start()
    yield api
    api.stop()


def _cluster_world(aws_env, tmp_path, kube, over_bytes: int) -> PiiWorld:
    world = PiiWorld(aws_env, tmp_path).build(containment="none")
    results = f"scans-{world.bucket[-8:]}"
    world.s3.create_bucket(Bucket=results)
    path = world.targets_dir / f"{world.env}.yaml"
    targets = yaml.safe_load(path.read_text())
    targets["kubernetes"] = {"host": kube.url}
    targets["pii"]["cluster_scan"] = {"results": f"s3://{results}/pii-scan/results/", "image": IMAGE,
                                      "readable": [f"s3://{world.bucket}/"], "poll_seconds": 0.2}
    targets["pii"]["cluster_scan_over_bytes"] = over_bytes
    path.write_text(yaml.safe_dump(targets))
    return world


def test_a_large_scope_is_scanned_on_the_cluster_and_contained_the_same(aws_env, tmp_path, kube):
    world = _cluster_world(aws_env, tmp_path, kube, over_bytes=1000)
    dry = world.cli("--incident", "INC-2041", "--source", world.source, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "on the cluster: 6 object(s)" in dry.stdout and "pod(s): about" in dry.stdout
    stop = threading.Event()
    controller = _job_controller(kube, aws_env, set(), stop)
    first = start(world, "--output", "json")
    stop.set()
    controller.join(timeout=60)
    assert first.returncode == 3, first.stdout + first.stderr  # paused at the deletion gate, as with a local scan
    (run_id,) = world.run_ids()
    done = world.cli("--resume", run_id, "--approve", world.gate_hash(run_id), "--output", "json")
    assert done.returncode == 0, done.stderr
    assert [s["step"] for s in json.loads(done.stdout)["steps"]] == STEPS
    assert_contained(world)
    scan = next(e for e in world.journal(run_id) if e.get("step") == "scan" and e["event"] == "step_done")
    assert scan["outputs"]["on_cluster"]["shards"] == 1 and scan["outputs"]["versions_scanned"] == 6
    from kubernetes import client

    (job,) = client.BatchV1Api(kube.api).list_namespaced_job("pii-scan").items
    assert job.spec.completion_mode == "Indexed" and "--raw-paths" in job.spec.template.spec.containers[0].args
    assert_no_pii(world, first.stdout, first.stderr, done.stdout, done.stderr)


def test_below_the_size_the_scan_stays_local(aws_env, tmp_path, kube):
    world = _cluster_world(aws_env, tmp_path, kube, over_bytes=10**9)
    dry = world.cli("--incident", "INC-2041", "--source", world.source, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "object(s) under s3://" in dry.stdout and " locally" in dry.stdout and "on the cluster" not in dry.stdout


def test_a_run_killed_after_submitting_follows_its_job_on_resume(aws_env, tmp_path, kube):
    world = _cluster_world(aws_env, tmp_path, kube, over_bytes=1000)
    stop = threading.Event()
    controller = _job_controller(kube, aws_env, set(), stop)
    killed = start(world, crash_at="scan:acted")  # the Job ran and was merged; the run died before recording it
    controller.join(timeout=60)
    assert killed.returncode == -9, killed.stderr
    (run_id,) = world.run_ids()
    resumed = world.cli("--resume", run_id)
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr  # at the deletion gate
    assert "is already there (a resumed run): following it" in resumed.stdout + resumed.stderr
    from kubernetes import client

    assert len(client.BatchV1Api(kube.api).list_namespaced_job("pii-scan").items) == 1  # not a second scan
    done = world.cli("--resume", run_id, "--approve", world.gate_hash(run_id))
    assert done.returncode == 0, done.stderr
    assert_contained(world)
