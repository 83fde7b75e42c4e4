"""A judge for shadow comparisons: an OpenAI-compatible `/v1/chat/completions` endpoint asked, for a seeded sample of
pairs, which answer is better (the prompt, the parse rule and the version in llmops/release/judges/pairwise-v1.yaml).

- Position: which of primary and shadow is answer A is drawn per pair from the same seeded generator.
- Win rate: the shadow's wins plus half its ties over the parsed verdicts, with a 95 % Wilson score interval (the
  binomial interval that stays inside [0, 1] and keeps its coverage for small samples and rates near 0 or 1; ties
  as half a success make the count non-integral, which the formula takes as is).
- Calibration: the same judge on a labelled set of pairs with people's verdicts; agreement in percent and Cohen's
  kappa (agreement beyond what the two label frequencies give by chance). The record names the judge version, the
  model the endpoint said answered, the labelled set's sha256, agreement and date; a comparison finds the record for
  its version and model, and only a kappa at or above the limit lets the score gate.
- HTTP: a timeout per request, retries with exponential backoff on 429, 5xx and connection errors (Retry-After is
  honoured, capped); errors name the endpoint and the status, never a prompt, an answer or a reply body.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmops.release.shadow.compare import Pair
from llmops.release.shadow.refusal import SpecError, load_yaml_mapping, spec_path

DEFAULT_JUDGE = "pairwise-v1"
VERDICTS = ("a", "b", "tie")
Z95 = 1.959963984540054


class JudgeError(Exception):
    """The judge could not be asked: the endpoint and the reason (status, timeout), never text sent or received."""


@dataclass(frozen=True)
class JudgeSpec:
    version: str
    path: Path
    system: str
    template: str
    pattern: re.Pattern[str]
    verdicts: dict[str, str]  # group 1, upper-cased -> a | b | tie
    max_answer_chars: int
    max_tokens: int
    temperature: float
    labelled: Path | None

    def messages(self, prompt: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
        cut = self.max_answer_chars
        user = (self.template.replace("{prompt}", prompt[:cut]).replace("{answer_a}", answer_a[:cut])
                .replace("{answer_b}", answer_b[:cut]))
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def parse(self, reply: str) -> str | None:
        found = self.pattern.search(reply)
        return self.verdicts.get(found.group(1).upper()) if found else None

    def labelled_sha256(self) -> str | None:
        if self.labelled is None or not self.labelled.is_file():
            return None
        return hashlib.sha256(self.labelled.read_bytes()).hexdigest()


def load_judge(name: str = DEFAULT_JUDGE) -> JudgeSpec:
    path = spec_path(name)
    data = load_yaml_mapping(path)

    def text(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{path}: {key}: expected text")
        return value

    version, system, template = text("version"), text("system"), text("template")
    for slot in ("{prompt}", "{answer_a}", "{answer_b}"):
        if slot not in template:
            raise SpecError(f"{path}: template: expected {slot} in it")
    parse = data.get("parse")
    if not isinstance(parse, dict) or not isinstance(parse.get("pattern"), str) or not isinstance(parse.get("verdicts"), dict):
        raise SpecError(f"{path}: parse: expected pattern (a regular expression) and verdicts (a mapping)")
    try:
        pattern = re.compile(parse["pattern"], re.IGNORECASE)
    except re.error as error:
        raise SpecError(f"{path}: parse.pattern: not a regular expression ({error})") from None
    if pattern.groups < 1:
        raise SpecError(f"{path}: parse.pattern: expected a group: the verdict")
    verdicts = {str(k).upper(): v for k, v in parse["verdicts"].items()}
    if not set(verdicts.values()) <= set(VERDICTS) or set(verdicts.values()) != set(VERDICTS):
        raise SpecError(f"{path}: parse.verdicts: expected each of a, b and tie as a value")
    numbers = {"maxAnswerChars": 4000, "maxTokens": 8}
    for key, default in numbers.items():
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise SpecError(f"{path}: {key}: expected a whole number from 1 to 100000")
        numbers[key] = value
    temperature = data.get("temperature", 0)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise SpecError(f"{path}: temperature: expected a number from 0 to 2")
    labelled = data.get("labelled")
    if labelled is not None and not isinstance(labelled, str):
        raise SpecError(f"{path}: labelled: expected a file name beside it")
    return JudgeSpec(version=version, path=path, system=system, template=template, pattern=pattern,
                     verdicts=verdicts, max_answer_chars=numbers["maxAnswerChars"], max_tokens=numbers["maxTokens"],
                     temperature=float(temperature), labelled=path.parent / labelled if labelled else None)


def endpoint(url: str) -> str:
    """The chat completions URL for a judge given as a base URL (http://host:8000 or .../v1) or the full path."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("expected an http(s) URL of an OpenAI-compatible server, e.g. http://judge:8000")
    path = parsed.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path = (path if path.endswith("/v1") else path + "/v1") + "/chat/completions"
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def safe_endpoint(url: str) -> str:
    """The URL as it may be printed and recorded: no credentials, no query."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, "", ""))


class JudgeClient:
    def __init__(self, url: str, model: str | None, *, timeout: float = 30.0, attempts: int = 4,
                 backoff: float = 0.5, max_wait: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 api_key: str | None = None) -> None:
        self.url, self.model = endpoint(url), model
        self.timeout, self.attempts, self.backoff, self.max_wait, self.sleep = timeout, attempts, backoff, max_wait, sleep
        self.api_key = api_key
        self.where = safe_endpoint(self.url)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt"
        for attempt in range(self.attempts):
            wait = self.backoff * 2 ** attempt
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = json.loads(response.read())
                if not isinstance(answer, dict):
                    raise JudgeError(f"judge {self.where}: the reply is not a JSON object")
                return answer
            except urllib.error.HTTPError as error:
                error.close()
                if error.code != 429 and error.code < 500:
                    raise JudgeError(f"judge {self.where}: HTTP {error.code}") from None
                last = f"HTTP {error.code}"
                retry_after = error.headers.get("Retry-After") if error.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = max(wait, float(retry_after.strip()))
            except urllib.error.URLError as error:
                reason = error.reason
                if isinstance(reason, TimeoutError):
                    last = f"no reply within {self.timeout:g} s"
                elif isinstance(reason, str):
                    last = reason
                else:
                    last = getattr(reason, "strerror", None) or type(reason).__name__
            except TimeoutError:
                last = f"no reply within {self.timeout:g} s"
            except ValueError:
                raise JudgeError(f"judge {self.where}: the reply is not JSON") from None
            except (OSError, http.client.HTTPException) as error:  # the connection broke mid-reply
                last = type(error).__name__
            if attempt + 1 < self.attempts:
                self.sleep(min(wait, self.max_wait))
        raise JudgeError(f"judge {self.where}: {last} after {self.attempts} attempts")

    def ask(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> tuple[str, str | None]:
        """(the reply's text, the model the endpoint says answered)."""
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if self.model:
            body["model"] = self.model
        answer = self._post(body)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {self.where}: the reply has no choices[0].message.content") from None
        served = answer.get("model")
        return (content if isinstance(content, str) else ""), (served if isinstance(served, str) else self.model)


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (successes may be fractional: ties count half)."""
    if n <= 0:
        raise ValueError("no trials")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's kappa of two raters over the same items; 1.0 when both give one and the same label throughout."""
    if len(first) != len(second) or not first:
        raise ValueError("expected two equally long, non-empty label lists")
    n = len(first)
    observed = sum(1 for x, y in zip(first, second, strict=True) if x == y) / n
    labels = set(first) | set(second)
    expected = sum((first.count(label) / n) * (second.count(label) / n) for label in labels)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1 - expected)


@dataclass(frozen=True)
class JudgeResult:
    version: str
    served_model: str | None
    sampled: int  # pairs asked
    wins: int  # the shadow's answer judged better
    losses: int
    ties: int
    unparsed: int  # replies the parse rule did not match: not in the win rate
    win_rate: float | None
    low: float | None
    high: float | None
    seed: int

    @property
    def judged(self) -> int:
        return self.wins + self.losses + self.ties


def judge_pairs(client: JudgeClient, spec: JudgeSpec, pairs: Sequence[Pair], sample: int, seed: int) -> JudgeResult:
    rng = random.Random(seed)
    ordered = sorted(pairs, key=lambda p: p.request_id)
    chosen = rng.sample(ordered, min(sample, len(ordered)))
    wins = losses = ties = unparsed = 0
    served: str | None = None
    for pair in chosen:
        prompt, primary, shadow = pair.primary.prompt or pair.shadow.prompt or "", pair.primary.answer, pair.shadow.answer
        if primary is None or shadow is None:
            raise ValueError("pairs were joined without their text (keep_text=False)")
        shadow_first = rng.random() < 0.5
        a, b = (shadow, primary) if shadow_first else (primary, shadow)
        reply, served = client.ask(spec.messages(prompt, a, b), spec.max_tokens, spec.temperature)
        verdict = spec.parse(reply)
        if verdict is None:
            unparsed += 1
        elif verdict == "tie":
            ties += 1
        elif (verdict == "a") == shadow_first:
            wins += 1
        else:
            losses += 1
    judged = wins + losses + ties
    rate = (wins + ties / 2) / judged if judged else None
    low, high = wilson(wins + ties / 2, judged) if judged else (None, None)
    return JudgeResult(spec.version, served, len(chosen), wins, losses, ties, unparsed, rate, low, high, seed)


# --- calibration ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    judge_version: str
    endpoint_model: str
    endpoint: str
    labelled: str  # the labelled set's file name
    labelled_sha256: str
    items: int
    agreement: float  # 0..1
    kappa: float
    unparsed: int
    date: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_labelled(path: Path) -> list[dict[str, str]]:
    """The labelled set: one JSON object per line with prompt, answer_a, answer_b and human (a, b or tie)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SpecError(f"--labelled {path}: cannot be read: {error.strerror or error}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise SpecError(f"--labelled {path}: line {number}: not JSON") from None
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("prompt", "answer_a", "answer_b")):
            raise SpecError(f"--labelled {path}: line {number}: expected prompt, answer_a and answer_b (text)")
        if item.get("human") not in VERDICTS:
            raise SpecError(f"--labelled {path}: line {number}: human: expected a, b or tie")
        items.append({k: item[k] for k in ("prompt", "answer_a", "answer_b", "human")})
    if len(items) < 10:
        raise SpecError(f"--labelled {path}: {len(items)} labelled pairs; expected at least 10")
    return items


def calibrate(client: JudgeClient, spec: JudgeSpec, labelled: Path,
              now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Calibration:
    items = load_labelled(labelled)
    human, judged = [], []
    served: str | None = None
    for item in items:
        reply, served = client.ask(spec.messages(item["prompt"], item["answer_a"], item["answer_b"]),
                                   spec.max_tokens, spec.temperature)
        human.append(item["human"])
        judged.append(spec.parse(reply) or "unparsed")  # an unparsed reply disagrees
    agreement = sum(1 for h, j in zip(human, judged, strict=True) if h == j) / len(items)
    return Calibration(judge_version=spec.version, endpoint_model=served or "unknown", endpoint=client.where,
                       labelled=labelled.name, labelled_sha256=hashlib.sha256(labelled.read_bytes()).hexdigest(),
                       items=len(items), agreement=agreement, kappa=cohen_kappa(human, judged),
                       unparsed=judged.count("unparsed"), date=now().isoformat(timespec="seconds"))


def _record_name(version: str, model: str) -> str:
    return f"{version}--{re.sub(r'[^A-Za-z0-9._-]', '_', model)[:120]}.json"


def save_calibration(directory: Path, calibration: Calibration) -> Path:
    """Whole or not at all (a scratch file, then a rename); one record per judge version and model, the latest."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / _record_name(calibration.judge_version, calibration.endpoint_model)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(calibration.to_dict(), sort_keys=True, indent=1) + "\n")
    scratch.replace(path)
    return path


def load_calibration(directory: Path, version: str, model: str) -> Calibration | None:
    path = directory / _record_name(version, model)
    try:
        data = json.loads(path.read_text())
        return Calibration(**data)
    except (OSError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Standing:
    """Whether a judge's score may gate, and why."""
    gates: bool
    reason: str
    calibration: Calibration | None


def standing(spec: JudgeSpec, served_model: str | None, directory: Path, min_kappa: float) -> Standing:
    if served_model is None:
        return Standing(False, "not calibrated: the endpoint named no model", None)
    record = load_calibration(directory, spec.version, served_model)
    if record is None:
        return Standing(False, f"not calibrated: no calibration of {spec.version} with {served_model}", None)
    if record.labelled_sha256 != spec.labelled_sha256():
        return Standing(False, f"not calibrated: the calibration of {record.date} used another labelled set", record)
    if record.kappa < min_kappa:
        return Standing(False, f"not calibrated: kappa {record.kappa:.2f} below {min_kappa:.2f} "
                               f"({record.agreement:.0%} agreement, {record.date})", record)
    return Standing(True, f"calibrated: kappa {record.kappa:.2f} ({record.agreement:.0%} agreement on "
                          f"{record.items} pairs, {record.date})", record)
