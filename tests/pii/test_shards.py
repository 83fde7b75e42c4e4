"""`llmops pii scan --shard I/N --results s3://...` and `llmops pii merge`, as an Indexed Job's pods run them:
separate processes against moto's S3 server. The union of the shards is the single-process scan, exactly."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from types import SimpleNamespace

import boto3
import pytest

from llmops.pii.corpus import generate
from llmops.pii.shards import ShardError, parse_shard, select, shard_of
from tests.pii.test_cli import assert_no_pii, llmops


def _fill(s3, bucket: str, objects: int = 14, versions: bool = False) -> None:
    s3.create_bucket(Bucket=bucket)
    if versions:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    order = list(range(objects))
    random.Random(3).shuffle(order)  # written in a shuffled order
    for index in order:
        for generation in range(2 if versions and index % 3 == 0 else 1):
            body = "".join(text + "\n" for text, _ in generate(120, seed=1000 * generation + index)).encode()
            key = f"inference/2026/11/{index % 4:02d}/part-{index}.jsonl" + (".gz" if index % 2 else "")
            s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if index % 2 else body)
    s3.put_object(Bucket=bucket, Key="other/skip.jsonl", Body=b"mail jane@example.com\n")


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _local(endpoint: str, bucket: str, *extra: str) -> list[dict]:
    result = llmops("pii", "scan", f"s3://{bucket}/inference/", "--output", "jsonl", "--endpoint-url", endpoint,
                    *extra)
    assert result.returncode == 1, result.stderr
    return _jsonl(result.stdout)


def _shard(endpoint: str, bucket: str, index: int | None, shards: int, *extra: str,
           env: dict[str, str] | None = None):
    spec = ["--shard", f"{index}/{shards}"] if index is not None else ["--shards", str(shards)]
    return llmops("pii", "scan", f"s3://{bucket}/inference/", *spec, "--results", f"s3://{bucket}/results/scan-1/",
                  "--output", "none", "--endpoint-url", endpoint, *extra, env=env)


def _merge(endpoint: str, bucket: str, shards: int, output: str = "jsonl"):
    return llmops("pii", "merge", f"s3://{bucket}/results/scan-1/", "--shards", str(shards), "--output", output,
                  "--endpoint-url", endpoint)


def test_every_object_is_in_exactly_one_shard_whatever_the_listing_order():
    sources = [SimpleNamespace(key=f"logs/{i}.jsonl", name=f"s3://b/logs/{i}.jsonl", version_id=None)
               for i in range(500)]
    shuffled = random.Random(1).sample(sources, len(sources))
    for shards in (1, 2, 3, 4, 16):
        parts = [select(sources, i, shards) for i in range(shards)]
        assert sorted(s.key for part in parts for s in part) == sorted(s.key for s in sources)  # each once
        assert [sorted(s.key for s in select(shuffled, i, shards)) for i in range(shards)] == \
            [sorted(s.key for s in part) for part in parts]
    assert all(len(select(sources, i, 4)) > 90 for i in range(4))  # and spread evenly enough


def test_the_shard_is_sha256_of_the_key_and_version_never_pythons_salted_hash():
    import hashlib

    assert shard_of("a/b.jsonl", 7) == int(hashlib.sha256(b"a/b.jsonl").hexdigest(), 16) % 7
    assert shard_of("a/b.jsonl", 7, "v1") == int(hashlib.sha256(b"a/b.jsonl\0v1").hexdigest(), 16) % 7


def test_the_index_comes_from_job_completion_index_when_not_given():
    assert parse_shard("2/5", None, {}) == (2, 5)
    assert parse_shard(None, 5, {"JOB_COMPLETION_INDEX": "3"}) == (3, 5)
    assert parse_shard("/5", None, {"JOB_COMPLETION_INDEX": "0"}) == (0, 5)
    for spec, shards, env, message in (
            ("5/5", None, {}, "--shard 5/5: index '5': expected a shard index from 0 to 4"),
            (None, 4, {}, "--shards 4 without an index: use --shard I/4, or set JOB_COMPLETION_INDEX"),
            ("1/0", None, {}, "--shard 1/0: 0 shards; expected at least 1"),
            ("x", None, {}, "--shard x: expected I/N, e.g. 0/4"),
            (None, 4, {"JOB_COMPLETION_INDEX": "4"}, "JOB_COMPLETION_INDEX '4': expected a shard index from 0 to 3"),
            ("1/4", 3, {}, "--shard 1/4 and --shards 3 disagree on the number of shards")):
        with pytest.raises(ShardError) as refused:
            parse_shard(spec, shards, env)
        assert str(refused.value).startswith(message), (spec, shards, str(refused.value))


@pytest.mark.parametrize("shards", [1, 2, 3, 4])
def test_the_union_of_the_shards_is_the_single_process_scan_exactly(aws_env, shards):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    bucket = f"union-{shards}"
    _fill(s3, bucket)
    local = _local(aws_env, bucket)
    for index in range(shards):  # as the pods of an Indexed Job: the index from JOB_COMPLETION_INDEX
        result = _shard(aws_env, bucket, None, shards, env={"JOB_COMPLETION_INDEX": str(index)})
        assert result.returncode == 0, result.stderr  # findings are a shard's result, not its failure
    per_shard = []
    for index in range(shards):
        body = s3.get_object(Bucket=bucket, Key=f"results/scan-1/shard-{index}.jsonl")["Body"].read().decode()
        assert_no_pii(body)
        *findings, manifest = _jsonl(body)
        manifest = manifest["manifest"]
        assert manifest["shard"] == index and manifest["complete"] and manifest["errors"] == []
        assert manifest["findings"] == len(findings) and sum(manifest["counts"].values()) == len(findings)
        per_shard.append(manifest)
    assert sum(m["objects"] for m in per_shard) == sum(m["versions"] for m in per_shard) == 14
    merged = _merge(aws_env, bucket, shards)
    assert merged.returncode == 1, merged.stderr
    assert _jsonl(merged.stdout) == local  # same findings, same order: no loss, no duplicate
    text = _merge(aws_env, bucket, shards, "text")
    assert text.stdout == llmops("pii", "scan", f"s3://{bucket}/inference/", "--endpoint-url", aws_env).stdout
    assert "14 file(s)" in merged.stderr
    assert_no_pii(merged.stdout, merged.stderr)


def test_versions_are_sharded_by_key_and_version_id(aws_env):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    _fill(s3, "versioned", versions=True)
    local = _local(aws_env, "versioned", "--versions")
    assert len({f["path"] for f in local}) == 14 + 5  # five objects have two versions
    for index in range(3):
        assert _shard(aws_env, "versioned", index, 3, "--versions").returncode == 0
    merged = _merge(aws_env, "versioned", 3)
    assert _jsonl(merged.stdout) == local
    manifests = [_jsonl(s3.get_object(Bucket="versioned", Key=f"results/scan-1/shard-{i}.jsonl")["Body"]
                        .read().decode())[-1]["manifest"] for i in range(3)]
    assert sum(m["versions"] for m in manifests) == 19 and sum(m["objects"] for m in manifests) <= 19


@pytest.mark.parametrize("crash", ["scanned-2", "upload"])
def test_a_shard_killed_mid_scan_and_rerun_gives_no_duplicates(aws_env, crash):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    bucket = f"killed-{crash}"
    _fill(s3, bucket)
    local = _local(aws_env, bucket)
    for index in (0, 2):
        assert _shard(aws_env, bucket, index, 3).returncode == 0
    if crash == "upload":  # a complete result from an earlier attempt is there: the killed rerun must not touch it
        assert _shard(aws_env, bucket, 1, 3).returncode == 0
        before = s3.get_object(Bucket=bucket, Key="results/scan-1/shard-1.jsonl")["Body"].read()
    killed = _shard(aws_env, bucket, 1, 3, env={"LLMOPS_PII_CRASH_AT": crash})
    assert killed.returncode == -9  # SIGKILL, as the kubelet or an OOM kill would
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="results/")["Contents"]]
    if crash == "upload":
        assert s3.get_object(Bucket=bucket, Key="results/scan-1/shard-1.jsonl")["Body"].read() == before
    else:
        assert keys == ["results/scan-1/shard-0.jsonl", "results/scan-1/shard-2.jsonl"]  # nothing partial
        refused = _merge(aws_env, bucket, 3)
        assert refused.returncode == 4 and "1 of 3 shard(s) have no result: 1" in refused.stderr
        assert refused.stdout == ""
    rerun = _shard(aws_env, bucket, 1, 3)
    assert rerun.returncode == 0, rerun.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="results/")["Contents"]]
    assert keys == [f"results/scan-1/shard-{i}.jsonl" for i in range(3)]
    merged = _jsonl(_merge(aws_env, bucket, 3).stdout)
    assert merged == local
    assert not [k for k, n in Counter(json.dumps(f, sort_keys=True) for f in merged).items() if n > 1]


def test_merge_refuses_missing_shards_naming_them(aws_env):
    s3 = boto3.client("s3", endpoint_url=aws_env)
    _fill(s3, "missing", objects=6)
    assert _shard(aws_env, "missing", 1, 4).returncode == 0
    result = _merge(aws_env, "missing", 4)
    assert result.returncode == 4 and result.stdout == ""
    assert "3 of 4 shard(s) have no result: 0, 2, 3" in result.stderr
    # a result of another shard count under the same prefix is not taken for this one
    assert "have no result: 0, 1" in _merge(aws_env, "missing", 2).stderr


def test_results_need_a_shard_and_an_index(aws_env):
    result = llmops("pii", "scan", "s3://x/y/", "--results", "s3://x/results/", "--endpoint-url", aws_env)
    assert result.returncode == 2 and "--results needs a shard" in result.stderr
    result = llmops("pii", "scan", "s3://x/y/", "--shards", "4", "--endpoint-url", aws_env,
                    env={"JOB_COMPLETION_INDEX": ""})
    assert result.returncode == 2 and "JOB_COMPLETION_INDEX" in result.stderr
