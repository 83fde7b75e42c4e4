"""Synthetic request-log traffic for drills, tests and the benchmark: prompts drawn from topics (each a vocabulary),
with the numbers a request log carries. Deterministic for a seed.

A topic is a set of content words; a prompt is a short request made of a few of them, so prompts of one topic share
words and prompts of different topics share almost none -- which is all the local hashing embedder can see, and
roughly how sentence embeddings separate topics. Token counts follow a log-normal per topic; `prompt_scale`
multiplies them (the numeric shift). Optional personal data in prompts exercises the monitor's promise to keep none.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

TOPICS: dict[str, list[str]] = {
    "billing": "invoice refund charge payment subscription plan price discount receipt billing tax overdue "
               "renewal upgrade downgrade".split(),
    "code": "python function exception stacktrace bug compile unittest deploy docker kubernetes container "
            "refactor regex null pointer".split(),
    "travel": "flight hotel booking trip visa airport luggage train itinerary beach passport layover "
              "boarding rental cruise".split(),
    "cooking": "recipe oven flour sugar bake pasta sauce garlic onion dinner simmer roast dough spice "
               "vegetarian".split(),
    "legal": "contract clause liability lawsuit tenant lease agreement court attorney copyright "
             "trademark warranty settlement".split(),
    "writing": "essay paragraph summary outline headline blog draft tone grammar rewrite proofread "
               "storytelling poem".split(),
    "data": "spreadsheet pivot chart dashboard sql query join aggregate csv column forecast regression "
            "outlier".split(),
    "hr": "interview resume onboarding payroll vacation promotion feedback hiring salary benefits "
          "manager performance".split(),
    # Not in the default reference mix: what a shift brings.
    "health": "sleep exercise diet doctor headache vitamin symptoms stress heart blood pressure "
              "allergy fever".split(),
    "gaming": "console multiplayer quest level boss controller speedrun esports loot guild "
              "respawn patch".split(),
}
REFERENCE_MIX = ("billing", "code", "travel", "cooking", "legal", "writing", "data", "hr")
OPENERS = ["please", "help", "explain", "quick", "need", "could", "tell", "show"]
PII = ["my email is jane.doe@example.com", "call me on +1 415 555 0132", "card 4111 1111 1111 1111 was charged",
       "SSN 078-05-1120 on the form"]


@dataclass(frozen=True)
class Shape:
    """How requests of one kind look: the topics they ask about and the numbers they carry."""
    topics: Sequence[str] = REFERENCE_MIX
    prompt_scale: float = 1.0  # multiplies prompt tokens (1.5: the numeric shift)
    pii_share: float = 0.0  # share of prompts carrying personal data


BASE = Shape()  # the reference's traffic


def record(rng: random.Random, shape: Shape, *, ts: float, model: str = "chat", release: str = "r1") -> dict[str, Any]:
    topic = rng.choice(list(shape.topics))
    words = TOPICS[topic]
    prompt = " ".join([rng.choice(OPENERS), *rng.sample(words, 4)])
    if shape.pii_share and rng.random() < shape.pii_share:
        prompt += ", " + rng.choice(PII)
    base = {name: i for i, name in enumerate(TOPICS)}[topic]
    prompt_tokens = max(1, round(rng.lognormvariate(math.log(120 + 15 * base), 0.35) * shape.prompt_scale))
    return {"ts": ts, "model": model, "release": release, "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "prompt": prompt, "prompt_tokens": prompt_tokens,
            "completion_tokens": max(1, round(rng.lognormvariate(math.log(220), 0.4))),
            "retrieval_top_score": round(min(1.0, max(0.0, rng.gauss(0.78, 0.08))), 4),
            "latency_ms": round(rng.lognormvariate(math.log(900), 0.3))}


def mixed(shift: Shape, share: float, base: Shape = Shape()) -> Iterator[Shape]:
    """Never ends: `shift` for a `share` of requests, `base` for the rest (drawn per request by the caller)."""
    while True:
        yield shift if random.random() < share else base


def arrivals(rng: random.Random, rate: float, start: float, end: float) -> Iterator[float]:
    """Poisson arrival times at `rate` per second in [start, end)."""
    t = start
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= end:
            return
        yield t


def daily_rate(mean: float, t: float, amplitude: float = 0.8) -> float:
    """A day's cycle of volume around `mean` (lowest at 04:00, highest at 16:00)."""
    return mean * (1 + amplitude * math.sin(2 * math.pi * (t / 86400 - 10 / 24)))


def write_log(path: str, records: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for r in records:
            out.write(json.dumps(r) + "\n")


def log_lines(rng: random.Random, count: int, shape: Shape = Shape(), *, start: float = 1_790_000_000.0,
              rate: float = 10.0, model: str = "chat") -> list[dict[str, Any]]:
    """`count` records of one shape, `rate` per second from `start`."""
    return [record(rng, shape, ts=start + i / rate, model=model) for i in range(count)]
