"""References: what they hold, their versions (exclusive, never overwritten), their fingerprint, S3 and the CLI."""

import json
import random
import threading

import boto3
import pytest

from llmops.drift import traffic
from llmops.drift.reference import MIN_RECORDS, Reference, ReferenceError, ReferenceStore, build_reference
from tests.cli_fork import run_llmops
from tests.drift.conftest import policy
from tests.drift.world import MODEL, DriftWorld, write_log


def test_a_reference_holds_numbers_only(reference, reference_records):
    assert set(reference.features) == {"prompt_tokens", "completion_tokens", "retrieval_top_score"}
    tokens = reference.features["prompt_tokens"]
    assert len(tokens.edges) == 9 and sum(tokens.proportions) == pytest.approx(1)
    assert all(p == pytest.approx(0.1, abs=0.02) for p in tokens.proportions)  # deciles of the reference itself
    assert reference.embedding.dimension == 256 and len(reference.embedding.clusters) == 8
    assert reference.schema["prompt"] == "string" and reference.schema["prompt_tokens"] == "number"
    text = json.dumps(reference.to_json())
    assert not any(r["prompt"] in text for r in reference_records[:200])  # no prompt is kept


def test_versions_count_up_and_never_overwrite(tmp_path, reference):
    store = ReferenceStore(str(tmp_path))
    first, second = store.put(reference), store.put(reference)
    assert (first.version, first.previous, second.version, second.previous) == (1, None, 2, 1)
    assert store.versions("chat") == [1, 2] and store.latest("chat").version == 2
    assert first.fingerprint == second.fingerprint  # same content, same fingerprint


def test_two_writers_at_once_make_two_versions(tmp_path, reference):
    store = ReferenceStore(str(tmp_path))
    results = []
    threads = [threading.Thread(target=lambda: results.append(ReferenceStore(str(tmp_path)).put(reference).version))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [1, 2, 3, 4, 5, 6] and store.versions("chat") == [1, 2, 3, 4, 5, 6]


def test_a_changed_reference_is_refused(tmp_path, reference):
    store = ReferenceStore(str(tmp_path))
    stored = store.put(reference)
    path = tmp_path / "chat" / "v000001.json"
    data = json.loads(path.read_text())
    data["features"]["prompt_tokens"]["proportions"][0] += 0.05
    path.write_text(json.dumps(data))
    with pytest.raises(ReferenceError, match="v000001.json: fingerprint mismatch"):
        store.get("chat", stored.version)


def test_too_few_records_or_a_missing_field_is_refused(reference_records, embedder):
    with pytest.raises(ReferenceError, match=f"50 request-log record\\(s\\) of model 'chat': a reference needs at "
                                             f"least {MIN_RECORDS}"):
        build_reference(reference_records[:50], model="chat", drift=policy(), embedder=embedder, release="r",
                        reason="initial")
    without = [{k: v for k, v in r.items() if k != "retrieval_top_score"} for r in reference_records[:500]]
    with pytest.raises(ReferenceError, match="field 'retrieval_top_score': a number in 0 of 500 records"):
        build_reference(without, model="chat", drift=policy(), embedder=embedder, release="r", reason="initial")


def test_references_in_s3_use_conditional_writes(aws_env, reference):
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    s3.create_bucket(Bucket="drift-refs")
    store = ReferenceStore("s3://drift-refs/drift/references", lambda: s3)
    assert store.put(reference).version == 1
    # Another writer took version 2 between our listing and our write: ours becomes 3, theirs is kept.
    other = json.dumps({**reference.to_json(), "version": 2}).encode()
    s3.put_object(Bucket="drift-refs", Key="drift/references/chat/v000002.json", Body=other, IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError):
        s3.put_object(Bucket="drift-refs", Key="drift/references/chat/v000002.json", Body=b"{}", IfNoneMatch="*")
    assert store.put(reference).version == 3
    assert store.versions("chat") == [1, 2, 3]
    assert isinstance(store.get("chat", 3), Reference)


@pytest.fixture
def world(tmp_path):
    world = DriftWorld(tmp_path)
    world.write_targets()
    return world


def cli(world, *args):
    import os

    return run_llmops(["drift", *args], env={**os.environ, **world.environment()}, timeout=120)


def test_the_cli_builds_the_next_version_from_logs(world):
    write_log(world.logs / "a.jsonl", traffic.log_lines(random.Random(1), 600, model=MODEL))
    write_log(world.logs / "b.jsonl", traffic.log_lines(random.Random(2), 600, model="another-model"))
    done = cli(world, "reference", "--env", world.env, "--model", MODEL, "--from", str(world.logs), "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["version"], result["records"]) == (1, 600)  # the other model's records are not this model's
    again = cli(world, "reference", "--env", world.env, "--model", MODEL, "--from", str(world.logs / "a.jsonl"))
    assert again.returncode == 0 and f"{MODEL}: reference v2 " in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "nope", "--from", "LOGS"], "--model 'nope': no such model in the stack; models: chat-small"),
    (["--model", MODEL, "--from", "MISSING"], "--from MISSING: no such file or directory"),
    (["--model", MODEL, "--from", "FEW"], "100 request-log record(s) of model 'chat-small': a reference needs at "
                                          "least 200"),
])
def test_the_cli_refuses_bad_input_with_exit_2_and_writes_nothing(world, args, message):
    write_log(world.logs / "few.jsonl", traffic.log_lines(random.Random(1), 100, model=MODEL))
    args = [{"LOGS": str(world.logs), "MISSING": str(world.workdir / "missing"),
             "FEW": str(world.logs / "few.jsonl")}.get(a, a) for a in args]
    done = cli(world, "reference", "--env", world.env, *args)
    assert done.returncode == 2, done.stderr
    assert message.replace("MISSING", str(world.workdir / "missing")) in done.stderr
    assert not world.references.exists() or not any(world.references.rglob("*.json"))
