"""The scanner on the labelled corpus: recall and precision per entity type, offsets, streaming."""

from __future__ import annotations

import gzip

import pytest

import io

from llmops.pii.corpus import generate
from llmops.pii.detectors import ENTITY_TYPES, Engine, card_number, detect, luhn, valid_iban, valid_ssn
from llmops.pii.scanner import Summary, blocks, scan_file, scan_lines, scan_stream


@pytest.fixture(scope="module", params=[True, False], ids=["jsonl", "plain"])
def corpus(request):
    lines, labels = [], set()
    for text, found in generate(4000, seed=11, jsonl=request.param, prose=2):
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
            "000-12-3456, 666-12-3456, 10.0.0.1.5, build 4155550132, epoch ms 1763770000123, score +3.6, "
            "std::vector, mac 00:1a:2b:3c:4d:5e, npm i @scope/pkg@2.0.1")
    assert detect(text) == []


def test_validators():
    assert luhn("4111 1111 1111 1111") and not luhn("4111 1111 1111 1112")
    assert luhn("1763770000125") and not card_number("1763770000125")  # Luhn-valid, but no scheme issues it
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


def test_hyperscan_and_the_pure_python_fallback_agree(corpus):
    lines, _ = corpus
    data = "".join(lines).encode()
    fast, slow = Engine(), Engine(use_hyperscan=False)
    assert fast.engine == "hyperscan" and slow.engine == "re"  # hyperscan is a pinned dependency
    assert fast.find(data) == slow.find(data)


def test_a_value_after_an_escaped_newline_in_a_json_string_starts_after_the_escape():
    line = r'{"prompt": "hi\njane@example.com\t4111-1111-1111-1111\n(415) 555-0132"}' + "\n"
    found = [(f.entity_type, line[f.start:f.end]) for f in scan_lines("x", [line])]
    assert found == [("EMAIL_ADDRESS", "jane@example.com"), ("CREDIT_CARD", "4111-1111-1111-1111"),
                     ("PHONE_NUMBER", "(415) 555-0132")]


def test_offsets_count_characters_not_bytes_on_non_ascii_lines():
    line = "écrivez à jane@example.com ou appelez le +33 1 15 98 05 95 — merci\n"
    found = {f.entity_type: line[f.start:f.end] for f in scan_lines("x", [line])}
    assert found == {"EMAIL_ADDRESS": "jane@example.com", "PHONE_NUMBER": "+33 1 15 98 05 95"}


def test_blocks_never_cut_a_line_so_values_at_block_edges_are_found():
    lines = [f"line {i} mail user{i}@example.com end\n" for i in range(2000)]
    data = "".join(lines).encode()
    chunks = list(blocks(io.BytesIO(data), size=97))  # far smaller than a line: lines are carried over
    assert b"".join(chunks) == data and all(c.endswith(b"\n") for c in chunks)
    findings = list(scan_stream("x", io.BytesIO(data)))
    assert [f.line for f in findings] == list(range(1, 2001))


def test_summary_counts_lines_bytes_and_affected_files(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("nothing here\nmail a.b@example.org\nlast line without newline")
    summary = Summary()
    findings = list(scan_file(path, summary=summary))
    assert len(findings) == 1 and findings[0].line == 2
    assert (summary.lines, summary.bytes, summary.files) == (3, path.stat().st_size, 1)
    assert summary.affected == {str(path)}
