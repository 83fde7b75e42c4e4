"""llmops.release.sticky: the bucket of a key is the same everywhere, a canary's weight moves keys only from stable to
canary, and the route the stack renders sends every bucket where `track` says -- whatever the replica counts.
10,000 keys from a seeded generator (hypothesis is not among the project's constraints)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import uuid
from collections import Counter

import pytest

from components.manifests import route
from components.manifests.vllm import Track, http_route, vllm_objects
from components.release import release_parts
from llmops.release.sticky import HEADER, bucket, header_value, track

RNG = random.Random(20261118)
KEYS = [f"user-{RNG.getrandbits(64):016x}" if i % 2 else str(uuid.UUID(int=RNG.getrandbits(128), version=4))
        for i in range(10_000)]


def test_bucket_is_sha256_first_8_bytes_mod_100_pinned():
    # Pinned values: a change of hash, byte order or encoding would move every user; this test says so first.
    assert [bucket(k) for k in ("", "user-1", "alice@example.com", "Zoë")] == [
        int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "big") % 100
        for k in ("", "user-1", "alice@example.com", "Zoë")]
    assert bucket("user-1") == 94
    assert header_value("user-1") == "94"
    assert all(0 <= bucket(k) < route.BUCKETS for k in KEYS)


def test_buckets_are_close_to_uniform():
    counts = Counter(bucket(k) for k in KEYS)
    assert len(counts) == route.BUCKETS
    assert max(counts.values()) < 160 and min(counts.values()) > 50  # 100 expected, sd 10


def test_same_key_same_bucket_in_another_process_with_another_hash_seed():
    sample = KEYS[:200]
    code = ("import sys; from llmops.release.sticky import bucket; "
            "print(','.join(str(bucket(k)) for k in sys.stdin.read().split()))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input="\n".join(sample), capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    assert out == ",".join(str(bucket(k)) for k in sample)


@pytest.mark.parametrize("weight", [0, 5, 10, 50, 100])
def test_same_key_same_track(weight):
    assert [track(k, weight) for k in KEYS] == [track(k, weight) for k in KEYS]
    share = sum(track(k, weight) == "canary" for k in KEYS) / len(KEYS)
    assert abs(share - weight / 100) < 0.02


def test_raising_the_weight_moves_keys_only_from_stable_to_canary():
    before = {k: track(k, 5) for k in KEYS}
    after = {k: track(k, 10) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(before[k] == "stable" and after[k] == "canary" for k in moved)
    for low, high in ((0, 1), (10, 25), (25, 50), (50, 100)):
        assert not any(track(k, low) == "canary" and track(k, high) == "stable" for k in KEYS)


def spec(*, stable_replicas: int, canary_replicas: int, weight: int, shadow: bool):
    """A VllmSpec as vllm_service.vllm_spec builds one, replicas and weight as asked."""
    from components.manifests.vllm import VllmSpec

    def parts(version):
        return release_parts(registered_model="m", model_version=version, image="r/v@sha256:" + "0" * 64,
                             serving_args=["/models/m/" + version], prompt_version="p", feature_view=None,
                             retrieval_fingerprint=None)
    return VllmSpec(
        name="chat-small", namespace="serving", image="r/v@sha256:" + "0" * 64, pool="l4", tensor_parallel_size=1,
        max_model_len=8192, gpu_memory_utilization=0.9, size_gib=16, cache_gib=18, cpu=2, memory_gib=8,
        min_replicas=stable_replicas, max_replicas=stable_replicas, queue_depth_target=5, startup_base_seconds=180,
        startup_seconds_per_gib=4.0, surge=0, registry_uri="http://mlflow", fetch_image="r/m@sha256:" + "0" * 64,
        hostnames=("chat-small.example.com",), gateway=("serving", "inference"), prometheus_url="http://prom",
        stable=Track(route.STABLE, parts("3"), stable_replicas, route.stable_weight(weight)),
        canary=Track(route.CANARY, parts("4"), canary_replicas, weight),
        shadow=Track(route.SHADOW, parts("5"), 1, 10) if shadow else None,
        sticky_header=HEADER, tags={"owner": "o", "cost-center": "c", "environment": "staging"})


@pytest.mark.parametrize("weight", [1, 5, 20, 64, 99])
def test_the_rendered_route_sends_every_key_where_track_says_whatever_the_replicas(weight):
    routes = [http_route(spec(stable_replicas=s, canary_replicas=c, weight=weight, shadow=m))
              for s, c, m in ((1, 1, False), (8, 1, True), (2, 16, True), (64, 3, False))]
    assignments = [route.sticky_assignment(r) for r in routes]
    assert all(a == assignments[0] for a in assignments)  # replica counts change nothing
    for key in KEYS:
        assert assignments[0][bucket(key)] == route.backend_name("chat-small", track(key, weight))


def test_a_replica_change_renders_the_same_route_and_rules():
    one, other = (http_route(spec(stable_replicas=s, canary_replicas=c, weight=20, shadow=True)) for s, c in ((1, 1), (9, 4)))
    assert one["spec"]["rules"] == other["spec"]["rules"]


def test_the_shadow_runs_as_its_own_deployment_and_service_outside_the_weighted_backends():
    objects = vllm_objects(spec(stable_replicas=2, canary_replicas=1, weight=20, shadow=True))
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "chat-small-shadow"), ("Service", "chat-small-shadow"),
            ("PodDisruptionBudget", "chat-small-shadow")} <= names
    rendered = next(o for o in objects if o["kind"] == "HTTPRoute")
    backends = {ref["name"] for rule in rendered["spec"]["rules"] for ref in rule["backendRefs"]}
    assert "chat-small-shadow" not in backends  # reached by the mirror only
