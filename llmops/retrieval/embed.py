"""Embedders: an OpenAI-compatible `/v1/embeddings` endpoint (what vLLM serves) in production, and a
deterministic local embedder for tests, drills and benchmarks.

The local embedder is named `local:hashing-<dim>`: words (but common function words) and word pairs
hashed (BLAKE2b, signed) into `dim` buckets, log term frequency, L2-normalised. It knows no meaning -- only shared words --
which is what golden-query tests need: the same text always gets the same vector, on any machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import urllib.request
from collections.abc import Sequence
from typing import Protocol

_WORD = re.compile(r"\w+")
# Function words carry no topic; left out, they do not dilute the words that do.
STOP_WORDS = frozenset("""a about all an and any are as at be by can for from how in into is it more not of on or
than that the them then these this to was we what when which will with you your""".split())


class Embedder(Protocol):
    model: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class LocalEmbedder:
    def __init__(self, model: str) -> None:
        match = re.fullmatch(r"local:hashing-(\d+)", model)
        if not match or not 8 <= int(match.group(1)) <= 4096:
            raise ValueError(f"embedding model {model!r}: expected local:hashing-<dim> with 8 <= dim <= 4096")
        self.model, self.dimension = model, int(match.group(1))
        self._cache: dict[str, tuple[int, float]] = {}

    def _bucket(self, feature: str) -> tuple[int, float]:
        found = self._cache.get(feature)
        if found is None:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            found = (value % self.dimension, 1.0 if value >> 63 else -1.0)
            if len(self._cache) < 1_000_000:
                self._cache[feature] = found
        return found

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]
            counts: dict[str, int] = {}
            for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                counts[feature] = counts.get(feature, 0) + 1
            vector = [0.0] * self.dimension
            for feature, count in counts.items():
                index, sign = self._bucket(feature)
                vector[index] += sign * (1.0 + math.log(count))
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            vectors.append([v / norm for v in vector])
        return vectors


class OpenAIEmbedder:
    """POST {url}/v1/embeddings in batches; the API key, if any, from an environment variable."""

    def __init__(self, url: str, model: str, *, dimension: int, api_key_env: str | None = None, batch: int = 64,
                 timeout: float = 60) -> None:
        self.url, self.model, self.dimension = url.rstrip("/"), model, dimension
        self.api_key_env, self.batch, self.timeout = api_key_env, batch, timeout

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            body = json.dumps({"model": self.model, "input": list(texts[start:start + self.batch])}).encode()
            headers = {"Content-Type": "application/json"}
            if self.api_key_env and os.environ.get(self.api_key_env):
                headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
            request = urllib.request.Request(f"{self.url}/v1/embeddings", data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = sorted(json.load(response)["data"], key=lambda item: item["index"])
            for item in data:
                if len(item["embedding"]) != self.dimension:
                    raise ValueError(f"{self.url}: {self.model} returned {len(item['embedding'])} dimensions, "
                                     f"expected {self.dimension}")
                vectors.append(item["embedding"])
        return vectors


def embedder_for(model: str, *, url: str | None = None, dimension: int | None = None,
                 api_key_env: str | None = None) -> Embedder:
    if model.startswith("local:"):
        return LocalEmbedder(model)
    if not url or not dimension:
        raise ValueError(f"embedding model {model!r} is served remotely: give its OpenAI-compatible URL and dimension")
    return OpenAIEmbedder(url, model, dimension=dimension, api_key_env=api_key_env)
