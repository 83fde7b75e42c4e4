"""The failover runbook end to end, as on-call runs it (its own process), against moto's Route53 and S3,
MLflow's store and one Kubernetes API per region; refusals that change nothing; a SIGKILL at every
step boundary. moto reports every health check healthy, so readiness is driven through the signals
the runbook reads (nodes, replicas, releases, replicas of artifacts), and the tests assert the record
configuration it leaves."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from components import config as stack_config
from llmops.drill.backends import KubernetesApi
from tests.runbooks.failover_world import DOMAIN, FailoverWorld, bucket_names, prod_deployments, registry_store

STEPS = ["shift-traffic", "verify-dns", "pin-active-region"]
PRIMARY_ON_EAST = {f"{m}.{DOMAIN}": {"us-east-1": "PRIMARY", "us-west-2": "SECONDARY"} for m in ("chat", "chat-small")}
PRIMARY_ON_WEST = {f"{m}.{DOMAIN}": {"us-east-1": "SECONDARY", "us-west-2": "PRIMARY"} for m in ("chat", "chat-small")}


@pytest.fixture(scope="session")
def failover_backends(plans, tmp_path_factory):
    clusters = {}
    try:
        for region in ("us-east-1", "us-west-2"):
            clusters[region] = KubernetesApi().start()
    except RuntimeError as error:  # a backend that cannot start fails the tests, with what is missing
        pytest.fail(str(error))
    buckets = bucket_names(uuid.uuid4().hex[:8])
    registry = registry_store(tmp_path_factory.mktemp("registry"), buckets["us-east-1"])
    yield clusters, registry, prod_deployments(plans["prod"]), buckets
    for cluster in reversed(list(clusters.values())):  # kmock stacks DNS interceptors: unwind last-in, first-out
        cluster.stop()


@pytest.fixture
def world(aws_env, tmp_path, failover_backends):
    clusters, registry, deployments, buckets = failover_backends
    return FailoverWorld(aws_env, tmp_path, clusters, registry, deployments, buckets).build()


def test_failover_and_failback_move_dns_and_pin_the_stack(world):
    assert world.roles() == PRIMARY_ON_EAST
    dry = world.cli("--from", "us-east-1", "--to", "us-west-2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "make us-west-2 PRIMARY and us-east-1 SECONDARY" in dry.stdout and world.roles() == PRIMARY_ON_EAST

    done = world.cli("--from", "us-east-1", "--to", "us-west-2", "--yes", "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [s["step"] for s in result["steps"]] == STEPS and result["status"] == "succeeded"
    assert world.roles() == PRIMARY_ON_WEST
    for record in world.records():  # everything else about the records is as the stack declared it
        code = "use1" if record["SetIdentifier"] == "us-east-1" else "usw2"
        assert record["TTL"] == 60 and record["HealthCheckId"] == world.checks[record["SetIdentifier"]]
        assert record["ResourceRecords"] == [{"Value": f"{record['Name'].split('.')[0]}.{code}.{DOMAIN}"}]
    evidence = world.evidence(result["run_id"])
    answers = evidence["steps"][1]["outputs"]["answers"]
    assert answers[f"chat.{DOMAIN}"]["answer"] == [f"chat.usw2.{DOMAIN}"]
    readiness = evidence["signals"]["before"]["readiness"]
    assert readiness["models"]["chat"]["ready"] == 2 and readiness["pools"]["h100"]["ready"] == 1
    assert readiness["artifacts"]["chat"]["problems"] == 0
    assert world.active_region() == "us-west-2"
    assert stack_config.load_file(world.stack_file).active_region == "us-west-2"
    assert "# PRIMARY/SECONDARY; latency for active-active" in world.stack_file.read_text()  # comments kept

    again = world.cli("--from", "us-east-1", "--to", "us-west-2", "--yes")
    assert again.returncode == 2 and "already failed over" in again.stderr

    back = world.cli("--failback", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert world.roles() == PRIMARY_ON_EAST and world.active_region() is None
    assert world.marker() is None  # a failback forgets the move


def test_a_plain_failover_never_moves_traffic_back_to_the_region_it_left(world):
    done = world.cli("--from", "us-east-1", "--to", "us-west-2", "--yes", "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert world.marker() == f"from=us-east-1 to=us-west-2 run={run_id}"
    # Run again as a tired on-call engineer might (defaults: from where traffic is, to the other region) -- or
    # name the regions: both would be a failback, which must be asked for.
    for args in ([], ["--from", "us-west-2", "--to", "us-east-1"]):
        refused = world.cli(*args, "--yes")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert (f"--to us-east-1: traffic was moved away from us-east-1 by failover run {run_id}" in refused.stderr
                and "run with --failback" in refused.stderr)
        assert world.roles() == PRIMARY_ON_WEST
    back = world.cli("--failback", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert world.roles() == PRIMARY_ON_EAST and world.marker() is None
    assert world.cli("--from", "us-east-1", "--to", "us-west-2", "--dry-run").returncode == 0  # a new failover is fine


@pytest.mark.parametrize("breakage, message", [
    (lambda w: w.seed_cluster("us-west-2", ready=0), "chat: 0/2 replicas ready in us-west-2"),
    (lambda w: w.seed_cluster("us-west-2", release="r-0000000000000000"),
     "chat: us-west-2 serves release r-0000000000000000, us-east-1 serves"),
    (lambda w: w.seed_cluster("us-west-2", node_ready=False), "GPU pool h100: no Ready node in us-west-2"),
    (lambda w: w.s3["us-west-2"].delete_object(Bucket=w.buckets["us-west-2"],
                                                Key="artifacts/llama-3-1-70b-instruct/9/model/tokenizer.json"),
     "llama-3-1-70b-instruct version 9: artifacts/llama-3-1-70b-instruct/9/model/tokenizer.json missing in s3://"),
    (lambda w: w.s3["us-west-2"].put_object(Bucket=w.buckets["us-west-2"],
                                             Key="artifacts/llama-3-1-8b-instruct/3/model/config.json", Body=b"stale"),
     "llama-3-1-8b-instruct version 3: artifacts/llama-3-1-8b-instruct/3/model/config.json differs in s3://"),
])
def test_an_unready_target_is_refused_with_what_is_wrong_and_nothing_changes(world, breakage, message):
    breakage(world)
    result = world.cli("--from", "us-east-1", "--to", "us-west-2", "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "us-west-2 is not ready to take traffic from us-east-1; nothing was changed" in result.stderr
    assert message in result.stderr, result.stderr
    assert world.roles() == PRIMARY_ON_EAST and world.active_region() is None and world.run_ids() == []


@pytest.mark.parametrize("args, message", [
    (["--to", "eu-west-1"], "--to eu-west-1: outside the allowed regions of prod-drill (us-east-1, us-east-2, "
                            "us-west-2): data residency forbids serving there"),
    (["--to", "us-east-2"], "--to us-east-2: not a region of prod-drill (us-east-1, us-west-2)"),
    (["--from", "us-west-2", "--to", "us-east-1"],
     "--from us-west-2: traffic is not there; the PRIMARY records are in us-east-1"),
    (["--to", "mars"], "--to 'mars': expected an AWS region name"),
])
def test_a_disallowed_or_wrong_target_is_refused_with_exit_2(world, args, message):
    result = world.cli(*args, "--yes")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert world.roles() == PRIMARY_ON_EAST


def test_the_source_cluster_down_compares_with_the_release_the_stack_declares(world):
    world.clusters["us-east-1"].apps.delete_namespaced_deployment("chat", "serving")  # the source cluster lost it
    result = world.cli("--yes", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    evidence = world.evidence(json.loads(result.stdout)["run_id"])
    assert evidence["signals"]["before"]["readiness"]["models"]["chat"]["compared_with"] == "stack config"
    assert world.roles() == PRIMARY_ON_WEST


# "start" of a step is the state "done" of the one before leaves; every boundary is covered by acted and done.
@pytest.mark.parametrize("crash_at", [f"{step}:{phase}" for step in STEPS for phase in ("acted", "done")])
def test_a_crash_at_any_boundary_resumes_to_one_shift(world, crash_at):
    crashed = world.cli("--from", "us-east-1", "--to", "us-west-2", "--yes", crash_at=crash_at)
    assert crashed.returncode == -9, crashed.stderr
    (run_id,) = world.run_ids()
    resumed = world.cli("--resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert world.roles() == PRIMARY_ON_WEST and world.active_region() == "us-west-2"
    events = world.journal(run_id)
    shifts = [e["outcome"] for e in events if e["event"] == "step_done" and e["step"] == "shift-traffic"]
    # One batch, once: a run killed after the change finds it in place and does not send it again.
    assert shifts == (["already-in-place"] if crash_at == "shift-traffic:acted" else ["changed"])
    assert [e["event"] for e in events].count("run_finished") == 1
    assert yaml.safe_load(world.stack_file.read_text())["config"]["llmops:failover"]["activeRegion"] == "us-west-2"
