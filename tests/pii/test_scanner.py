"""The scanner on the labelled corpus: recall and precision per entity type, offsets, streaming."""

from __future__ import annotations

import gzip

import pytest

from llmops.pii.corpus import generate
from llmops.pii.detectors import ENTITY_TYPES, detect, luhn, valid_iban, valid_ssn
from llmops.pii.scanner import Summary, scan_file, scan_lines


@pytest.fixture(scope="module", params=[True, False], ids=["jsonl", "plain"])
def corpus(request):
    lines, labels = [], set()
    for text, found in generate(4000, seed=11, jsonl=request.param):
        lines.append(text + "\n")
        labels.update((label.line, label.start, label.end, label.entity_type) for label in found)
    return lines, labels


def test_every_entity_type_is_in_the_corpus(corpus):
    assert {label[3] for label in corpus[1]} == set(ENTITY_TYPES)


@pytest.mark.parametrize("entity_type", ENTITY_TYPES)
def test_recall_and_precision_per_entity_type(corpus, entity_type):
    lines, labels = corpus
    found = {(f.line, f.start, f.end, f.entity_type) for f in scan_lines("corpus", lines)}
    expected = {label for label in labels if label[3] == entity_type}
    reported = {f for f in found if f[3] == entity_type}
    true_positives = len(expected & reported)
    assert true_positives / len(expected) >= 0.99, f"{entity_type} recall"
    assert true_positives / len(reported) >= 0.98, f"{entity_type} precision"


def test_offsets_are_characters_within_the_line_end_exclusive():
    line = "write to jane.doe@example.com now\n"
    (finding,) = scan_lines("x", [line])
    assert (finding.line, finding.entity_type) == (1, "EMAIL_ADDRESS")
    assert line[finding.start:finding.end] == "jane.doe@example.com"
    assert "jane" not in repr(finding.to_dict())  # findings never carry the value


def test_a_keyed_fingerprint_deduplicates_without_revealing():
    findings = list(scan_lines("x", ["a 123-45-6789 b\n", "c 123-45-6789 d\n"], key=b"k"))
    assert findings[0].fingerprint == findings[1].fingerprint and "6789" not in findings[0].fingerprint


def test_hard_negatives_stay_quiet():
    text = ("order ORD-2026-000123 at 2026-11-22T03:15:01Z, vllm v0.11.2 on 3.11.7, request "
            "8f14e45f-ceea-467f-a0e3-0c3b3e3c1f2b, pip install pkg@1.2.3, git@github, 4111 1111 1111 1112, "
            "000-12-3456, 666-12-3456, 10.0.0.1.5, build 4155550132")
    assert detect(text) == []


def test_validators():
    assert luhn("4111 1111 1111 1111") and not luhn("4111 1111 1111 1112")
    assert valid_ssn("123-45-6789") and not valid_ssn("912-45-6789") and not valid_ssn("123-00-6789")
    assert valid_iban("GB82 WEST 1234 5698 7654 32") and not valid_iban("GB83 WEST 1234 5698 7654 32")


def test_gzip_files_are_streamed(tmp_path):
    path = tmp_path / "log.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for text, _ in generate(300, seed=3):
            handle.write(text + "\n")
    summary = Summary()
    findings = list(scan_file(path, summary=summary))
    assert findings and summary.lines == 300 and summary.files == 1
    assert sum(summary.counts.values()) == len(findings)
