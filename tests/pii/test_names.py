"""Names (PERSON) through Presidio and a spaCy model: optional. The real-model test needs the `presidio`
extra (README, "PII in logs"); without it, it is skipped and says why. The refusal test always runs."""

from __future__ import annotations

import importlib.util
import json

import pytest

from llmops.pii.scanner import scan_lines
from tests.pii.test_cli import llmops

HAS_PRESIDIO = importlib.util.find_spec("presidio_analyzer") is not None


def test_names_without_presidio_or_its_model_is_refused_naming_the_option(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("hello\n")
    result = llmops("pii", "scan", str(path), "--names", str(tmp_path / "no-such-model"))
    assert result.returncode == 2 and f"--names {tmp_path / 'no-such-model'}" in result.stderr
    assert ("presidio extra" in result.stderr) != HAS_PRESIDIO or "could not be loaded" in result.stderr


@pytest.mark.skipif(not HAS_PRESIDIO, reason="needs the optional presidio extra: pip install -c constraints.txt -e '.[presidio]'")
def test_names_come_from_a_real_spacy_pipeline_after_the_patterns(tmp_path):
    import spacy

    from llmops.pii.names import NameDetector

    nlp = spacy.blank("en")  # a real pipeline whose entity ruler knows two names
    nlp.add_pipe("entity_ruler").add_patterns([
        {"label": "PERSON", "pattern": [{"LOWER": "jane"}, {"LOWER": "doe"}]},
        {"label": "PERSON", "pattern": [{"LOWER": "amélie"}, {"LOWER": "poulain"}]}])
    nlp.to_disk(tmp_path / "model")
    names = NameDetector(str(tmp_path / "model"))
    lines = ["café: ask Amélie Poulain or jane.doe@example.com\n", "Jane Doe called 415-555-0132\n"]
    found = [(f.line, lines[f.line - 1][f.start:f.end], f.entity_type, f.detector)
             for f in scan_lines("x", lines, names=names)]
    assert found == [(1, "Amélie Poulain", "PERSON", "presidio-spacy"),
                     (1, "jane.doe@example.com", "EMAIL_ADDRESS", "email"),
                     (2, "Jane Doe", "PERSON", "presidio-spacy"), (2, "415-555-0132", "PHONE_NUMBER", "phone")]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps({"prompt": "Jane Doe here"}) + "\n")
    result = llmops("pii", "redact", str(source), str(target), "--names", str(tmp_path / "model"))
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text()) == {"prompt": "<PERSON> here"}
