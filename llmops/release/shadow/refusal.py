"""Refusal detection: a small, versioned pattern file (llmops/release/judges/refusal-v1.yaml). An answer refuses
when a pattern matches within its first `prefixChars` characters. Only the verdict leaves this module, never text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

JUDGES_DIR = Path(__file__).resolve().parent.parent / "judges"
DEFAULT_REFUSAL = "refusal-v1"


class SpecError(ValueError):
    """A judge or refusal file that cannot be used: the file and what is wrong (no text from answers)."""


@dataclass(frozen=True)
class RefusalPatterns:
    version: str
    prefix_chars: int
    patterns: tuple[re.Pattern[str], ...]

    def refuses(self, answer: str) -> bool:
        head = answer[:self.prefix_chars]
        return any(pattern.search(head) for pattern in self.patterns)


def spec_path(name: str) -> Path:
    """A versioned file by name (`refusal-v1`, `pairwise-v1`) from the judges directory, or a path to a .yaml."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", name):
        raise SpecError(f"{name!r}: expected a version name such as {DEFAULT_REFUSAL} or a .yaml path")
    return JUDGES_DIR / f"{name}.yaml"


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"{path}: cannot be read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping")
    return data


def load_refusal(name: str = DEFAULT_REFUSAL) -> RefusalPatterns:
    path = spec_path(name)
    data = load_yaml_mapping(path)
    version, prefix, patterns = data.get("version"), data.get("prefixChars", 300), data.get("patterns")
    if not isinstance(version, str) or not version:
        raise SpecError(f"{path}: version: expected a name such as {DEFAULT_REFUSAL}")
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 1 <= prefix <= 100_000:
        raise SpecError(f"{path}: prefixChars: expected a number of characters from 1 to 100000")
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise SpecError(f"{path}: patterns: expected a non-empty list of regular expressions")
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as error:
            raise SpecError(f"{path}: patterns[{index}]: not a regular expression ({error})") from None
    return RefusalPatterns(version, prefix, tuple(compiled))
