#!/usr/bin/env python3
"""Benchmark the PII scanner against Presidio's recognizers: the same file, one core, MB/s and the ratio.

Scans one file with (a) our scanner (`llmops.pii.scanner.scan_file`, median of --runs) and then
(b) Presidio's predefined recognizers for EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, US_SSN,
IP_ADDRESS and IBAN_CODE, run directly line by line without an NLP engine (no spaCy model), with
the AnalyzerEngine's own de-duplication. Presidio is about a thousand times slower, so it scans only
the first --presidio-lines lines of the same file and its MB/s is computed on the bytes it scanned.
MB is 10^6 bytes of the file as read (uncompressed). The process is pinned to one CPU first.
Findings are counted per entity type for both tools (counts only, never the matched text); for a
generated file the corpus labels are counted beside them.

By default the file is generated with the labelled corpus (`llmops.pii.corpus.generate`, JSON lines,
seed 7) into a temporary directory. Presidio's e-mail recognizer looks domains up with tldextract,
which here uses the suffix list bundled with it and never the network.
Targets (PII issue): ours >= 20 MB/s, and ours/Presidio >= 100. Exit 1 if either is missed,
2 if presidio-analyzer is not installed (`.venv/bin/pip install -c constraints.txt -e '.[presidio]'`).

    .venv/bin/python scripts/bench_pii.py [--lines 20000] [--presidio-lines 2000] [--runs 5]
                                          [--file PATH] [--json results.json]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmops.pii.corpus import generate  # noqa: E402
from llmops.pii.scanner import Summary, scan_file  # noqa: E402

TARGET_MB_S, TARGET_RATIO = 20.0, 100.0
PRESIDIO_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "IBAN_CODE")
INSTALL_HINT = ".venv/bin/pip install -c constraints.txt -e '.[presidio]'"


def pin_one_core() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it is gzip (as the scanner reads it)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # type: ignore[return-value]


def read_lines(path: Path, limit: int | None = None) -> Iterator[bytes]:
    with open_bytes(path) as stream:
        for number, raw in enumerate(stream, 1):
            if limit is not None and number > limit:
                return
            yield raw


def write_corpus(path: Path, lines: int, density: float, prose: int) -> tuple[Counter[str], dict[int, Counter[str]]]:
    """Write a generated corpus; return its label counts, overall and per line (for the Presidio prefix)."""
    total: Counter[str] = Counter()
    per_line: dict[int, Counter[str]] = {}
    with open(path, "w", encoding="utf-8") as out:
        for number, (text, labels) in enumerate(generate(lines, seed=7, jsonl=True, density=density, prose=prose), 1):
            out.write(("\n" if number > 1 else "") + text)
            if labels:
                per_line[number] = Counter(label.entity_type for label in labels)
                total.update(per_line[number])
    return total, per_line


def run_ours(path: Path, prefix_lines: int) -> tuple[float, Counter[str], Counter[str], Summary]:
    """One full scan: seconds, counts over the file, counts over its first `prefix_lines` lines."""
    counts: Counter[str] = Counter()
    prefix: Counter[str] = Counter()
    summary = Summary()
    began = time.perf_counter()
    for finding in scan_file(path, summary=summary):
        counts[finding.entity_type] += 1
        if getattr(finding, "line", prefix_lines + 1) <= prefix_lines:
            prefix[finding.entity_type] += 1
    return time.perf_counter() - began, counts, prefix, summary


def presidio_recognizers() -> tuple[str, list[Any], Any]:
    """Presidio's version, its recognizers for PRESIDIO_ENTITIES, and its de-duplication (exit 2 if missing)."""
    try:
        import tldextract
        from presidio_analyzer import EntityRecognizer
        from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                              IpRecognizer, PhoneRecognizer, UsSsnRecognizer)
    except ImportError as error:
        print(f"presidio-analyzer is not installed ({error}); install the extra: {INSTALL_HINT}", file=sys.stderr)
        sys.exit(2)
    # EmailRecognizer calls tldextract.extract, which fetches the public suffix list on first use:
    # use the snapshot bundled with tldextract instead (no network, no disk cache, same result every run).
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    recognizers = [EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), UsSsnRecognizer(),
                   IpRecognizer(), IbanRecognizer()]
    return importlib.metadata.version("presidio-analyzer"), recognizers, EntityRecognizer.remove_duplicates


def run_presidio(path: Path, lines: int, recognizers: list[Any], dedupe: Any) -> tuple[float, int, int, Counter[str]]:
    """Seconds, bytes and lines scanned, and counts, over the first `lines` lines."""
    entities = list(PRESIDIO_ENTITIES)
    warm = "mail jane.doe@example.com or +1 212 555 0100, card 4111 1111 1111 1111, ip 10.0.0.1\n"
    for recognizer in recognizers:  # first-use costs (regex compiles, tldextract's snapshot, phone metadata)
        recognizer.analyze(warm, entities=entities, nlp_artifacts=None)
    counts: Counter[str] = Counter()
    scanned = done = 0
    began = time.perf_counter()
    for raw in read_lines(path, lines):
        text = raw.decode("utf-8", "replace")
        results = []
        for recognizer in recognizers:
            results += recognizer.analyze(text, entities=entities, nlp_artifacts=None)
        for result in dedupe(results):  # as AnalyzerEngine does (its default score threshold is 0)
            counts[result.entity_type] += 1
        scanned += len(raw)
        done += 1
    return time.perf_counter() - began, scanned, done, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, help="scan this file (plain or gzip) instead of a generated corpus")
    parser.add_argument("--lines", type=int, default=20000, help="lines of the generated corpus")
    parser.add_argument("--presidio-lines", type=int, default=2000, help="Presidio scans only the first N lines")
    parser.add_argument("--runs", type=int, default=5, help="runs of our scanner (the median is reported)")
    parser.add_argument("--density", type=float, default=0.05,
                        help="share of generated lines carrying PII (default 0.05; 0.5 is the dense test corpus)")
    parser.add_argument("--prose", type=int, default=3, help="up to N free-text sentences per generated line")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args()
    cpu = pin_one_core()
    version, recognizers, dedupe = presidio_recognizers()

    with tempfile.TemporaryDirectory() as scratch:
        labels: Counter[str] | None = None
        label_prefix: Counter[str] | None = None
        if args.file:
            path = args.file
        else:
            path = Path(scratch) / "corpus.jsonl"
            labels, per_line = write_corpus(path, args.lines, args.density, args.prose)
            label_prefix = sum((c for n, c in per_line.items() if n <= args.presidio_lines), Counter())
        total_bytes = sum(len(raw) for raw in read_lines(path))

        runs = [run_ours(path, args.presidio_lines) for _ in range(args.runs)]
        seconds = statistics.median(s for s, *_ in runs)
        _, ours, ours_prefix, summary = runs[0]
        p_seconds, p_bytes, p_lines, theirs = run_presidio(path, args.presidio_lines, recognizers, dedupe)

    ours_mb_s = total_bytes / 1e6 / seconds
    p_mb_s = p_bytes / 1e6 / p_seconds
    ratio = ours_mb_s / p_mb_s
    print(f"machine: {cpu_model()}, pinned to CPU {cpu} of {os.cpu_count()}; Python {platform.python_version()}; "
          f"presidio-analyzer {version}")
    source = str(path) if args.file else f"generated corpus, {args.lines} JSON lines, seed 7, density {args.density}, prose {args.prose}"
    print(f"file: {source}; {summary.lines} lines, {total_bytes / 1e6:.2f} MB")
    if summary.bytes != total_bytes:
        print(f"note: the scanner counted {summary.bytes} bytes, the file has {total_bytes}")
    print(f"Presidio scanned the first {p_lines} lines ({p_bytes / 1e6:.3f} MB); its MB/s is on those bytes")
    print()
    print(f"{'tool':<10} {'MB/s':>10} {'MB':>8} {'seconds':>9}  runs")
    print(f"{'ours':<10} {ours_mb_s:>10.2f} {total_bytes / 1e6:>8.3f} {seconds:>9.3f}  "
          + ", ".join(f"{s:.3f}" for s, *_ in runs) + f" s (median of {args.runs})")
    print(f"{'presidio':<10} {p_mb_s:>10.3f} {p_bytes / 1e6:>8.3f} {p_seconds:>9.3f}  1")
    print(f"ratio ours/presidio: {ratio:.0f}x")
    print()
    n = p_lines
    header = ["entity type"] + (["labels"] if label_prefix is not None else []) + ["ours", "presidio"]
    header += ["labels, all", "ours, all"] if labels is not None else ["ours, all"]
    print(f"findings per entity type (first {n} lines, then the whole file):")
    print(f"{header[0]:<16}" + "".join(f"{h:>14}" for h in header[1:]))
    for entity in sorted(set(ours) | set(theirs) | set(labels or ()) | set(PRESIDIO_ENTITIES)):
        row = ([label_prefix[entity]] if label_prefix is not None else []) + [ours_prefix[entity], theirs[entity]]
        row += ([labels[entity]] if labels is not None else []) + [ours[entity]]
        print(f"{entity:<16}" + "".join(f"{v:>14}" for v in row))
    print()
    met_speed, met_ratio = ours_mb_s >= TARGET_MB_S, ratio >= TARGET_RATIO
    print(f"target ours >= {TARGET_MB_S:.0f} MB/s: {'met' if met_speed else 'missed'} ({ours_mb_s:.2f})")
    print(f"target ratio >= {TARGET_RATIO:.0f}: {'met' if met_ratio else 'missed'} ({ratio:.0f})")

    if args.json:
        common = {"python": platform.python_version(), "cpu": cpu_model(), "presidio_version": version}
        results = {**common, "file": source, "lines": summary.lines, "ratio": ratio,
                   "targets": {"mb_per_s": TARGET_MB_S, "ratio": TARGET_RATIO, "met": met_speed and met_ratio},
                   "results": [
                       {"tool": "llmops", "mb_per_s": ours_mb_s, "bytes": total_bytes, "seconds": seconds,
                        "lines": summary.lines, "runs": [s for s, *_ in runs], "counts": dict(ours),
                        "counts_first_lines": dict(ours_prefix)},
                       {"tool": "presidio", "mb_per_s": p_mb_s, "bytes": p_bytes, "seconds": p_seconds,
                        "lines": p_lines, "counts": dict(theirs)}]}
        if labels is not None and label_prefix is not None:
            results["labels"] = {"counts": dict(labels), "counts_first_lines": dict(label_prefix)}
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0 if met_speed and met_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
