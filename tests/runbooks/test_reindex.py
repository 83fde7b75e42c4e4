"""The reindex runbook end to end against qdrant-client's embedded mode and moto's S3, run as on-call runs
it: a full rebuild with validation and a second approval, a worse candidate refused, rollback in one
step, bad input, and a SIGKILL at every step boundary (one new collection, one flip)."""

from __future__ import annotations

import json

import pytest

from components import config as stack_config
from components.release import index_fingerprint
from tests.runbooks.reindex_world import INDEX, ReindexWorld

STEPS = ["snapshot-corpus", "build-candidate", "validate", "flip-alias", "retire-old-versions", "export-freshness"]


@pytest.fixture
def world(aws_env, tmp_path):
    return ReindexWorld(aws_env, tmp_path).build()


def serving_fingerprint(world: ReindexWorld) -> str:
    cfg = stack_config.load_file(world.stack_file)
    return index_fingerprint(next(i for i in cfg.retrieval.indexes if i.name == INDEX))


def test_a_full_reindex_builds_validates_flips_and_records_the_snapshot(world):
    first = world.cli("--index", INDEX, "--corpus", world.corpus, "--yes", "--output", "json")
    assert first.returncode == 3, first.stdout + first.stderr  # stops before the flip, for a second approval
    (run_id,) = world.run_ids()
    assert world.state()["live"] is None and list(world.state()["versions"]) == [1]
    done = world.cli("--resume", run_id, "--approve", world.gate_hash(run_id), "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    state = world.state()
    assert state["live"] == "docs--v1"
    meta = state["metadata"]["docs--v1"]
    assert meta["complete"] is True and meta["fingerprint"] == serving_fingerprint(world) and meta["documents"] == 120
    assert meta["config"]["chunkSize"] == 128 and meta["run_id"] == run_id
    evidence = world.evidence(run_id)
    snapshot = evidence["steps"][0]["outputs"]
    assert snapshot["objects"] == 120 and snapshot["snapshot_id"] == meta["snapshot_id"]
    assert all(len(entry) == 4 and entry[0].startswith("docs/") and entry[1] for entry in snapshot["entries"])
    validation = evidence["steps"][2]["outputs"]
    assert validation["recall_candidate"] > 0.5 and validation["recall_live"] is None
    assert validation["documents_indexed"] == validation["documents_in_corpus"] == 120
    freshness = evidence["steps"][5]["outputs"]
    assert freshness["stale_fraction"] == 0 and freshness["corpus_newer_objects"] == 0 and freshness["config_mismatch"] == 0

    # A second rebuild keeps the first version for rollback, and rollback flips back in one step.
    assert world.reindex().returncode == 0
    assert world.state()["live"] == "docs--v2" and set(world.state()["versions"]) == {1, 2}
    back = world.cli("--index", INDEX, "--rollback", "--yes", "--output", "json")
    assert back.returncode == 0, back.stdout + back.stderr
    outcomes = {s["step"]: s["outcome"] for s in json.loads(back.stdout)["steps"]}
    assert outcomes["flip-alias"] == "changed" and outcomes["build-candidate"] == "already-in-place"
    assert world.state()["live"] == "docs--v1"


def test_a_worse_candidate_is_refused_and_the_alias_stays(world):
    assert world.reindex().returncode == 0
    for key in [k for k in world.s3.list_objects_v2(Bucket=world.bucket, Prefix="docs/")["Contents"][::2]]:
        world.s3.delete_object(Bucket=world.bucket, Key=key["Key"])  # half the corpus is gone
    refused = world.cli("--index", INDEX, "--corpus", world.corpus, "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "docs--v2 is not fit to serve; the alias stays on docs--v1" in refused.stderr
    assert "recall@8 on 30 golden queries: candidate" in refused.stderr
    assert world.state()["live"] == "docs--v1"


def test_rollback_never_returns_to_a_version_validation_refused(world):
    assert world.reindex().returncode == 0  # docs--v1, live
    gone = [k["Key"] for k in world.s3.list_objects_v2(Bucket=world.bucket, Prefix="docs/")["Contents"][::2]]
    for key in gone:
        world.s3.delete_object(Bucket=world.bucket, Key=key)
    assert world.cli("--index", INDEX, "--corpus", world.corpus, "--yes").returncode == 1  # docs--v2 refused
    verdict = world.state()["metadata"]["docs--v2"]["validation"]
    assert verdict["status"] == "refused" and any(f.startswith("recall@") for f in verdict["findings"])
    for marker in world.s3.list_object_versions(Bucket=world.bucket, Prefix="docs/").get("DeleteMarkers", []):
        world.s3.delete_object(Bucket=world.bucket, Key=marker["Key"], VersionId=marker["VersionId"])  # restored
    assert world.reindex().returncode == 0  # docs--v3, live; the refused version retired before any kept one
    assert world.state()["live"] == "docs--v3" and "docs--v2" not in world.state()["versions"].values()
    back = world.cli("--index", INDEX, "--rollback", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert world.state()["live"] == "docs--v1"
    assert world.state()["metadata"]["docs--v3"]["rolled_back"]["to"] == "docs--v1"
    # v3 was rolled back from and v2 is gone: there is nothing left to roll back to.
    again = world.cli("--index", INDEX, "--rollback", "--yes")
    assert again.returncode == 2 and "no complete version older than docs--v1" in again.stderr


def test_a_config_version_the_serving_path_does_not_use_is_reported_and_refused(world):
    result = world.cli("--index", INDEX, "--corpus", world.corpus, "--config", "v-small", "--yes")
    assert result.returncode == 1
    assert "config mismatch: docs--v1 was built with fingerprint" in result.stderr
    assert world.state()["live"] is None


@pytest.mark.parametrize("args, message", [
    (["--index", "nope", "--corpus", "s3://b/p"], "--index 'nope': no such index in retrieval-drill; indexes: docs"),
    (["--index", INDEX, "--corpus", "b/p"], "--corpus 'b/p'"),
    (["--index", INDEX, "--corpus", "s3://b/p", "--config", "v9"], "--config v9: no "),
    (["--index", INDEX, "--rollback"], "--rollback: docs has no complete version older than nothing"),
    (["--index", INDEX], "--corpus s3://bucket/prefix is required"),
])
def test_bad_input_exits_2_and_builds_nothing(world, args, message):
    result = world.cli(*args, "--yes")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert world.state()["versions"] == {}


@pytest.mark.parametrize("crash_at", [f"{step}:{phase}" for step in STEPS for phase in ("acted", "done")]
                         + ["build-candidate:start"])
def test_a_crash_at_any_boundary_resumes_with_one_new_collection_and_one_flip(world, crash_at):
    crashed = world.cli("--index", INDEX, "--corpus", world.corpus, "--yes", crash_at=crash_at)
    if STEPS.index(crash_at.split(":")[0]) >= STEPS.index("flip-alias"):
        assert crashed.returncode == 3, crashed.stderr  # the gate comes first; crash after approving it
        run_id = world.run_ids()[-1]
        crashed = world.cli("--resume", run_id, "--approve", world.gate_hash(run_id), crash_at=crash_at)
    assert crashed.returncode == -9, crashed.stderr
    run_id = world.run_ids()[-1]
    for _ in range(3):
        gate = world.gate_hash(run_id)
        resumed = world.cli("--resume", run_id, *(["--approve", gate] if gate else []))
        if resumed.returncode != 3:
            break
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = world.state()
    assert sorted(state["versions"]) == [1] and state["live"] == "docs--v1"  # one new collection
    meta = state["metadata"]["docs--v1"]
    assert meta["complete"] and meta["documents"] == 120 and meta["run_id"] == run_id
    assert state["counts"]["docs--v1"] == meta["chunks"]  # refilled after a crash, never duplicated
    events = world.journal(run_id)
    flips = [e for e in events if e["event"] == "step_done" and e["step"] == "flip-alias"]
    assert len(flips) == 1 and [e["event"] for e in events].count("run_finished") == 1
