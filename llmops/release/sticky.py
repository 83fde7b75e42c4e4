"""Sticky canaries for applications: which bucket a stable key (a user or session id) falls in, and which track a
canary at a weight serves it from. Send `bucket(key)` in the route's sticky header (`models[].canary.sticky.header`,
default `x-llmops-bucket`); the route's rules pin each bucket to a track, so a user keeps seeing the same version, and
raising the weight only moves users from stable to canary.

Pure and tiny: SHA-256 of the key's UTF-8 bytes, its first 8 bytes as a big-endian integer, mod 100 -- the same in
every process, language and Python version (never Python's `hash()`, salted per process). Which buckets are canary
is `components.manifests.route.canary_buckets`, the definition the rendered route follows.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from components.manifests.route import BUCKETS, canary_buckets

HEADER = "x-llmops-bucket"  # the default sticky header (components.config.Sticky)


def bucket(key: str) -> int:
    """The bucket of `key`, 0..99: int(sha256(key)[:8]) mod 100."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def header_value(key: str) -> str:
    """What to send in the sticky header for `key`."""
    return str(bucket(key))


def track(key: str, weight: int) -> Literal["canary", "stable"]:
    """The track a sticky request with `key` reaches while the canary is at `weight` percent."""
    return "canary" if bucket(key) in canary_buckets(weight) else "stable"
