"""A drift policy and a reference built from synthetic request logs, shared by the drift tests."""

import random

import pytest

from components.config.drift import Drift
from llmops.drift import traffic
from llmops.drift.reference import build_reference
from llmops.retrieval.embed import LocalEmbedder

EMBEDDING_MODEL = "local:hashing-256"


def policy(**overrides) -> Drift:
    return Drift.model_validate({"features": [{"field": "prompt_tokens"}, {"field": "completion_tokens"},
                                              {"field": "retrieval_top_score"}],
                                 "embedding": {"index": "docs"}, **overrides})


@pytest.fixture(scope="session")
def embedder():
    return LocalEmbedder(EMBEDDING_MODEL)


@pytest.fixture(scope="session")
def reference_records():
    return traffic.log_lines(random.Random(11), 4000)


@pytest.fixture(scope="session")
def reference(reference_records, embedder):
    return build_reference(reference_records, model="chat", drift=policy(), embedder=embedder, release="r1",
                           reason="initial")
