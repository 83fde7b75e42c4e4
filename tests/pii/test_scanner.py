"""The scanner on the labelled corpus: recall and precision per entity type, offsets, streaming."""

from __future__ import annotations

import gzip
import io

import pytest

from llmops.pii.corpus import generate
from llmops.pii.detectors import ENTITY_TYPES, Engine, card_number, default_engine, detect, luhn, valid_iban, valid_ssn
from llmops.pii.scanner import Summary, blocks, locate, scan_file, scan_lines, scan_stream


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


class Watched(bytes):
    """Bytes that count how many bytes each search, count, slice or concatenation on them goes over --
    the work an offset computation or a block cutter does, observed rather than timed."""

    work = 0

    def _span(self, start: int | None, end: int | None) -> int:
        return len(range(*slice(start, end).indices(len(self))))

    def count(self, sub, start=None, end=None):  # type: ignore[override]
        Watched.work += self._span(start, end)
        return super().count(sub, start, end)

    def find(self, sub, start=None, end=None):  # type: ignore[override]
        Watched.work += self._span(start, end)
        return super().find(sub, start, end)

    def rfind(self, sub, start=None, end=None):  # type: ignore[override]
        Watched.work += self._span(start, end)
        return super().rfind(sub, start, end)

    def __getitem__(self, key):  # type: ignore[override]
        value = super().__getitem__(key)
        if isinstance(key, slice):
            Watched.work += len(value)
        return value

    def __add__(self, other):  # type: ignore[override]
        Watched.work += len(self) + len(other)
        return Watched(bytes(self) + other)


def long_line(megabytes: float, seed: int = 13) -> tuple[str, list[tuple[int, int, str]]]:
    """One line of plain corpus lines joined by ' é ' (so characters and bytes differ), with its labels."""
    labels, size = [], int(megabytes * 1e6)
    pieces, offset = [], 0
    for line, found in generate(10**9, seed=seed, jsonl=False, density=0.8):
        labels += [(offset + label.start, offset + label.end, label.entity_type) for label in found]
        pieces.append(line + " é ")
        offset += len(pieces[-1])
        if offset > size:
            break
    return "".join(pieces), labels


def test_offsets_on_a_multi_megabyte_line_across_many_blocks():
    line, labels = long_line(3)
    data = ("first line, mail a@example.org\n" + line + "\nlast line 415-555-0132\n").encode()
    findings = list(scan_stream("x", io.BytesIO(data), block_size=64 * 1024))  # the line spans ~50 blocks
    assert (findings[0].line, findings[0].entity_type) == (1, "EMAIL_ADDRESS")
    assert (findings[-1].line, findings[-1].start, findings[-1].end) == (3, 10, 22)
    assert [(f.start, f.end, f.entity_type) for f in findings[1:-1]] == labels
    assert {f.line for f in findings[1:-1]} == {2}


def test_offsets_are_computed_without_rescanning_the_line_for_each_finding():
    line, labels = long_line(1)
    data = ("short first line\n" + line + "\n").encode()
    matches = default_engine().find(data)
    assert len(matches) == len(labels) > 2000
    Watched.work = 0
    located = list(locate(Watched(data), matches, first_line=1))
    assert [(found.line, found.start, found.end) for found in located] == [(2, a, b) for a, b, _ in labels]
    # Each byte looked at a bounded number of times: not once per finding before it on the line.
    assert Watched.work <= 3 * len(data), f"{Watched.work / len(data):.0f} passes over the data"


def test_a_line_longer_than_a_block_is_carried_without_re_reading_it():
    line = ("x" * 999 + " ") * 2000 + "\n"  # 2 MB, one line, block size 4 KB: 500 blocks before its newline
    data = (line + "next\n").encode()

    class Chunks:
        def __init__(self) -> None:
            self.at = 0

        def read(self, size: int) -> bytes:
            chunk = Watched(data[self.at:self.at + size])
            self.at += len(chunk)
            return chunk

    Watched.work = 0
    cut = list(blocks(Chunks(), size=4096))
    assert b"".join(cut) == data and all(c.endswith(b"\n") for c in cut)
    assert Watched.work <= 3 * len(data), f"{Watched.work / len(data):.0f} passes over the data"


SAMPLES = {
    "EMAIL_ADDRESS": ["jane.doe@example.com"],
    "PHONE_NUMBER": ["+33 1 58 37 92 98", "+1 415 555 0132", "(415) 555-0132", "415-555-0132", "415.555.0132",
                     "+14155550132", "+44 20 7946 0958", "+91 98014 73691"],
    "CREDIT_CARD": ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "378282246310005"],
    "US_SSN": ["123-45-6789"],
    "IP_ADDRESS": ["10.20.30.40", "2001:db8::1:2:3", "2001:db8:85a3:0:0:8a2e:370:7334", "fe80::1"],
    "IBAN_CODE": ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"],
    "AWS_ACCESS_KEY": ["AKIAIOSFODNN7EXAMPLE"],
    "JWT": ["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
}
RIGHT = [". Thanks", ".", ".\n", ", then", "; then", ": yes", ":", ")", "! ok", "? ok", '"', "'", "]", "}", ">",
         "...", ".\\n"]
LEFT = ["is ", "(", '"', "'", ": ", ":", "[", "<", "=", ",", "\t", "\\n"]


@pytest.mark.parametrize("entity_type,value", [(t, v) for t, values in SAMPLES.items() for v in values])
def test_values_against_ordinary_punctuation_are_found_whole(entity_type, value):
    missed = []
    for left in LEFT:
        for right in RIGHT:
            text = f"call {left}{value}{right} now"
            found = [(m.entity_type, text.encode()[m.start:m.end].decode()) for m in detect(text)]
            if found != [(entity_type, value)]:
                missed.append((left, right, found))
    assert not missed, f"{len(missed)} contexts: {missed[:5]}"


def test_hard_negatives_stay_quiet_against_punctuation():
    text = ("version 1.2.3.4.5. Thanks; build 415.555.0132.7, vllm 0.11.2. host 10.0.0.1.5. "
            "mac 00:1a:2b:3c:4d:5e: ok; at 03:15:01: done. order ORD-2026-000123. std::vector: "
            "4111 1111 1111 1112. 000-12-3456. (666-12-3456) epoch 1763770000123. +3.6! 12.5.2026: ok")
    assert detect(text) == []


def test_the_corpus_puts_every_entity_type_against_punctuation(corpus):
    lines, labels = corpus
    after: dict[str, set[str]] = {}
    before: dict[str, set[str]] = {}
    for line, start, end, entity_type in labels:
        text = lines[line - 1]
        after.setdefault(entity_type, set()).add(text[end:end + 1])
        before.setdefault(entity_type, set()).add(text[start - 1:start])
    for entity_type in ENTITY_TYPES:
        assert {".", ",", ";", ":", ")", "!", "?"} <= after[entity_type], entity_type
        assert {"(", " "} <= before[entity_type], entity_type
