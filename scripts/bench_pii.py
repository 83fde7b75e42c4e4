#!/usr/bin/env python3
"""Benchmark the PII scanner against Presidio's recognizers: the same file, one core, MB/s and the ratio.

Scans one file with (a) our scanner (`llmops.pii.scanner.scan_file`, median of --runs) and then
(b) Presidio's predefined recognizers for EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, US_SSN,
IP_ADDRESS and IBAN_CODE, run directly line by line without an NLP engine (no spaCy model), with
the AnalyzerEngine's own de-duplication. Presidio is about a thousand times slower, so it scans only
the first --presidio-lines lines of the same file and its MB/s is computed on the bytes it scanned.
MB is 10^6 bytes of the file as read (uncompressed). The process is pinned to one CPU first; MB/s is on
wall time (the targets), and also printed on the CPU time of the process, which a loaded machine
changes less.
Findings are counted per entity type for both tools (counts only, never the matched text); for a
generated file the corpus labels are counted beside them.

By default the file is generated with the labelled corpus (`llmops.pii.corpus.generate`, JSON lines,
seed 7) into a temporary directory. Presidio's e-mail recognizer looks domains up with tldextract,
which here uses the suffix list bundled with it and never the network.
Targets (PII issue): ours >= 20 MB/s, and ours/Presidio >= 100. Exit 1 if either is missed,
2 if presidio-analyzer is not installed (`.venv/bin/pip install -c constraints.txt -e '.[presidio]'`) --
unless --no-presidio, which measures our scanner alone.

More cases (--case, repeatable; each must reach 20 MB/s too, Presidio is compared on `corpus` only):
- `corpus`: the generated corpus above (the default);
- `dense`: every line carries an entity (corpus density 1, no prose) or near-miss numbers -- UUIDs,
  digests, versions, amounts, epochs, dotted numbers -- the worst case for the candidate validation;
- `long-line`: one line of --long-line-mb MB: the corpus's lines (same --density and --prose) joined by
  spaces, so entities all along it -- to compare with `corpus`, the same kind of bytes in lines;
- `long-lines`: --long-lines-count lines of --long-lines-mb MB each (a 4 MB line is a whole JSON
  document logged on one line), made the same way.

    .venv/bin/python scripts/bench_pii.py [--lines 20000] [--presidio-lines 2000] [--runs 5]
                                          [--file PATH] [--json results.json] [--no-presidio]
                                          [--case corpus|dense|long-line|long-lines ...]
                                          [--long-line-mb 50] [--long-lines-mb 4] [--long-lines-count 5]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import logging
import os
import platform
import random
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

from llmops.pii.corpus import NEGATIVES, generate  # noqa: E402
from llmops.pii.scanner import Summary, scan_file  # noqa: E402

TARGET_MB_S, TARGET_RATIO = 20.0, 100.0
PRESIDIO_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "IBAN_CODE")
INSTALL_HINT = ".venv/bin/pip install -c constraints.txt -e '.[presidio]'"
CASES = ("corpus", "dense", "long-line", "long-lines")


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


def near_miss_line(rng: random.Random) -> str:
    """A log line dense with numbers that look like an entity and are none (every hint fires, no value)."""
    uid = "%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))
    return (f'{{"ts": "2026-11-22T03:{rng.randint(10, 59)}:{rng.randint(10, 59)}.{rng.randint(100, 999)}Z", '
            f'"request_id": "{uid}", "digest": "sha256:{rng.randbytes(32).hex()}", '
            f'"image": "vllm:0.{rng.randint(6, 11)}.{rng.randint(0, 9)}", '
            f'"version": "{".".join(str(rng.randint(0, 20)) for _ in range(5))}", '
            f'"amount": "{rng.randint(1000, 99999)}.{rng.randint(10, 99)} EUR", '
            f'"epoch_ms": {rng.randint(1_700_000_000_000, 1_799_999_999_999)}, '
            f'"build": "{rng.randint(100, 999)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}", '
            f'"note": "{rng.choice(NEGATIVES)(rng)}"}}')


def write_dense(path: Path, lines: int) -> tuple[Counter[str], dict[int, Counter[str]]]:
    """Every other line a corpus line with one or two entities (density 1, no prose), the others near misses."""
    total: Counter[str] = Counter()
    per_line: dict[int, Counter[str]] = {}
    rng = random.Random(7)
    entities = generate(lines // 2 + 1, seed=7, jsonl=True, density=1.0, prose=0)
    with open(path, "w", encoding="utf-8") as out:
        for number in range(1, lines + 1):
            if number % 2:
                text, labels = next(entities)
                per_line[number] = Counter(label.entity_type for label in labels)
                total.update(per_line[number])
            else:
                text = near_miss_line(rng)
            out.write(text + "\n")
    return total, per_line


def write_long_lines(path: Path, count: int, megabytes: float, density: float, prose: int) -> Counter[str]:
    """`count` lines of `megabytes` MB each: the corpus's JSON lines (same seed, density and prose as the
    corpus case) joined by spaces -- the same kind of bytes as the corpus case, without its newlines."""
    total: Counter[str] = Counter()
    size = int(megabytes * 1e6)
    pieces = generate(10**9, seed=7, jsonl=True, density=density, prose=prose)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(count):
            written = 0
            while written < size:
                text, labels = next(pieces)
                total.update(label.entity_type for label in labels)
                written += out.write(text + " ")
            out.write("\n")
    return total


def run_ours(path: Path, prefix_lines: int) -> tuple[float, float, Counter[str], Counter[str], Summary]:
    """One full scan: wall and CPU seconds, counts over the file, counts over its first `prefix_lines` lines."""
    counts: Counter[str] = Counter()
    prefix: Counter[str] = Counter()
    summary = Summary()
    began, cpu = time.perf_counter(), time.process_time()
    for finding in scan_file(path, summary=summary):
        counts[finding.entity_type] += 1
        if getattr(finding, "line", prefix_lines + 1) <= prefix_lines:
            prefix[finding.entity_type] += 1
    return time.perf_counter() - began, time.process_time() - cpu, counts, prefix, summary


def presidio_recognizers() -> tuple[str, list[Any], Any]:
    """Presidio's version, its recognizers for PRESIDIO_ENTITIES, and its de-duplication (exit 2 if missing)."""
    try:
        import tldextract
        from presidio_analyzer import EntityRecognizer
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UsSsnRecognizer,
        )
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


def prepare(case: str, scratch: Path, args: argparse.Namespace) -> tuple[Path, str, Counter[str] | None,
                                                                       dict[int, Counter[str]] | None]:
    """The file a case scans, its description, and its label counts (overall, per line) when generated."""
    if args.file:
        return args.file, str(args.file), None, None
    path = scratch / f"{case}.jsonl"
    if case == "corpus":
        labels, per_line = write_corpus(path, args.lines, args.density, args.prose)
        return path, (f"generated corpus, {args.lines} JSON lines, seed 7, density {args.density}, "
                      f"prose {args.prose}"), labels, per_line
    if case == "dense":
        labels, per_line = write_dense(path, args.lines)
        return path, f"dense log, {args.lines} JSON lines: entities (density 1) and near misses, alternating", \
            labels, per_line
    count, megabytes = (1, args.long_line_mb) if case == "long-line" else (args.long_lines_count, args.long_lines_mb)
    labels = write_long_lines(path, count, megabytes, args.density, args.prose)
    return path, (f"{count} line(s) of {megabytes:g} MB (corpus lines joined by spaces, density {args.density}, "
                  f"prose {args.prose})"), labels, None


def bench_case(case: str, args: argparse.Namespace, presidio: tuple[str, list[Any], Any] | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        path, source, labels, per_line = prepare(case, Path(scratch), args)
        label_prefix = (sum((c for n, c in per_line.items() if n <= args.presidio_lines), Counter())
                        if per_line is not None else None)
        total_bytes = sum(len(raw) for raw in read_lines(path))
        runs = [run_ours(path, args.presidio_lines) for _ in range(args.runs)]
        seconds = statistics.median(s for s, *_ in runs)
        cpu_seconds = statistics.median(c for _, c, *_ in runs)
        _, _, ours, ours_prefix, summary = runs[0]
        compare = presidio is not None and case == "corpus"
        if compare:
            assert presidio is not None
            p_seconds, p_bytes, p_lines, theirs = run_presidio(path, args.presidio_lines, presidio[1], presidio[2])

    ours_mb_s = total_bytes / 1e6 / seconds
    print(f"== case {case}: {source}; {summary.lines} lines, {total_bytes / 1e6:.2f} MB")
    if summary.bytes != total_bytes:
        print(f"note: the scanner counted {summary.bytes} bytes, the file has {total_bytes}")
    result: dict[str, Any] = {"case": case, "file": source, "lines": summary.lines, "tool": "llmops",
                              "mb_per_s": ours_mb_s, "bytes": total_bytes, "seconds": seconds,
                              "cpu_mb_per_s": total_bytes / 1e6 / cpu_seconds, "cpu_seconds": cpu_seconds,
                              "runs": [s for s, *_ in runs], "counts": dict(ours)}
    if compare:
        print(f"Presidio scanned the first {p_lines} lines ({p_bytes / 1e6:.3f} MB); its MB/s is on those bytes")
    print(f"{'tool':<10} {'MB/s':>10} {'MB':>8} {'seconds':>9}  runs")
    print(f"{'ours':<10} {ours_mb_s:>10.2f} {total_bytes / 1e6:>8.3f} {seconds:>9.3f}  "
          + ", ".join(f"{s:.3f}" for s, *_ in runs) + f" s (median of {args.runs})")
    print(f"{'ours, CPU':<10} {total_bytes / 1e6 / cpu_seconds:>10.2f} {total_bytes / 1e6:>8.3f} {cpu_seconds:>9.3f}  "
          "CPU seconds of this process (on a shared machine, less than wall time)")
    if compare:
        p_mb_s = p_bytes / 1e6 / p_seconds
        result["ratio"] = ours_mb_s / p_mb_s
        result["presidio"] = {"mb_per_s": p_mb_s, "bytes": p_bytes, "seconds": p_seconds, "lines": p_lines,
                              "counts": dict(theirs)}
        result["counts_first_lines"] = dict(ours_prefix)
        print(f"{'presidio':<10} {p_mb_s:>10.3f} {p_bytes / 1e6:>8.3f} {p_seconds:>9.3f}  1")
        print(f"ratio ours/presidio: {result['ratio']:.0f}x")
        header = ["entity type"] + (["labels"] if label_prefix is not None else []) + ["ours", "presidio"]
        print(f"findings per entity type (first {p_lines} lines, then the whole file):")
    else:
        theirs, header = Counter(), ["entity type"]
        print("findings per entity type (the whole file):")
    header += ["labels, all", "ours, all"] if labels is not None else ["ours, all"]
    print(f"{header[0]:<16}" + "".join(f"{h:>14}" for h in header[1:]))
    for entity in sorted(set(ours) | set(theirs) | set(labels or ()) | (set(PRESIDIO_ENTITIES) if compare else set())):
        row = (([label_prefix[entity]] if label_prefix is not None else []) + [ours_prefix[entity], theirs[entity]]
               if compare else [])
        row += ([labels[entity]] if labels is not None else []) + [ours[entity]]
        print(f"{entity:<16}" + "".join(f"{v:>14}" for v in row))
    if labels is not None:
        result["labels"] = dict(labels)
    met = ours_mb_s >= TARGET_MB_S and (not compare or result["ratio"] >= TARGET_RATIO)
    print(f"target ours >= {TARGET_MB_S:.0f} MB/s: {'met' if ours_mb_s >= TARGET_MB_S else 'missed'} ({ours_mb_s:.2f})")
    if compare:
        print(f"target ratio >= {TARGET_RATIO:.0f}: {'met' if result['ratio'] >= TARGET_RATIO else 'missed'} "
              f"({result['ratio']:.0f})")
    print()
    result["met"] = met
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, help="scan this file (plain or gzip) instead of a generated corpus")
    parser.add_argument("--case", action="append", choices=CASES,
                        help="what to scan (repeatable; default: corpus); see the module docstring")
    parser.add_argument("--lines", type=int, default=20000, help="lines of the generated corpus (and dense log)")
    parser.add_argument("--presidio-lines", type=int, default=2000, help="Presidio scans only the first N lines")
    parser.add_argument("--no-presidio", action="store_true", help="measure our scanner alone (no ratio target)")
    parser.add_argument("--runs", type=int, default=5, help="runs of our scanner (the median is reported)")
    parser.add_argument("--density", type=float, default=0.05,
                        help="share of generated lines carrying PII (default 0.05; 0.5 is the dense test corpus)")
    parser.add_argument("--prose", type=int, default=3, help="up to N free-text sentences per generated line")
    parser.add_argument("--long-line-mb", type=float, default=50, help="size of the one line of case long-line")
    parser.add_argument("--long-lines-mb", type=float, default=4, help="size of each line of case long-lines")
    parser.add_argument("--long-lines-count", type=int, default=5, help="lines in case long-lines")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args()
    cases = args.case or ["corpus"]
    if args.file and len(cases) > 1:
        parser.error("--file scans one file: give at most one --case")
    cpu = pin_one_core()
    presidio = None if args.no_presidio or "corpus" not in cases else presidio_recognizers()
    version = presidio[0] if presidio else "not used"
    print(f"machine: {cpu_model()}, pinned to CPU {cpu} of {os.cpu_count()}, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; Python {platform.python_version()}; "
          f"presidio-analyzer {version}")
    print()
    results = [bench_case(case, args, presidio) for case in cases]
    met = all(r["met"] for r in results)
    if args.json:
        common = {"python": platform.python_version(), "cpu": cpu_model(), "presidio_version": version}
        args.json.write_text(json.dumps({**common, "targets": {"mb_per_s": TARGET_MB_S, "ratio": TARGET_RATIO,
                                                                "met": met}, "results": results},
                                        indent=2, sort_keys=True) + "\n")
    return 0 if met else 1

if __name__ == "__main__":
    sys.exit(main())
