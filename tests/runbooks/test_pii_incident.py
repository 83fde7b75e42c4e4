"""The pii-incident runbook end to end against moto's S3, SNS, SQS and STS server, run as on-call runs it
(`llmops runbook run pii-incident` in its own process), including a SIGKILL at every step boundary."""

from __future__ import annotations

import gzip
import hashlib
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from llmops.pii.detectors import detect
from tests.runbooks.pii_world import PiiWorld

STEPS = ["open-incident", "contain-writes", "scan", "quarantine", "redact-in-place", "delete-originals",
         "verify-clean", "lift-containment", "report", "notify-data-protection"]


# moto enforces a bucket policy's Deny on every caller: it evaluates neither principals nor conditions, so the
# statement's exemption for this runbook's own role (aws:PrincipalArn) cannot be honoured there, and the runbook's
# redacted replacements would be refused too. The full runs therefore use containment "none"; the deny-writes
# statement itself -- refusing a writer, exempting the runbook's role, lifted exactly -- is tested on its own below.
@pytest.fixture
def world(aws_env, tmp_path):
    return PiiWorld(aws_env, tmp_path).build(containment="none")


def start(world: PiiWorld, *extra: str, crash_at: str | None = None):
    return world.cli("--incident", "INC-2041", "--source", world.source, "--yes", *extra, crash_at=crash_at)


def finish(world: PiiWorld, run_id: str, crash_at: str | None = None):
    """Resume until the run is done, approving the gate (what delete-originals will do) once it is shown."""
    for _ in range(4):
        gate = world.gate_hash(run_id)
        result = world.cli("--resume", run_id, *(["--approve", gate] if gate else []), crash_at=crash_at)
        crash_at = None
        if result.returncode != 3:
            return result
    raise AssertionError("the run never finished")


def assert_contained(world: PiiWorld) -> None:
    """The end state: nothing lost, nothing left, nothing twice."""
    quarantined = world.versions(world.quarantine, "incidents/INC-2041/objects/")
    for key, originals in world.originals.items():
        live = world.versions(world.bucket, key)[key]
        if key in world.affected:
            # Every original version is in quarantine exactly once, under legal hold, byte for byte.
            for version_id, sha in originals.items():
                copy_key = f"incidents/INC-2041/objects/{world.bucket}/{key}/{version_id}"
                assert len(quarantined[copy_key]) == 1, f"{copy_key} quarantined {len(quarantined[copy_key])} times"
                head = world.s3.head_object(Bucket=world.quarantine, Key=copy_key)
                assert head["ObjectLockLegalHoldStatus"] == "ON" and head["Metadata"]["source-sha256"] == sha
                stored = world.s3.get_object(Bucket=world.quarantine, Key=copy_key)["Body"].read()
                assert hashlib.sha256(stored).hexdigest() == sha
                tags = world.s3.get_object_tagging(Bucket=world.quarantine, Key=copy_key)["TagSet"]
                assert {"Key": "llmops-incident", "Value": "INC-2041"} in tags
            # Only the redacted replacement is left, and it is clean.
            assert len(live) == 1 and live[0]["VersionId"] not in originals
            body = world.body(world.bucket, key)
            assert not detect(body)
            for line in body.decode().splitlines():
                json.loads(line)
        else:
            assert {v["VersionId"] for v in live} == set(originals)  # untouched
            assert not any(k.startswith(f"incidents/INC-2041/objects/{world.bucket}/{key}/") for k in quarantined)
    assert world.s3.get_object(Bucket=world.bucket, Key=world.prefix + "part-1.jsonl.gz")["Body"].read()[:2] == b"\x1f\x8b"
    assert world.policy_sids() == ["AllowAnalyticsRead"]  # containment lifted, the bucket's own policy kept


def assert_no_pii(world: PiiWorld, *texts: str) -> None:
    everything = "\n".join([*texts, world.records_text()])
    assert not detect(everything), [m.entity_type for m in detect(everything)]
    leaked = [v for v in world.values if v in everything]
    assert not leaked, f"{len(leaked)} PII value(s) in outputs or records"


def test_end_to_end_with_a_second_approval_before_anything_is_deleted(world):
    first = start(world, "--output", "json")
    assert first.returncode == 3, first.stdout + first.stderr  # paused at the gate
    (run_id,) = world.run_ids()
    gate = world.gate_hash(run_id)
    assert gate and f"--approve {gate}" in json.loads(first.stdout)["error"]
    # Quarantined and redacted -- but every original is still there.
    for key, originals in world.originals.items():
        assert set(originals) <= {v["VersionId"] for v in world.versions(world.bucket, key)[key]}
    assert len(world.versions(world.quarantine, "incidents/INC-2041/objects/")) == 5  # part-3 has two versions

    wrong = world.cli("--resume", run_id, "--approve", "0" * 16)
    assert wrong.returncode == 3  # still paused, nothing deleted
    for key, originals in world.originals.items():
        assert set(originals) <= {v["VersionId"] for v in world.versions(world.bucket, key)[key]}

    done = world.cli("--resume", run_id, "--approve", gate, "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and [s["step"] for s in result["steps"]] == STEPS
    assert_contained(world)

    report = json.loads(world.body(world.quarantine, f"incidents/INC-2041/report-{run_id}.json"))
    assert report["versions_quarantined"] == 5 and report["versions_deleted"] == 5
    assert {a["key"] for a in report["affected_objects"]} == {
        world.prefix + "part-0.jsonl", world.prefix + "part-1.jsonl.gz", world.prefix + "part-3.jsonl",
        world.prefix + "users/<EMAIL_ADDRESS>/session.jsonl"}
    assert sum(report["counts"].values()) > 50 and set(report["timeline"]) >= {"scan", "quarantine", "delete-originals"}
    (notice,) = world.notifications()
    assert notice["event"] == "pii-incident-contained" and notice["counts"] == report["counts"]
    evidence = json.loads((world.workdir / "evidence" / "evidence" / f"{run_id}.json").read_text())
    assert evidence["outcome"] == "succeeded" and evidence["approval"]["how"] == "--yes"
    journal = world.journal(run_id)
    assert [e["how"] for e in journal if e["event"] == "gate_approved"] == ["approved-hash"]
    assert_no_pii(world, first.stdout, first.stderr, done.stdout, done.stderr, json.dumps(notice))


def test_a_dry_run_changes_nothing_and_says_what_is_in_scope(world):
    result = world.cli("--incident", "INC-2041", "--source", world.source, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "scan 6 version(s) of 5 object(s)" in result.stdout
    assert world.policy_sids() == ["AllowAnalyticsRead"] and world.run_ids() == []
    assert world.versions(world.quarantine) == {}
    assert_no_pii(world, result.stdout, result.stderr)


@pytest.mark.parametrize("build, message", [
    ({"object_lock": False}, "has no object lock"),
    ({"versioning": False}, "has no versioning enabled"),
])
def test_refuses_without_somewhere_safe_to_keep_originals(aws_env, tmp_path, build, message):
    world = PiiWorld(aws_env, tmp_path).build(**build, containment="none")
    result = start(world)
    assert result.returncode == 1 and message in result.stderr and "nothing was changed" in result.stderr
    assert world.policy_sids() == ["AllowAnalyticsRead"] and world.versions(world.quarantine) == {}


@pytest.mark.parametrize("args, message", [
    (["--incident", "INC 1; rm -rf /", "--source", "s3://b/p"], "--incident 'INC 1; rm -rf /': expected an incident id"),
    (["--incident", "INC-1", "--source", "logs/p"], "--source 'logs/p'"),
    (["--incident", "INC-1", "--source", "s3://b/p", "--since", "yesterday"], "--since 'yesterday': expected an ISO 8601"),
])
def test_bad_parameters_exit_2_naming_them(world, args, message):
    result = world.cli(*args, "--yes")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert world.policy_sids() == ["AllowAnalyticsRead"]


def test_a_window_with_nothing_in_it_is_refused(world):
    result = start(world, "--since", "2030-01-01T00:00:00Z", "--until", "2030-01-02T00:00:00Z")
    assert result.returncode == 2 and "no objects written between 2030-01-01T00:00:00Z" in result.stderr


def test_nothing_found_means_nothing_quarantined_and_no_second_approval(aws_env, tmp_path):
    world = PiiWorld(aws_env, tmp_path).build(containment="none")
    result = world.cli("--incident", "INC-2041", "--source", f"s3://{world.bucket}/{world.prefix}part-2", "--yes",
                       "--output", "json")
    assert result.returncode == 0, result.stderr
    outcomes = {s["step"]: s["outcome"] for s in json.loads(result.stdout)["steps"]}
    assert outcomes["delete-originals"] == "already-in-place" and outcomes["quarantine"] == "already-in-place"
    assert world.versions(world.quarantine, "incidents/INC-2041/objects/") == {}


CRASHES = [f"{step}:{phase}" for step in STEPS for phase in ("acted", "done")] + [
    "quarantine:item-1", "quarantine:item-3", "delete-originals:item-2"]


@pytest.mark.parametrize("crash_at", CRASHES)
def test_a_crash_at_any_boundary_resumes_to_the_same_end_state(aws_env, tmp_path, crash_at):
    world = PiiWorld(aws_env, tmp_path).build(containment="none")
    step = crash_at.split(":")[0]
    if STEPS.index(step) < STEPS.index("delete-originals"):
        crashed = start(world, crash_at=crash_at)
        assert crashed.returncode == -9, crashed.stderr  # SIGKILL: no cleanup of any kind
        (run_id,) = world.run_ids()
        result = finish(world, run_id)
    else:
        paused = start(world)
        assert paused.returncode == 3, paused.stderr
        (run_id,) = world.run_ids()
        crashed = finish(world, run_id, crash_at=crash_at)
        assert crashed.returncode == -9, crashed.stderr
        # Killed mid-deletion: whatever is gone has a verified copy; whatever is not gone is untouched.
        for key, originals in world.originals.items():
            live = {v["VersionId"] for v in world.versions(world.bucket, key).get(key, [])}
            for version_id in set(originals) - live:
                copy_key = f"incidents/INC-2041/objects/{world.bucket}/{key}/{version_id}"
                assert world.s3.head_object(Bucket=world.quarantine, Key=copy_key)["Metadata"]["source-sha256"] == \
                    originals[version_id]
        result = finish(world, run_id)
    assert result.returncode == 0, result.stderr
    assert_contained(world)
    assert len(world.notifications()) == 1
    events = [e["event"] for e in world.journal(run_id)]
    assert events.count("run_finished") == 1 and events.count("run_resumed") >= 1
    assert_no_pii(world, crashed.stdout, crashed.stderr, result.stdout, result.stderr)


def test_gzip_objects_are_redacted_as_gzip(world):
    paused = start(world)
    assert paused.returncode == 3
    key = world.prefix + "part-1.jsonl.gz"
    current = world.s3.get_object(Bucket=world.bucket, Key=key)
    raw = current["Body"].read()
    assert raw[:2] == b"\x1f\x8b" and current["Metadata"]["llmops-incident"] == "INC-2041"
    assert "<" in gzip.decompress(raw).decode() and not detect(gzip.decompress(raw))


def test_deny_writes_stops_writers_exempts_the_runbook_and_is_lifted_exactly(aws_env, tmp_path):
    world = PiiWorld(aws_env, tmp_path).build(containment="deny-writes")
    plan = world.cli("--incident", "INC-2041", "--source", world.source, "--dry-run")
    assert "deny writes to s3://" in plan.stdout
    crashed = start(world, crash_at="contain-writes:done")  # stop right after containment
    assert crashed.returncode == -9
    policy = json.loads(world.s3.get_bucket_policy(Bucket=world.bucket)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["AllowAnalyticsRead", "LlmopsPiiContainINC2041"]
    deny = policy["Statement"][1]
    caller = boto3.client("sts", endpoint_url=aws_env, region_name="us-east-1").get_caller_identity()["Arn"]
    assert deny == {"Sid": "LlmopsPiiContainINC2041", "Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject"],
                    "Resource": f"arn:aws:s3:::{world.bucket}/{world.prefix}*",
                    "Condition": {"ArnNotEquals": {"aws:PrincipalArn": caller}}}
    with pytest.raises(ClientError) as refused:  # a log shipper writing more of it is refused
        world.s3.put_object(Bucket=world.bucket, Key=world.prefix + "part-9.jsonl", Body=b"mail jane@example.com\n")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    world.s3.put_object(Bucket=world.bucket, Key="elsewhere/ok.jsonl", Body=b"{}\n")  # other prefixes are not

    from runbooks.adapters.s3_objects import S3Objects
    from runbooks.engine import RunContext
    from runbooks.pii_incident import Backends, Facts, _contained, _lift

    (run_id,) = world.run_ids()
    facts = next(e for e in world.journal(run_id) if e["event"] == "run_started")["facts"]
    # The runbook's own lift step, against the real bucket, with the facts the run journaled.
    backends = Backends(targets=None, objects=S3Objects(world.s3, None), topic=None)  # type: ignore[arg-type]
    ctx = RunContext("pii-incident", "incident", {"incident": "INC-2041"}, backends, Facts(**facts))
    assert _contained(ctx)
    _lift(ctx)
    assert not _contained(ctx) and world.policy_sids() == ["AllowAnalyticsRead"]
    world.s3.put_object(Bucket=world.bucket, Key=world.prefix + "part-9.jsonl", Body=b"{}\n")  # writers are back
