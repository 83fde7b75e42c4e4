#!/usr/bin/env python3
"""Replay request streams through the drift monitor in virtual time -- detection delay, false alarms, cost -- side by
side with Evidently's default embedding-drift method on the same windows (the drift-detection issue's "Measured").

Traffic is `llmops.drift.traffic`: Poisson arrivals, prompts of topics (each a vocabulary), log-normal token counts.
The reference is built once (`build_reference`) from 20,000 records of the reference mix (its centroid and clusters
from the first 5,000 prompts, embedded with `local:hashing-256`). Each scenario feeds `ModelWindow.add(ts, record,
vector)` directly with the prompts' embeddings computed beforehand (no HTTP, no sleeps) and judges the window once per
whole second, as the monitor does: the judgement at second T covers the complete seconds before T.

The alert's condition: the stack's ServiceMonitor scrapes the monitor every 5 s and the drift rule group evaluates
every 5 s (driftMonitor.scrapeIntervalSeconds / ruleIntervalSeconds defaults); `Drift` is
`max by (model, signal) (llmops_drift_status) >= 2` with no `for:`. So the time from the shift to the condition being
true = (the first judgement at status 2) + (wait for the next scrape, random phase per trial) + (wait for the next rule
evaluation after that scrape, random phase per trial) - (the shift).

Scenarios
1. topic shift: 10 req/s; at a random time (120-180 s into the stream) a new topic ("health" or "gaming", drawn per
   trial) takes 30 % of traffic. Delay of the alert's condition, median and p90 over --trials seeds, in seconds and in
   samples (arrived after the shift until the judgement at status 2). Target: median <= 18 s. The first judgement
   of each signal at drift is reported too (a new topic also moves prompt_tokens: its prompts are longer).
2. no shift for --hours simulated hours (24): the reference mix at traffic.daily_rate(10, t) (2 to 18 req/s, lowest
   at 04:00), every prompt embedded (no pool). Drift alarms (rising edges of status 2), watch episodes (rising edges of
   status >= 1) and DriftWatch (status 1 held 15 min). Target: 0 drift alarms. Run in segments on --workers
   processes, each segment warmed up for 6 minutes (more than maxWindowSeconds) before its hours are counted.
   The raw centroid cosine (Signal.raw: no small-window bias correction) is judged against the same 0.85 / 0.90
   limits with the same consecutive-window rule, to show what the correction is for.
3. numeric shift: prompt tokens x1.5 on all traffic at a random time: delay until prompt_tokens' PSI status is 2,
   same accounting as 1.
4. monitor cost, pinned to one core: samples/s through `Monitor.add` (parsed records with their vectors) and through
   `Monitor.ingest` (JSON lines; the monitor's embedder is a stub returning precomputed vectors by prompt, so JSON
   parsing is measured, embedding is not). Target >= 5,000/s. Memory: a Monitor fed 10 req/s (records and vectors
   drawn from a pool of 20,000) for --memory-hours, judged every second: window buckets held and tracemalloc's
   current and peak after 1 h and at the end.
5. Evidently (the drift-bench extra): its default embedding drift method is what
   `evidently.legacy.metrics.data_drift.embeddings_drift.EmbeddingsDriftMetric.calculate` picks when none is given,
   `embedding_drift_methods.model(bootstrap=<reference rows < 1000>)` -> `ModelDriftMethod(threshold=0.55,
   quantile_probability=0.95, pca_components=None)`: an SGDClassifier (log loss) trained on half of reference+current
   to tell them apart, drift when the ROC AUC on the other half > 0.55 (with bootstrap: > the 95th percentile of
   random AUCs). Here its reference is the 5,000 embeddings the reference centroid came from (so no bootstrap) and its
   current data the samples our window judged at that second. The method object is called directly, as
   EmbeddingsDriftMetric.calculate calls it; the Report around it adds only a t-SNE picture (about 40 s a call):
   each run (unless --no-evidently-check) puts one window through the Report and checks the score is the same.
   Scenario 1: every second from 10 s before the shift until it says drift (with and without our consecutive rule).
   Scenario 2: too slow for every second (~0.1 s a call): blocks of consecutiveWindows + 1 consecutive seconds every
   --evidently-every seconds; the per-evaluation alarm rate and unbiased estimates of the alarms (rising edges) per
   simulated run, without and with the consecutive rule, extrapolated to one judgement per second.

How often PSI passes its limits on unchanged traffic: the PSI of independent windows of the smallest size a PSI is
judged on (stats.PSI_MIN_SAMPLES) drawn from the reference's proportions, against the noise floor (stats.psi_floor,
meant as the 1 - 1e-6 point) and other limits (4 M draws).
Policy variants: when the policy misses a target, scenarios 1-3 run again under each of AUTO_VARIANTS (both meet
the delay targets on 30 trials; the library is not changed), or under --variant policies; their scenario 2 replays the
same traffic (same seeds), without Evidently.

    .venv/bin/python scripts/bench_drift.py [--trials 30] [--hours 24] [--skip-evidently] [--evidently-every 300]
                                            [--memory-hours 6] [--workers 2] [--seed 1] [--json out.json]
                                            [--consecutive N] [--window-seconds N] [--min-samples N]
                                            [--variant consecutiveWindows=2 ...] [--no-variants]
                                            [--no-evidently-check]

Evidently is optional: `.venv/bin/pip install -c constraints.txt -e '.[drift-bench]'` (it installs beside the pinned
dependencies without changing any). Without it, the Evidently part is reported as not run (exit 2 unless
--skip-evidently). Exit 1 when a target is missed.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core per process
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import bisect  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config.drift import Drift, DriftMonitor  # noqa: E402
from llmops.drift import stats, traffic  # noqa: E402
from llmops.drift.monitor import Batch, Monitor  # noqa: E402
from llmops.drift.reference import Reference, ReferenceStore, build_reference  # noqa: E402
from llmops.drift.settings import MonitorSettings  # noqa: E402
from llmops.drift.window import DRIFT, EMBEDDING, STABLE, WATCH, Judgement, ModelWindow  # noqa: E402
from llmops.retrieval.embed import LocalEmbedder  # noqa: E402

MODEL = "chat"
EMBEDDING_MODEL = "local:hashing-256"
T0 = 1_789_948_800.0  # a midnight (UTC): daily_rate's clock starts here
RATE = 10.0
SHIFT_SHARE = 0.3
NEW_TOPICS = ("health", "gaming")
SHIFT_FROM, SHIFT_TO = 120.0, 180.0  # the shift's time after the stream starts (uniform)
HORIZON = 120.0  # seconds after the shift before a trial counts as not detected
EVIDENTLY_BEFORE = 10  # Evidently judges this many seconds before the shift too (its false alarms, its streak)
REFERENCE_RECORDS = 20_000
WARM_UP = 360  # seconds of traffic before a quiet segment's counted hours (> maxWindowSeconds + consecutive)
SEGMENT_HOURS = 2.0
CHUNK_SECONDS = 600
DRIFT_WATCH_FOR = 900  # DriftWatch's `for:` (components/manifests/alert_rules.py)
TARGET_DELAY = 18.0
TARGET_INGEST = 5_000.0
POOL = 20_000  # records (with vectors) the cost and memory runs draw from
INGEST_BATCH = 100  # samples per Monitor.add / Monitor.ingest call (an HTTP body of the shipper's)
_MONITOR_DEFAULTS = DriftMonitor.model_fields


# --- the policy ---------------------------------------------------------------------------------------------------

PSI_KEYS = ("psiWatch", "psiDrift")  # the benchmark's shorthand: features[].watch / .drift of both features


def policy(overrides: dict[str, float] | None = None) -> Drift:
    """The default policy (prompt_tokens and completion_tokens by PSI, the prompt's embedding), with overrides by
    their stack-file keys (windowSeconds, minSamples, consecutiveWindows, maxWindowSeconds), and psiWatch / psiDrift
    for both features' limits."""
    overrides = dict(overrides or {})
    psi = {key: overrides.pop(key) for key in PSI_KEYS if key in overrides}
    data: dict[str, Any] = {"embedding": {"index": "docs"}, **{k: int(v) for k, v in overrides.items()}}
    if psi:
        data["features"] = [{"field": name, "watch": float(psi.get("psiWatch", 0.1)),
                             "drift": float(psi.get("psiDrift", 0.2))} for name in ("prompt_tokens", "completion_tokens")]
    return Drift.model_validate(data)


def policy_keys(drift: Drift) -> dict[str, Any]:
    return {"windowSeconds": drift.window_seconds, "minSamples": drift.min_samples,
            "consecutiveWindows": drift.consecutive_windows, "maxWindowSeconds": drift.max_window_seconds,
            "psi": {f.field: {"watch": f.watch, "drift": f.drift} for f in drift.features}}


SCRAPE_SECONDS = float(_MONITOR_DEFAULTS["scrape_interval_seconds"].default)
RULE_SECONDS = float(_MONITOR_DEFAULTS["rule_interval_seconds"].default)


def alert_time(status_at: float, scrape_phase: float, rule_phase: float, scrape: float = SCRAPE_SECONDS,
               rule: float = RULE_SECONDS) -> float:
    """When the alert's condition is first true: the next scrape at or after the judgement (scrapes at scrape_phase
    + k * scrape), then the next rule evaluation at or after that scrape (rule_phase + k * rule)."""
    scraped = status_at + (scrape_phase - status_at) % scrape
    return scraped + (rule_phase - scraped) % rule


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (inf stays inf: a trial that never detected)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- shared state (built once in the parent, inherited by forked workers) -------------------------------------------

@dataclass
class World:
    reference: Reference
    evidently_reference: np.ndarray  # the embeddings the reference centroid was built from
    evidently: bool


_WORLD: World | None = None
_EMBEDDER: LocalEmbedder | None = None
_EVIDENTLY: Any = None


def world() -> World:
    assert _WORLD is not None
    return _WORLD


def embed(texts: Sequence[str]) -> np.ndarray:
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = LocalEmbedder(EMBEDDING_MODEL)
    return np.asarray(_EMBEDDER.embed(texts), dtype=np.float64)


def build_world(seed: int, evidently: bool) -> World:
    rng = random.Random(seed * 1_000_003 + 17)
    records = traffic.log_lines(rng, REFERENCE_RECORDS, start=T0 - 86400, rate=RATE, model=MODEL)
    cache: dict[str, list[float]] = {}

    class Caching:
        model, dimension = EMBEDDING_MODEL, 256

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            missing = [t for t in dict.fromkeys(texts) if t not in cache]
            cache.update(zip(missing, LocalEmbedder(EMBEDDING_MODEL).embed(missing), strict=True))
            return [cache[t] for t in texts]

    reference = build_reference(records, model=MODEL, drift=policy(), embedder=Caching(), release="r1",
                                reason="initial", seed=seed)
    assert reference.embedding is not None
    # build_reference embeds the first MAX_EMBEDDED prompts of its sample (all records: fewer than MAX_RECORDS)
    embedded = np.asarray([cache[r["prompt"]] for r in records[:reference.embedding.count]], dtype=np.float64)
    return World(reference=reference, evidently_reference=embedded, evidently=evidently)


# --- Evidently ----------------------------------------------------------------------------------------------------

def evidently_version() -> str | None:
    try:
        return importlib.metadata.version("evidently")
    except importlib.metadata.PackageNotFoundError:
        return None


def evidently_method() -> Any:
    """What EmbeddingsDriftMetric.calculate uses when given no method: model(bootstrap=reference rows < 1000)."""
    global _EVIDENTLY
    if _EVIDENTLY is None:
        # imported by name: Evidently is an optional extra, without type information
        methods = importlib.import_module("evidently.legacy.metrics.data_drift.embedding_drift_methods")
        _EVIDENTLY = methods.model(bootstrap=world().evidently_reference.shape[0] < 1000)
    return _EVIDENTLY


_COLUMNS = [f"e{i}" for i in range(256)]


def evidently_judge(current: np.ndarray) -> tuple[float, bool]:
    """Evidently's own method on one window: (ROC AUC, drift). It adds a target column to the frames it is given,
    so each call gets frames of its own (over the same arrays)."""
    pd = importlib.import_module("pandas")
    reference = pd.DataFrame(world().evidently_reference, columns=_COLUMNS)
    score, drifted, _ = evidently_method()(pd.DataFrame(current, columns=_COLUMNS), reference)
    return float(score), bool(drifted)


def evidently_check(seed: int) -> dict[str, Any]:
    """One window of unshifted traffic through Evidently's Report (EmbeddingsDriftMetric, no method given) and through
    the method called directly: the same score, or the benchmark is not measuring Evidently's default."""
    pd = importlib.import_module("pandas")
    EmbeddingsDriftMetric = importlib.import_module("evidently.legacy.metrics.data_drift.embeddings_drift"
                                                    ).EmbeddingsDriftMetric
    ColumnMapping = importlib.import_module("evidently.legacy.pipeline.column_mapping").ColumnMapping
    Report = importlib.import_module("evidently.legacy.report").Report

    rng = random.Random(seed)
    current = embed([traffic.record(rng, traffic.Shape(), ts=T0)["prompt"] for _ in range(100)])
    started = time.perf_counter()
    report = Report(metrics=[EmbeddingsDriftMetric("prompt")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.run(reference_data=pd.DataFrame(world().evidently_reference, columns=_COLUMNS),
                   current_data=pd.DataFrame(current, columns=_COLUMNS),
                   column_mapping=ColumnMapping(embeddings={"prompt": _COLUMNS}))
    result = report.as_dict()["metrics"][0]["result"]
    seconds = time.perf_counter() - started
    direct = evidently_judge(current)
    return {"report_score": result["drift_score"], "report_drift": result["drift_detected"],
            "method": result["method_name"], "direct_score": direct[0], "direct_drift": direct[1],
            "same": abs(result["drift_score"] - direct[0]) < 1e-12 and result["drift_detected"] == direct[1],
            "report_seconds": seconds}


# --- scenarios 1 and 3: a shift at a random time -------------------------------------------------------------------

def window_vectors(by_second: dict[int, np.ndarray], judgement: Judgement) -> np.ndarray:
    """The vectors of the samples a judgement covered: its seconds, ending at the last complete one."""
    end = int(judgement.at) - 1
    parts = [by_second[s] for s in range(end - judgement.seconds + 1, end + 1) if s in by_second]
    return np.concatenate(parts) if parts else np.empty((0, 256))


def run_shift(kind: str, seed: int, overrides: dict[str, float], with_evidently: bool) -> dict[str, Any]:
    drift = policy(overrides)
    rng = random.Random(seed)
    phases = random.Random(seed ^ 0x5EED)
    scrape_phase, rule_phase = phases.uniform(0, SCRAPE_SECONDS), phases.uniform(0, RULE_SECONDS)
    shift = T0 + rng.uniform(SHIFT_FROM, SHIFT_TO)
    end = shift + HORIZON
    if kind == "topic":
        new_topic = rng.choice(NEW_TOPICS)
        topic: str | None = new_topic
        shifted, share, target = traffic.Shape(topics=(new_topic,)), SHIFT_SHARE, None
    else:
        topic, shifted, share, target = None, traffic.Shape(prompt_scale=1.5), 1.0, "prompt_tokens"
    base = traffic.Shape()
    records = [traffic.record(rng, shifted if ts >= shift and rng.random() < share else base, ts=ts, model=MODEL)
               for ts in traffic.arrivals(rng, RATE, T0, end)]
    times = [r["ts"] for r in records]
    vectors = embed([r["prompt"] for r in records])
    window = ModelWindow(drift, world().reference)
    by_second: dict[int, np.ndarray] = {}
    first: dict[str, float] = {}  # "status" and each signal: the first judgement at drift after the shift
    false_before = 0
    evidently = with_evidently and kind == "topic"
    ev: dict[str, Any] = {"before": 0, "before_alarms": 0, "after": 0, "after_alarms": 0, "first": None,
                          "first_consecutive": None, "scores_after": []}
    streak = 0
    first_tick = math.floor(shift) + 1  # the first judgement that covers samples after the shift
    index = 0
    for second in range(int(T0), math.ceil(end)):
        start = index
        while index < len(records) and times[index] < second + 1:
            window.add(times[index], records[index], vectors[index])
            index += 1
        if index > start:
            by_second[second] = vectors[start:index]
        now = float(second + 1)
        judgement = window.judge(now)
        if now < first_tick:
            false_before += judgement.status >= DRIFT
        else:
            if judgement.status >= DRIFT:
                first.setdefault("status", now)
            for signal in judgement.signals:
                if signal.status >= DRIFT:
                    first.setdefault(signal.name, now)
        if evidently and now >= first_tick - EVIDENTLY_BEFORE and (ev["first"] is None or ev["first_consecutive"] is None):
            if not judgement.judged:
                streak = 0
            else:
                score, drifted = evidently_judge(window_vectors(by_second, judgement))
                streak = streak + 1 if drifted else 0
                if now < first_tick:
                    ev["before"] += 1
                    ev["before_alarms"] += drifted
                else:
                    ev["after"] += 1
                    ev["after_alarms"] += drifted
                    ev["scores_after"].append(round(score, 4))
                    if drifted and ev["first"] is None:
                        ev["first"] = now
                    if streak >= drift.consecutive_windows and ev["first_consecutive"] is None:
                        ev["first_consecutive"] = now
        goal = target or "status"
        if goal in first and "status" in first and (not evidently or (ev["first"] is not None
                                                                       and ev["first_consecutive"] is not None)):
            break

    def timing(at: float | None) -> dict[str, float]:
        if at is None:
            return {"status_delay": math.inf, "alert_delay": math.inf, "samples": math.inf}
        return {"status_delay": at - shift, "alert_delay": alert_time(at, scrape_phase, rule_phase) - shift,
                "samples": float(bisect.bisect_left(times, at) - bisect.bisect_left(times, shift))}

    result: dict[str, Any] = {
        "seed": seed, "topic": topic, "shift_after_start": shift - T0, "scrape_phase": scrape_phase,
        "rule_phase": rule_phase, "false_before_shift": false_before,
        "ours": timing(first.get(target or "status")),
        "signals": {name: at - shift for name, at in first.items() if name != "status"},
    }
    if evidently:
        result["evidently"] = {"no_rule": timing(ev["first"]), "consecutive": timing(ev["first_consecutive"]),
                               **{k: ev[k] for k in ("before", "before_alarms", "after", "after_alarms")},
                               "scores_after": ev["scores_after"][:10]}
    return result


def summarise_delays(rows: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"trials": len(rows), "detected": sum(math.isfinite(r["alert_delay"]) for r in rows)}
    for key in ("alert_delay", "status_delay", "samples"):
        values = [r[key] for r in rows]
        out[key] = {"median": quantile(values, 0.5), "p90": quantile(values, 0.9), "max": max(values, default=math.nan)}
    return out


def summarise_shift(kind: str, trials: list[dict[str, Any]], drift: Drift) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": policy_keys(drift), "ours": summarise_delays([t["ours"] for t in trials]),
                           "false_before_shift": sum(t["false_before_shift"] for t in trials)}
    signals = sorted({name for t in trials for name in t["signals"]})
    out["signal_status_delay"] = {
        name: {"reached_drift": sum(name in t["signals"] for t in trials),
               "median": quantile([t["signals"].get(name, math.inf) for t in trials], 0.5),
               "p90": quantile([t["signals"].get(name, math.inf) for t in trials], 0.9)} for name in signals}
    out["first_signal"] = {name: sum(1 for t in trials if t["signals"] and min(t["signals"], key=lambda n: (
        t["signals"][n], n)) == name) for name in signals}
    if kind == "topic":
        out["by_topic"] = {topic: summarise_delays([t["ours"] for t in trials if t["topic"] == topic])
                           for topic in NEW_TOPICS}
    if trials and "evidently" in trials[0]:
        evs = [t["evidently"] for t in trials]
        before, after = sum(e["before"] for e in evs), sum(e["after"] for e in evs)
        out["evidently"] = {
            "no_rule": summarise_delays([e["no_rule"] for e in evs]),
            "consecutive": summarise_delays([e["consecutive"] for e in evs]),
            "before_shift_evaluations": before,
            "before_shift_alarms": sum(e["before_alarms"] for e in evs),
            "before_shift_alarm_rate": sum(e["before_alarms"] for e in evs) / before if before else math.nan,
            "after_shift_evaluations": after,
            "after_shift_alarm_rate": sum(e["after_alarms"] for e in evs) / after if after else math.nan,
        }
    out["trials"] = trials
    return out


# --- scenario 2: no shift, daily cycle ------------------------------------------------------------------------------

class Streak:
    """The monitor's consecutive-window rule, for a level computed outside the window (raw cosine, Evidently)."""

    def __init__(self, needed: int) -> None:
        self.needed, self.watch, self.drift = needed, 0, 0

    def push(self, level: int | None) -> int:
        if level is None:  # a window not judged resets the streaks, as ModelWindow does
            self.watch = self.drift = 0
            return STABLE
        self.watch = self.watch + 1 if level >= WATCH else 0
        self.drift = self.drift + 1 if level >= DRIFT else 0
        return DRIFT if self.drift >= self.needed else WATCH if self.watch >= self.needed else STABLE


class Episodes:
    """Rising edges of a status series: drift (>= 2) and watch (>= 1) episodes, and status 1 held DriftWatch's
    `for:` (DriftWatch firing)."""

    def __init__(self) -> None:
        self.previous, self.drift, self.watch, self.watch_held, self.run, self.seconds_at_drift = 0, 0, 0, 0, 0, 0

    def push(self, status: int, counted: bool) -> None:
        if counted:
            self.drift += status >= DRIFT > self.previous
            self.watch += status >= WATCH > self.previous
            self.seconds_at_drift += status >= DRIFT
        self.run = self.run + 1 if status == WATCH else 0
        if counted and self.run == DRIFT_WATCH_FOR:
            self.watch_held += 1
        self.previous = status

    def figures(self) -> dict[str, int]:
        return {"drift_alarms": self.drift, "watch_episodes": self.watch, "drift_watch_fired": self.watch_held,
                "seconds_at_drift": self.seconds_at_drift}


def run_quiet(segment: int, start: float, end: float, seed: int, overrides: dict[str, float], with_evidently: bool,
              evidently_every: int) -> dict[str, Any]:
    drift = policy(overrides)
    limits = drift.embedding
    assert limits is not None
    rng = random.Random(seed)
    window = ModelWindow(drift, world().reference)
    names = [f.field for f in drift.features] + [EMBEDDING]
    status = {name: Episodes() for name in ["status", *names]}
    raw_streak, raw_status = Streak(drift.consecutive_windows), Episodes()
    levels = {name: [0, 0, 0] for name in names}  # single windows at stable / watch / drift
    raw_levels = [0, 0, 0]
    low = {"similarity": math.inf, "raw": math.inf}
    high_psi = {f.field: 0.0 for f in drift.features}
    judged = unjudged = samples = 0
    smallest_window, widest_window = math.inf, 0
    block_length = drift.consecutive_windows + 1
    blocks: list[list[bool]] = []
    block: list[bool] | None = None
    scores: list[float] = []
    by_second: dict[int, np.ndarray] = {}
    embed_seconds = 0.0
    began = int(start) - WARM_UP
    for chunk in range(began, math.ceil(end), CHUNK_SECONDS):
        chunk_end = min(chunk + CHUNK_SECONDS, math.ceil(end))
        records = [traffic.record(rng, traffic.Shape(), ts=ts, model=MODEL) for second in range(chunk, chunk_end)
                   for ts in traffic.arrivals(rng, traffic.daily_rate(RATE, second + 0.5 - T0), second, second + 1)]
        clock = time.perf_counter()
        vectors = embed([r["prompt"] for r in records])
        embed_seconds += time.perf_counter() - clock
        index = 0
        for second in range(chunk, chunk_end):
            first = index
            while index < len(records) and records[index]["ts"] < second + 1:
                window.add(records[index]["ts"], records[index], vectors[index])
                index += 1
            if with_evidently:
                if index > first:
                    by_second[second] = vectors[first:index]
                by_second.pop(second - drift.max_window_seconds - 2, None)
            now = float(second + 1)
            counted = now > start
            samples += (index - first) if counted else 0
            judgement = window.judge(now)
            status["status"].push(judgement.status, counted)
            raw_level: int | None = None
            for signal in judgement.signals:
                status[signal.name].push(signal.status, counted)
                if counted and judgement.judged and not math.isnan(signal.value):
                    levels[signal.name][signal.level] += 1
                    if signal.name == EMBEDDING:
                        low["similarity"] = min(low["similarity"], signal.value)
                    else:
                        high_psi[signal.name] = max(high_psi[signal.name], signal.value)
                if signal.name == EMBEDDING and signal.raw is not None and not math.isnan(signal.raw):
                    raw_level = DRIFT if signal.raw < limits.drift else WATCH if signal.raw < limits.watch else STABLE
                    if counted:
                        raw_levels[raw_level] += 1
                        low["raw"] = min(low["raw"], signal.raw)
            raw_status.push(raw_streak.push(raw_level if judgement.judged else None), counted)
            if counted:
                judged += judgement.judged
                unjudged += not judgement.judged
                if judgement.judged:
                    smallest_window = min(smallest_window, judgement.samples)
                    widest_window = max(widest_window, judgement.seconds)
            if with_evidently and counted:
                if block is None and int(now - start) % evidently_every == 0:
                    block = []
                if block is not None:
                    if not judgement.judged:
                        block = None  # skipped: Evidently judges only what our window judged
                    else:
                        score, drifted = evidently_judge(window_vectors(by_second, judgement))
                        scores.append(score)
                        block.append(drifted)
                        if len(block) == block_length:
                            blocks.append(block)
                            block = None
    return {"segment": segment, "seconds": end - start, "samples": samples, "judged": judged, "unjudged": unjudged,
            "smallest_window_samples": smallest_window, "widest_window_seconds": widest_window,
            "status": {name: e.figures() for name, e in status.items()}, "levels": levels,
            "raw": {**raw_status.figures(), "levels": raw_levels}, "low": low, "high_psi": high_psi,
            "evidently_blocks": blocks, "evidently_scores": scores, "embed_seconds": embed_seconds}


def summarise_quiet(parts: list[dict[str, Any]], drift: Drift, hours: float, evidently_every: int,
                    with_evidently: bool) -> dict[str, Any]:
    def total(*path: str | int) -> int:
        """The sum over the segments of the figure at a path of keys."""
        result = 0
        for part in parts:
            value: Any = part
            for key in path:
                value = value[key]
            result += value
        return result

    names = list(parts[0]["status"])
    judged = total("judged")
    raw_keys = ("drift_alarms", "watch_episodes", "drift_watch_fired", "seconds_at_drift")
    out: dict[str, Any] = {
        "policy": policy_keys(drift), "hours": hours, "segments": len(parts), "samples": total("samples"),
        "judgements": judged, "unjudged": total("unjudged"),
        "smallest_window_samples": min(p["smallest_window_samples"] for p in parts),
        "widest_window_seconds": max(p["widest_window_seconds"] for p in parts),
        "embedded_prompts": "every prompt (no pool)",
        "embed_seconds": sum(p["embed_seconds"] for p in parts),
        "status": {name: {key: total("status", name, key) for key in parts[0]["status"][name]} for name in names},
        "single_window_levels": {name: [total("levels", name, i) for i in range(3)] for name in parts[0]["levels"]},
        "lowest_similarity": min(p["low"]["similarity"] for p in parts),
        "highest_psi": {name: max(p["high_psi"][name] for p in parts) for name in parts[0]["high_psi"]},
        "raw_cosine": {**{key: total("raw", key) for key in raw_keys},
                       "single_window_levels": [total("raw", "levels", i) for i in range(3)],
                       "lowest": min(p["low"]["raw"] for p in parts)},
    }
    if with_evidently:
        blocks = [b for p in parts for b in p["evidently_blocks"]]
        evaluations = sum(len(b) for b in blocks)
        alarms = sum(sum(b) for b in blocks)
        needed = drift.consecutive_windows
        # A rising edge at the block's last second: without the rule, that second alarms and the one before does
        # not; with it, the last `needed` seconds alarm and the one before them does not.
        edge = sum(1 for b in blocks if b[-1] and not b[-2]) / len(blocks) if blocks else math.nan
        edge_rule = sum(1 for b in blocks if all(b[-needed:]) and not b[-needed - 1]) / len(blocks) if blocks else math.nan
        scores = [s for p in parts for s in p["evidently_scores"]]
        out["evidently"] = {
            "every_seconds": evidently_every, "blocks": len(blocks), "block_seconds": needed + 1,
            "evaluations": evaluations, "alarms": alarms,
            "alarm_rate_per_evaluation": alarms / evaluations if evaluations else math.nan,
            "extrapolated_seconds_in_alarm": alarms / evaluations * judged if evaluations else math.nan,
            "extrapolated_alarms_no_rule": edge * judged, "extrapolated_alarms_consecutive": edge_rule * judged,
            "auc_median": quantile(scores, 0.5), "auc_p99": quantile(scores, 0.99), "auc_max": max(scores, default=math.nan),
        }
    return out


def psi_tail(minimum: int, draws: int, seed: int) -> dict[str, Any]:
    """Why PSI alarms on unchanged traffic: PSI of `draws` independent windows of `minimum` samples drawn from each
    feature's reference proportions (multinomial), against its noise floor and the limits tried here."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"window_samples": minimum, "draws": draws}
    for name, feature in world().reference.features.items():
        q = np.maximum(np.asarray(feature.proportions), 1e-4)
        floor = stats.psi_floor(len(q), minimum, feature.count)
        limits = {"floor": floor, "0.2": 0.2, "0.9": 0.9, "1.0": 1.0}
        over = dict.fromkeys(limits, 0)
        empty = 0
        for start in range(0, draws, 500_000):
            counts = rng.multinomial(minimum, feature.proportions, size=min(500_000, draws - start))
            p = np.maximum(counts / minimum, 1e-4)
            values = ((p - q) * np.log(p / q)).sum(axis=1)
            for key, limit in limits.items():
                over[key] += int((values > max(limit, floor)).sum())
            empty += int((counts == 0).any(axis=1).sum())
        out[name] = {"floor": floor, "over": {key: count / draws for key, count in over.items()},
                     "empty_bucket": empty / draws}
    return out


# --- scenario 4: cost and memory -----------------------------------------------------------------------------------

class StubEmbedder:
    """The monitor's embedder for the cost run: precomputed vectors by prompt (JSON parsing measured, not embedding)."""
    model, dimension = EMBEDDING_MODEL, 256

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed(self, texts: Sequence[str]) -> list[Any]:
        return [self.table[t] for t in texts]


def new_monitor(drift: Drift, embedders: dict[str, Any], store: str) -> Monitor:
    settings = MonitorSettings.model_validate({"environment": "bench", "region": "us-east-1", "references": store,
                                               "models": {MODEL: {"drift": drift, "embeddingModel": EMBEDDING_MODEL}}})
    monitor = Monitor(settings, ReferenceStore(store), embedders)
    monitor.use(MODEL, world().reference)
    return monitor


def run_cost(seed: int, overrides: dict[str, float], samples: int, memory_hours: float, repeats: int = 3) -> dict[str, Any]:
    drift = policy(overrides)
    rng = random.Random(seed + 4242)
    pool = [traffic.record(rng, traffic.Shape(), ts=T0, model=MODEL) for _ in range(POOL)]
    vectors = embed([r["prompt"] for r in pool])
    table = {r["prompt"]: v for r, v in zip(pool, vectors, strict=True)}
    picks = [rng.randrange(POOL) for _ in range(samples)]
    virtual_rate = TARGET_INGEST  # samples per virtual second: the load the target speaks of
    lines = [json.dumps({**pool[i], "ts": T0 + n / virtual_rate}).encode() for n, i in enumerate(picks)]
    out: dict[str, Any] = {"samples": samples, "batch": INGEST_BATCH, "virtual_rate": virtual_rate,
                           "pool": POOL, "repeats": repeats}
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        with tempfile.TemporaryDirectory() as store:
            for path in ("add", "ingest"):
                walls, cpus, tick_ms = [], [], []
                for _ in range(repeats):
                    monitor = new_monitor(drift, {MODEL: StubEmbedder(table)}, store)
                    if path == "add":
                        batches = [Batch(samples={MODEL: [(pool[i], vectors[i]) for i in picks[k:k + INGEST_BATCH]]})
                                   for k in range(0, samples, INGEST_BATCH)]
                    else:
                        bodies = [lines[k:k + INGEST_BATCH] for k in range(0, samples, INGEST_BATCH)]
                    wall, cpu_clock = time.perf_counter(), time.process_time()
                    for k in range(0, samples // INGEST_BATCH):
                        now = T0 + k * INGEST_BATCH / virtual_rate
                        if path == "add":
                            monitor.add(batches[k], now)
                        else:
                            monitor.ingest(bodies[k], now)
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu_clock)
                    ticks = time.perf_counter()
                    for second in range(5):
                        monitor.tick(T0 + samples / virtual_rate + second)
                    tick_ms.append((time.perf_counter() - ticks) / 5 * 1000)
                    assert monitor.windows[MODEL].samples_total == samples
                wall_s, cpu_s = sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]
                out[path] = {"samples_per_second": samples / wall_s, "samples_per_second_cpu": samples / cpu_s,
                             "tick_ms": sorted(tick_ms)[len(tick_ms) // 2]}
            out["memory"] = run_memory(drift, pool, vectors, rng, memory_hours, store)
    finally:
        os.sched_setaffinity(0, before)
    out["cpu"] = cpu
    return out


def run_memory(drift: Drift, pool: list[dict[str, Any]], vectors: np.ndarray, rng: random.Random, hours: float,
               store: str) -> dict[str, Any]:
    monitor = new_monitor(drift, {}, store)
    window = monitor.windows[MODEL]
    marks: dict[str, dict[str, float]] = {}
    tracemalloc.start()
    wall = time.perf_counter()
    end = int(T0 + hours * 3600)
    for second in range(int(T0), end):
        count = sum(1 for _ in traffic.arrivals(rng, RATE, second, second + 1))
        picks = [rng.randrange(POOL) for _ in range(count)]
        monitor.add(Batch(samples={MODEL: [(pool[i], vectors[i]) for i in picks]}), second + 0.5)
        monitor.tick(second + 1.0)
        elapsed = second + 1 - int(T0)
        if elapsed == 3600 or second == end - 1:
            current, peak = tracemalloc.get_traced_memory()
            marks["1h" if elapsed == 3600 and "1h" not in marks else "end"] = {
                "hours": elapsed / 3600, "buckets": window.buckets(), "samples": window.samples_total,
                "traced_current_kib": current / 1024, "traced_peak_kib": peak / 1024}
            tracemalloc.reset_peak()
    tracemalloc.stop()
    return {"hours": hours, "rate": RATE, "marks": marks, "seconds": time.perf_counter() - wall,
            "max_buckets": drift.max_window_seconds + 2}


# --- the run ------------------------------------------------------------------------------------------------------

def _task(name: str, args: tuple[Any, ...]) -> tuple[str, Any]:
    functions: dict[str, Callable[..., Any]] = {"shift": run_shift, "quiet": run_quiet, "check": evidently_check,
                                                "tail": psi_tail}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's convergence warnings on Evidently's classifier
        return name, functions[name](*args)


def segments(hours: float) -> list[tuple[float, float]]:
    total = hours * 3600
    size = SEGMENT_HOURS * 3600
    edges = [T0 + k * size for k in range(math.ceil(total / size))] + [T0 + total]
    return list(zip(edges, edges[1:], strict=False))


def run_all(args: argparse.Namespace, overrides: dict[str, float], label: str, quiet_hours: float,
            pool: ProcessPoolExecutor, with_evidently: bool) -> dict[str, Any]:
    drift = policy(overrides)
    futures = []
    for number, (start, end) in enumerate(segments(quiet_hours)):
        futures.append(pool.submit(_task, "quiet", (number, start, end, args.seed * 7919 + number, overrides,
                                                     with_evidently, args.evidently_every)))
    for trial in range(args.trials):
        futures.append(pool.submit(_task, "shift", ("topic", args.seed * 100_003 + trial, overrides, with_evidently)))
        futures.append(pool.submit(_task, "shift", ("numeric", args.seed * 200_003 + trial, overrides, False)))
    quiet, topic, numeric = [], [], []
    for future in futures:
        name, result = future.result()
        if name == "quiet":
            quiet.append(result)
        elif result["topic"] is not None:
            topic.append(result)
        else:
            numeric.append(result)
    return {"label": label, "policy": policy_keys(drift),
            "topic_shift": summarise_shift("topic", topic, drift),
            "numeric_shift": summarise_shift("numeric", numeric, drift),
            "no_shift": summarise_quiet(sorted(quiet, key=lambda p: p["segment"]), drift, quiet_hours,
                                        args.evidently_every, with_evidently)}


def fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    return f"{value:.{digits}f}"


def print_report(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\njudged every 1 s; scrape every {SCRAPE_SECONDS:g} s, rule evaluation every {RULE_SECONDS:g} s (random "
          "phases per trial); Drift: status >= 2, no for:")
    for run in result["runs"]:
        topic, numeric, quiet = run["topic_shift"], run["numeric_shift"], run["no_shift"]
        o = topic["ours"]
        pk = run["policy"]
        psi = next(iter(pk["psi"].values()))
        print(f"\n== {run['label']}: windowSeconds {pk['windowSeconds']}, minSamples {pk['minSamples']}, "
              f"consecutiveWindows {pk['consecutiveWindows']}, maxWindowSeconds {pk['maxWindowSeconds']}; embedding "
              f"drift < 0.85 (watch < 0.90); PSI drift > {psi['drift']:g} (watch > {psi['watch']:g}) and past its "
              "noise floor ==")
        print(f"1. topic shift (30 % of 10 req/s to a new topic), {o['trials']} trials, detected {o['detected']}:")
        print(f"   {'':<34} {'median':>8} {'p90':>8} {'max':>8}")
        rows: list[tuple[str, dict[str, Any]]] = [("ours: alert condition, s", o["alert_delay"]),
                                                  ("ours: status 2, s", o["status_delay"]),
                                                  ("ours: samples after the shift", o["samples"])]
        for name, figures in rows:
            print(f"   {name:<34} {fmt(figures['median']):>8} {fmt(figures['p90']):>8} {fmt(figures['max']):>8}")
        for name, figures in topic["signal_status_delay"].items():
            print(f"   {'  ' + name + ' at status 2, s':<34} {fmt(figures['median']):>8} {fmt(figures['p90']):>8}"
                  f"   (reached in {figures['reached_drift']}/{o['trials']}; first in {topic['first_signal'][name]})")
        for topic_name, figures in topic.get("by_topic", {}).items():
            print(f"   {'  alert, new topic ' + topic_name + ', s':<34} {fmt(figures['alert_delay']['median']):>8} "
                  f"{fmt(figures['alert_delay']['p90']):>8}   ({figures['trials']} trials)")
        target = "met" if o["alert_delay"]["median"] <= TARGET_DELAY else "MISSED"
        print(f"   target: median alert delay <= {TARGET_DELAY:g} s: {target}; status 2 before the shift: "
              f"{topic['false_before_shift']} judgements")
        if "evidently" in topic:
            e = topic["evidently"]
            for key, name in (("no_rule", "Evidently, any alarm"),
                              ("consecutive", f"Evidently, {pk['consecutiveWindows']} in a row")):
                f = e[key]
                print(f"   {name + ': alert, s':<34} {fmt(f['alert_delay']['median']):>8} {fmt(f['alert_delay']['p90']):>8}"
                      f" {fmt(f['alert_delay']['max']):>8}   samples median {fmt(f['samples']['median'], 0)}, "
                      f"detected {f['detected']}/{f['trials']}")
            print(f"   Evidently alarms on unshifted windows just before the shift: {e['before_shift_alarms']}/"
                  f"{e['before_shift_evaluations']} ({fmt(100 * e['before_shift_alarm_rate'])} %); after it "
                  f"{fmt(100 * e['after_shift_alarm_rate'])} % of {e['after_shift_evaluations']} evaluations")
        n = numeric["ours"]
        print(f"3. numeric shift (prompt tokens x1.5), prompt_tokens PSI at status 2, {n['trials']} trials, "
              f"detected {n['detected']}:")
        for name, figures in (("alert condition, s", n["alert_delay"]), ("status 2, s", n["status_delay"]),
                              ("samples after the shift", n["samples"])):
            print(f"   {name:<34} {fmt(figures['median']):>8} {fmt(figures['p90']):>8} {fmt(figures['max']):>8}")
        target = "met" if n["alert_delay"]["median"] <= TARGET_DELAY else "MISSED"
        print(f"   target: within the same budget (median <= {TARGET_DELAY:g} s): {target}")
        q = quiet
        s = q["status"]["status"]
        print(f"2. no shift, {q['hours']:g} simulated hours, daily cycle 2-18 req/s: {q['samples']:,} samples "
              f"({q['embedded_prompts']}, embedded in {q['embed_seconds']:.0f} s CPU), {q['judgements']:,} judgements "
              f"(windows of >= {q['smallest_window_samples']} samples, up to {q['widest_window_seconds']} s), "
              f"{q['unjudged']} not judged")
        print(f"   {'':<34} {'drift':>8} {'watch':>8} {'DriftWatch':>11} {'windows past drift limit':>26}")
        print(f"   {'ours, any signal':<34} {s['drift_alarms']:>8} {s['watch_episodes']:>8} {s['drift_watch_fired']:>11}")
        for name, figures in q["status"].items():
            if name == "status":
                continue
            past = q["single_window_levels"][name][2]
            print(f"   {'  ' + name:<34} {figures['drift_alarms']:>8} {figures['watch_episodes']:>8} "
                  f"{figures['drift_watch_fired']:>11} {past:>26,}")
        r = q["raw_cosine"]
        print(f"   {'raw centroid cosine (no correction)':<34} {r['drift_alarms']:>8} {r['watch_episodes']:>8} "
              f"{r['drift_watch_fired']:>11} {r['single_window_levels'][2]:>26,}")
        print(f"   lowest similarity {fmt(q['lowest_similarity'], 3)} (raw {fmt(r['lowest'], 3)}); highest PSI "
              + ", ".join(f"{k} {v:.3f}" for k, v in q["highest_psi"].items()))
        if "evidently" in q:
            e = q["evidently"]
            print(f"   Evidently: {e['evaluations']} evaluations ({e['blocks']} blocks of {e['block_seconds']} "
                  f"consecutive seconds, one every {e['every_seconds']} s): {e['alarms']} alarms "
                  f"({fmt(100 * e['alarm_rate_per_evaluation'])} % of evaluations; AUC median "
                  f"{fmt(e['auc_median'], 3)}, p99 {fmt(e['auc_p99'], 3)})")
            print(f"   Evidently extrapolated to a judgement per second over {q['hours']:g} h: "
                  f"{fmt(e['extrapolated_alarms_no_rule'], 0)} alarms without a rule, "
                  f"{fmt(e['extrapolated_alarms_consecutive'], 0)} with {pk['consecutiveWindows']} in a row; "
                  f"{fmt(e['extrapolated_seconds_in_alarm'], 0)} s in alarm")
        target = "met" if s["drift_alarms"] == 0 else "MISSED"
        print(f"   target: 0 drift alarms: {target}")
    cost = result.get("cost")
    if cost:
        print(f"4. monitor cost, one core (CPU {cost['cpu']}), {cost['samples']:,} samples in batches of "
              f"{cost['batch']}, median of {cost['repeats']}:")
        for path, name in (("add", "Monitor.add (records + vectors)"),
                           ("ingest", "Monitor.ingest (JSON lines, stub embedder)")):
            f = cost[path]
            print(f"   {name:<44} {f['samples_per_second']:>10,.0f}/s wall {f['samples_per_second_cpu']:>10,.0f}/s CPU"
                  f"   tick {f['tick_ms']:.2f} ms")
        slowest = min(cost[p]["samples_per_second"] for p in ("add", "ingest"))
        print(f"   target >= {TARGET_INGEST:,.0f}/s: {'met' if slowest >= TARGET_INGEST else 'MISSED'}")
        m = cost["memory"]
        for mark, f in m["marks"].items():
            print(f"   memory after {f['hours']:g} h at {m['rate']:g} req/s ({f['samples']:,} samples): "
                  f"{f['buckets']} window buckets (max {m['max_buckets']}), tracemalloc current "
                  f"{f['traced_current_kib']:,.0f} KiB, peak {'since 1 h ' if mark == 'end' else ''}"
                  f"{f['traced_peak_kib']:,.0f} KiB")
    tail = result.get("psi_tail")
    if tail:
        print(f"\nPSI of {tail['draws']:,} independent {tail['window_samples']}-sample windows drawn from the reference's "
              "proportions (what a window of unchanged traffic scores):")
        for name, f in tail.items():
            if isinstance(f, dict):
                over = f["over"]
                print(f"   {name}: past its noise floor ({f['floor']:.3f}, meant as 1 - 1e-6) {100 * over['floor']:.3f} %; "
                      f"past max(0.9, floor) {100 * over['0.9']:.5f} %, past max(1.0, floor) {100 * over['1.0']:.5f} %; "
                      f"a bucket empty {100 * f['empty_bucket']:.3f} % (PSI >= 0.69 from that bucket alone)")
    ev = result["evidently"]
    print(f"\nEvidently: {ev['status']}")
    if ev.get("check"):
        c = ev["check"]
        print(f"   check: Report(EmbeddingsDriftMetric) score {c['report_score']:.6f} ({c['method']}, "
              f"{c['report_seconds']:.0f} s with its t-SNE) vs the method called directly {c['direct_score']:.6f}: "
              f"{'same' if c['same'] else 'DIFFERENT'}")


# Policies tried when the default misses a target: both meet the delay targets in scenarios 1 and 3 (30 trials).
AUTO_VARIANTS = ("psiDrift=0.9,consecutiveWindows=2", "psiDrift=1.0,consecutiveWindows=1")


def parse_variant(text: str, base: dict[str, float]) -> dict[str, float]:
    variant = dict(base)
    for pair in text.split(","):
        key, _, value = pair.partition("=")
        variant[key.strip()] = float(value) if key.strip() in PSI_KEYS else int(value)
    policy(variant)  # refused here if the stack would refuse it
    return variant


def missed(run: dict[str, Any]) -> bool:
    return (run["topic_shift"]["ours"]["alert_delay"]["median"] > TARGET_DELAY
            or run["numeric_shift"]["ours"]["alert_delay"]["median"] > TARGET_DELAY
            or run["no_shift"]["status"]["status"]["drift_alarms"] > 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="seeds per shift scenario (1 and 3)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours of unshifted traffic (2)")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--evidently-every", type=int, default=300,
                        help="scenario 2: one block of Evidently evaluations every this many seconds")
    parser.add_argument("--no-evidently-check", action="store_true",
                        help="skip running one window through Evidently's Report (about 40 s on a worker) to check "
                             "that the direct call gives its score")
    parser.add_argument("--memory-hours", type=float, default=6.0)
    parser.add_argument("--ingest-samples", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window-seconds", type=int)
    parser.add_argument("--min-samples", type=int)
    parser.add_argument("--consecutive", type=int)
    parser.add_argument("--variant", action="append", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                        help="also run scenarios 1-3 under another policy (stack-file keys, e.g. consecutiveWindows=2; "
                             "psiWatch/psiDrift set both features' PSI limits); default: "
                             + " and ".join(AUTO_VARIANTS) + " when the policy misses a target")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--variant-hours", type=float, help="scenario 2's hours for a variant (default --hours)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    command = ".venv/bin/python scripts/bench_drift.py " + " ".join(shlex.quote(a) for a in
                                                                     (sys.argv[1:] if argv is None else argv))
    overrides = {k: v for k, v in (("windowSeconds", args.window_seconds), ("minSamples", args.min_samples),
                                   ("consecutiveWindows", args.consecutive)) if v is not None}
    variants = []
    for text in args.variant or ():
        variants.append(parse_variant(text, overrides))
    version = evidently_version()
    with_evidently = not args.skip_evidently and version is not None
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; Python {platform.python_version()}, numpy "
          f"{np.__version__}, Evidently {version or 'not installed'}; {args.workers} worker processes")
    print(f"command: {command}")
    global _WORLD
    started = time.perf_counter()
    _WORLD = build_world(args.seed, with_evidently)
    reference = _WORLD.reference
    assert reference.embedding is not None
    print(f"reference: {reference.window['records']:,} records of the reference mix, centroid from "
          f"{reference.embedding.count:,} prompts ({EMBEDDING_MODEL}), built in {time.perf_counter() - started:.1f} s")
    if with_evidently:
        print("Evidently: evidently.legacy.metrics.data_drift.embedding_drift_methods.model(bootstrap="
              f"{_WORLD.evidently_reference.shape[0] < 1000}) -> {evidently_method()!r}, reference "
              f"{_WORLD.evidently_reference.shape[0]:,} rows (bootstrap only under 1,000), current = the samples our "
              "window judged")
    result: dict[str, Any] = {"command": command, "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                                              "python": platform.python_version(),
                                                              "numpy": np.__version__,
                                                              "load_average": os.getloadavg()},
                              "workers": args.workers, "seed": args.seed, "runs": []}
    if version is None:
        result["evidently"] = {"status": "not installed: .venv/bin/pip install -c constraints.txt -e '.[drift-bench]'"}
    elif args.skip_evidently:
        result["evidently"] = {"status": f"{version} installed, skipped (--skip-evidently)"}
    else:
        result["evidently"] = {
            "status": f"{version}: evidently.legacy.metrics.data_drift.embedding_drift_methods.model(bootstrap=False) "
                      "= ModelDriftMethod(threshold=0.55, quantile_probability=0.95, pca_components=None), the method "
                      "EmbeddingsDriftMetric uses by default with >= 1,000 reference rows; called directly on each "
                      "window", "version": version, "function": "evidently.legacy.metrics.data_drift."
                      "embedding_drift_methods.model / ModelDriftMethod.__call__",
            "parameters": {"threshold": 0.55, "bootstrap": False, "quantile_probability": 0.95,
                           "pca_components": None, "reference_rows": int(_WORLD.evidently_reference.shape[0])}}
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        check = pool.submit(_task, "check", (args.seed,)) if with_evidently and not args.no_evidently_check else None
        # the smallest window a PSI is judged on (stats.PSI_MIN_SAMPLES, or minSamples if larger)
        tail = pool.submit(_task, "tail", (max(policy(overrides).min_samples, stats.PSI_MIN_SAMPLES), 4_000_000,
                                           args.seed))
        result["runs"].append(run_all(args, overrides, "default policy" if not overrides else "policy "
                                      + ", ".join(f"{k}={v}" for k, v in overrides.items()), args.hours, pool,
                                      with_evidently))
        if args.variant is None and not args.no_variants and missed(result["runs"][0]):
            variants = [parse_variant(text, overrides) for text in AUTO_VARIANTS]
            print(f"the policy misses a target: also running {' and '.join(AUTO_VARIANTS)}")
        for variant in variants:
            label = "variant " + ", ".join(f"{k}={v:g}" for k, v in variant.items() if overrides.get(k) != v)
            result["runs"].append(run_all(args, variant, label, args.variant_hours or args.hours, pool, False))
        if check is not None:
            result["evidently"]["check"] = check.result()[1]
        result["psi_tail"] = tail.result()[1]
    result["cost"] = run_cost(args.seed, overrides, args.ingest_samples, args.memory_hours)
    result["wall_seconds"] = time.perf_counter() - wall
    print_report(result, args)
    print(f"\nwall time {result['wall_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=_json_default, allow_nan=True))
        print(f"figures: {args.json}")
    if missed(result["runs"][0]) or min(result["cost"][p]["samples_per_second"] for p in ("add", "ingest")) < TARGET_INGEST:
        return 1
    if version is None and not args.skip_evidently:
        return 2
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
