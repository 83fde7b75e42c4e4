"""A generated corpus for reindex tests, drills and benchmarks: documents about topics, each with a few
words of its own, and golden queries whose expected documents are known. Deterministic for a seed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

TOPICS = {
    "billing": "invoice refund payment card charge subscription plan receipt tax currency",
    "serving": "latency throughput replica gpu batch token cache queue timeout model",
    "security": "password rotation key vault access role policy audit breach encryption",
    "retrieval": "index embedding chunk query ranking recall corpus document vector search",
    "onboarding": "account signup welcome profile team invite workspace setup tutorial guide",
}
FILLER = ("the a to of and in for is on with that this as it be at by from or are was we can will not you "
          "your all any more when which how what about into than then them these").split()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))


def documents(count: int, seed: int = 11, words: int = 220) -> Iterator[tuple[str, str, list[str]]]:
    """(key, text, its own words) per document; paragraphs of sentences mixing topic words, filler and its own."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    for number in range(count):
        topic = topics[number % len(topics)]
        own = [_word(rng) for _ in range(3)]
        vocabulary = TOPICS[topic].split()
        sentences, total = [], 0
        while total < words:
            length = rng.randint(8, 18)
            sentence = [rng.choice(FILLER if rng.random() < 0.5 else vocabulary) for _ in range(length)]
            if rng.random() < 0.35:
                sentence[rng.randrange(length)] = rng.choice(own)
            sentences.append(" ".join(sentence).capitalize() + ".")
            total += length
        paragraphs = [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]
        yield f"docs/{topic}/{number:06d}.txt", "\n\n".join(paragraphs), own


def golden(count: int, seed: int = 11, queries: int = 50, words: int = 220) -> list[dict[str, Any]]:
    """Queries made of a document's own words and its topic; the document is the expected answer."""
    rng = random.Random(seed + 1)
    docs = list(documents(count, seed, words))
    picked = rng.sample(docs, min(queries, len(docs)))
    return [{"query": " ".join(own[:2]) + " " + key.split("/")[1], "expected": [key]} for key, _, own in picked]
