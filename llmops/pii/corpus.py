"""A labelled corpus of inference-log lines: entities at known offsets -- also right against sentence
punctuation (`my number is +33 1 58 37 92 98. Thanks`, brackets, quotes) -- and hard negatives that must
not match (Luhn-failing card-like numbers, order ids, timestamps, versions, UUIDs, IPv4 addresses
beside phone-like text, e-mail-like strings in code). Deterministic for a seed.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Label:
    line: int  # 1-based
    start: int
    end: int
    entity_type: str


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = digits + check
        total = 0
        for index, d in enumerate(reversed(candidate)):
            value = int(d) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def _group(number: str, sep: str, sizes: tuple[int, ...]) -> str:
    parts, index = [], 0
    for size in sizes:
        parts.append(number[index:index + size])
        index += size
    return sep.join(p for p in parts if p)


def card(rng: random.Random) -> str:
    if rng.random() < 0.2:
        number = _luhn_complete("37", 15, rng)  # Amex
        return _group(number, rng.choice([" ", "-", ""]), (4, 6, 5))
    number = _luhn_complete(rng.choice(["4", "51", "55", "6011"]), 16, rng)
    return _group(number, rng.choice([" ", "-", ""]), (4, 4, 4, 4))


def luhn_failing(rng: random.Random) -> str:
    number = card(rng)
    digits = [c for c in number if c.isdigit()]
    last = str((int(digits[-1]) + 1) % 10)
    return number[:-1] + last


def email(rng: random.Random) -> str:
    first = rng.choice(["jane", "omar", "li", "maria", "kofi", "anna", "raj", "sven"])
    last = rng.choice(["doe", "haddad", "wei", "garcia", "mensah", "berg", "patel", "nilsson"])
    domain = rng.choice(["example.com", "mail.example.org", "corp-mail.example.net", "example.co.uk"])
    return f"{first}{rng.choice(['.', '_', ''])}{last}{rng.randint(0, 99) if rng.random() < .5 else ''}@{domain}"


def phone(rng: random.Random) -> str:
    def n(k: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(k))

    area = str(rng.randint(201, 989))
    return rng.choice([
        f"+1 {area} 555 {n(4)}", f"({area}) 555-{n(4)}", f"{area}-555-{n(4)}", f"+1{area}555{n(4)}",
        f"+44 20 {n(4)} {n(4)}", f"+49 30 {n(4)} {n(4)}", f"+33 1 {n(2)}{n(2)} {n(4)}", f"+91 98{n(3)} {n(5)}",
    ])


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def invalid_ssn(rng: random.Random) -> str:
    return rng.choice([f"000-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                       f"666-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                       f"9{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                       f"{rng.randint(100, 599)}-00-{rng.randint(1000, 9999)}"])


def ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xffff):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return "2001:db8::" + ":".join(groups[:3])
    return ":".join(groups)


def iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24)])
    if country in ("GB", "NL"):
        body = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + \
            "".join(rng.choice(string.digits) for _ in range(length - 8))
    else:
        body = "".join(rng.choice(string.digits) for _ in range(length - 4))
    numeric = int("".join(str(int(c, 36)) for c in body + country + "00"))
    compact = f"{country}{98 - numeric % 97:02d}{body}"
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4)) if rng.random() < 0.5 else compact


def aws_key(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def jwt(rng: random.Random) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    signature = base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': str(rng.randint(1, 10**6)), 'iat': 1763770000})}.{signature}"


ENTITIES: dict[str, Callable[[random.Random], str]] = {
    "EMAIL_ADDRESS": email, "PHONE_NUMBER": phone, "CREDIT_CARD": card, "US_SSN": ssn, "IP_ADDRESS": ipv4,
    "IBAN_CODE": iban, "AWS_ACCESS_KEY": aws_key, "JWT": jwt}
IPV6 = ipv6

NEGATIVES: list[Callable[[random.Random], str]] = [
    lambda r: f"order ORD-{r.randint(2020, 2026)}-{r.randint(0, 999999):06d}",
    lambda r: f"at 2026-11-{r.randint(10, 28)}T{r.randint(10, 23)}:{r.randint(10, 59)}:{r.randint(10, 59)}Z",
    lambda r: f"vllm v0.{r.randint(6, 11)}.{r.randint(0, 9)} on python 3.11.{r.randint(0, 9)}",
    lambda r: f"request {uuid.UUID(int=r.getrandbits(128))}",
    lambda r: f"card-like {luhn_failing(r)} failed the check",
    lambda r: f"ssn-like {invalid_ssn(r)} is not issued",
    lambda r: "see `pip install pkg@1.2.3` or npm i @scope/pkg@2.0.1",
    lambda r: "ssh git@github or user@localhost in code",
    lambda r: f"took {r.randint(100, 999)}.{r.randint(10, 99)} ms at {r.randint(1, 99)}% util",
    lambda r: f"build {r.randint(10**9, 10**10 - 1)} finished",
    lambda r: f"tokens {r.randint(1000, 99999)}/{r.randint(100000, 999999)} used",
    lambda r: f"host 10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}.{r.randint(1, 9)} ext {r.randint(100, 999)}",
    lambda r: f"std::vector<int> v; mac {':'.join(f'{r.randint(0, 255):02x}' for _ in range(6))}",
    lambda r: f"sha {r.randbytes(20).hex()} at epoch ms {r.randint(1_700_000_000_000, 1_799_999_999_999)}",
    lambda r: f"score +{r.randint(1, 99)}.{r.randint(0, 9)} vs -{r.randint(1, 9)} over {r.randint(2, 9)} runs",
    # Against punctuation too: a five-part version before a full stop, a 3-3-5 id in brackets, a time before a colon.
    lambda r: f"release {'.'.join(str(r.randint(0, 20)) for _ in range(5))}. done",
    lambda r: f"ids ({r.randint(100, 999)}-{r.randint(100, 999)}-{r.randint(10000, 99999)}), next",
    lambda r: f"at {r.randint(10, 23)}:{r.randint(10, 59)}:{r.randint(10, 59)}: ok",
]

# Free text between the values: what most of a real prompt or completion is.
PROSE = [
    "Summarise the attached meeting notes in three bullet points",
    "The model keeps repeating the last paragraph when the context is long",
    "Please rewrite this so it sounds less formal and fits in a tweet",
    "Why does the retrieval step return documents from last year",
    "Translate the following into German and keep the formatting",
    "Here is the stack trace from the worker that crashed overnight",
    "Can you explain the difference between a mutex and a semaphore",
    "Draft a polite reply declining the invitation for next week",
    "List the steps to rotate the credentials without downtime",
    "The answer cited a policy that was withdrawn in the spring",
]

TEMPLATES = [
    "my email is {e}, please write back",
    "call me on {e} after six",
    "card {e} was declined again",
    "it says SSN {e} on the form",
    "the client at {e} keeps timing out",
    "wire it to {e} by friday",
    "my key {e} stopped working",
    "token {e} expired",
    # Values against sentence punctuation ({q} is a double quote, escaped in JSON lines); every template
    # is followed by ". ", so "my number is {e}" ends in a full stop.
    "my number is {e}",
    "reach me at {e}; or not",
    "write it down: {e}: that one",
    "is it {e}? please check",
    "it is {e}! urgent",
    "see ({e}) again",
    "the value {q}{e}{q} leaked",
    "try '{e}', then",
]


def generate(lines: int, seed: int = 7, jsonl: bool = True, density: float = 0.5,
             prose: int = 0) -> Iterator[tuple[str, list[Label]]]:
    """(line text, labels) pairs. A `density` share of the lines carries one or two entities; every line
    carries hard negatives, and up to `prose` sentences of free text. In JSON lines, the prompt is a JSON
    string whose sentences are sometimes separated by an escaped newline (`\\n`), as multi-line prompts are."""
    if not 0 <= density <= 1:
        raise ValueError(f"density = {density}: expected a fraction between 0 and 1")
    rng = random.Random(seed)
    types = list(ENTITIES)
    for number in range(1, lines + 1):
        pieces: list[tuple[str, str | None]] = [(rng.choice(NEGATIVES)(rng) + ". ", None)]
        pieces += [(rng.choice(PROSE) + rng.choice([". ", "? ", ".\\n" if jsonl else ". "]), None)
                   for _ in range(rng.randint(0, prose))]
        for _ in range(rng.choice([1, 1, 2]) if rng.random() < density else 0):
            entity_type = rng.choice(types)
            value = IPV6(rng) if entity_type == "IP_ADDRESS" and rng.random() < 0.3 else ENTITIES[entity_type](rng)
            before, after = rng.choice(TEMPLATES).replace("{q}", '\\"' if jsonl else '"').split("{e}")
            if jsonl and rng.random() < 0.2:
                before = "\\n"  # the value starts a new line of the prompt
            pieces += [(before, None), (value, entity_type), (after + ". ", None)]
        pieces.append((rng.choice(NEGATIVES)(rng), None))
        text, labels = "", list[Label]()
        prefix = (f'{{"ts": "2026-11-22T03:{number % 60:02d}:00Z", "model": "chat", "request_id": '
                  f'"{uuid.UUID(int=rng.getrandbits(128))}", "prompt": "') if jsonl else "2026-11-22 prompt: "
        offset = len(prefix)
        for piece, kind in pieces:
            if kind:
                labels.append(Label(number, offset, offset + len(piece), kind))
            text += piece
            offset += len(piece)
        line = prefix + text + ('", "tokens": 128}' if jsonl else "")
        if jsonl:
            json.loads(line)  # the corpus is valid JSON lines
        yield line, labels


def write(path: str, lines: int, *, seed: int = 7, jsonl: bool = True, density: float = 0.5, prose: int = 0,
          labels_path: str | None = None) -> int:
    """Write a corpus file (and, if asked, its labels as JSON lines); returns the bytes written."""
    written = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out, \
            (open(labels_path, "w", encoding="utf-8") if labels_path else _Null()) as labels_out:
        for text, labels in generate(lines, seed=seed, jsonl=jsonl, density=density, prose=prose):
            written += out.write(text + "\n")
            for label in labels:
                labels_out.write(json.dumps(label.__dict__) + "\n")
    return written


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, text: str) -> int:
        return 0
