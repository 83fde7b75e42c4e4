"""Names (`PERSON`), optionally: a language model's job, not a pattern's. Presidio's analyzer with a spaCy
model finds them, line by line, after the pattern detectors; where both report the same span the pattern
detector wins. It needs the `presidio` extra and a spaCy model (a package such as en_core_web_lg, or a
model directory), and it is slow -- about a thousand times slower than the pattern detectors.
"""

from __future__ import annotations

import bisect
from typing import Any

from llmops.pii.detectors import Match

ENTITY_TYPE, DETECTOR = "PERSON", "presidio-spacy"


class NamesUnavailable(RuntimeError):
    """Presidio or the spaCy model is missing; the message says what to install."""


class NameDetector:
    def __init__(self, model: str, language: str = "en", score_threshold: float = 0.5) -> None:
        try:
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider
        except ImportError:
            raise NamesUnavailable("names need the presidio extra: pip install -c constraints.txt -e '.[presidio]', "
                                   "and a spaCy model (e.g. python -m spacy download en_core_web_lg)") from None
        try:
            provider = NlpEngineProvider(nlp_configuration={
                "nlp_engine_name": "spacy", "models": [{"lang_code": language, "model_name": model}]})
            self.analyzer: Any = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=[language])
        except (OSError, ValueError) as error:
            raise NamesUnavailable(f"spaCy model {model!r} could not be loaded ({error}); install it "
                                   "(python -m spacy download MODEL) or give a model directory") from None
        self.language, self.score_threshold = language, score_threshold

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of names in one line of text."""
        found = self.analyzer.analyze(text=text, language=self.language, entities=[ENTITY_TYPE],
                                      score_threshold=self.score_threshold)
        return sorted((r.start, r.end) for r in found)

    def add_to(self, data: bytes, matches: list[Match]) -> list[Match]:
        """`matches` (byte offsets in a block of whole lines) plus the names in it that overlap none of them."""
        starts = [m.start for m in matches]
        ends = [m.end for m in matches]
        added: list[Match] = []
        offset = 0
        for raw in data.splitlines(keepends=True):
            text = raw.decode("utf-8", "replace")
            for start, end in self.spans(text):
                a = offset + len(text[:start].encode("utf-8"))
                b = a + len(text[start:end].encode("utf-8"))
                at = bisect.bisect_right(starts, a)
                if (at and ends[at - 1] > a) or (at < len(starts) and starts[at] < b):
                    continue
                added.append(Match(a, b, ENTITY_TYPE, DETECTOR))
            offset += len(raw)
        return sorted([*matches, *added], key=lambda m: m.start) if added else matches
