"""Rebuild a retrieval index beside the live one, prove it, flip the alias, keep the old one for rollback.

The corpus under `--corpus s3://bucket/prefix` is snapshotted (every object's key, version id and
ETag, recorded in the evidence); each document is normalised, chunked and embedded with the index's
retrieval config (the stack's, or `--config VERSION`) into a new Qdrant collection version whose
metadata records the config, its fingerprint and the snapshot id. The candidate must then reach
recall@k on the golden queries of at least the live version's minus the tolerance, index every
corpus document, and have the fingerprint the serving config uses; its results are shown for a
second approval before the alias moves, atomically. The previous versions are kept (the newest N)
and older ones deleted; freshness metrics go to the Pushgateway. `--rollback` moves the alias back to
the previous version in one step.

Backends (S3, Qdrant, the embedding endpoint) are reached through llmops.retrieval and boto3 clients
made in `connect`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components import config as stack_config
from components.release import index_fingerprint, recorded_config
from llmops.pii.sources import parse_s3_uri
from llmops.retrieval.build import SnapshotEntry, build, load_golden, recall_at_k
from llmops.retrieval.embed import Embedder, embedder_for
from llmops.retrieval.freshness import freshness, push
from llmops.retrieval.store import IndexStore, version_name, version_number
from runbooks.engine import (
    Change,
    InputError,
    Param,
    PreconditionFailed,
    Preparing,
    Runbook,
    RunContext,
    Step,
    StepFailed,
    WorldChanged,
    always_run,
)
from runbooks.params import identifier, s3_prefix, switch
from runbooks.ports import Corpus
from runbooks.targets import RetrievalTargets, Targets, require


@dataclass
class Backends:
    targets: Targets
    store: IndexStore  # the retrieval library's Qdrant versions and alias (a server by URL, or embedded by path)
    corpus: Corpus


@dataclass
class Facts:
    """What prepare found and chose, journaled at approval."""
    index: str
    live: str | None  # the collection the alias points at
    serving_fingerprint: str  # the retrieval config serving queries with
    mode: str  # rebuild | rollback
    target: str  # the collection the alias will point at
    target_fingerprint: str | None = None  # rollback: the target's config fingerprint
    bucket: str | None = None  # rebuild: the corpus
    prefix: str | None = None
    config: dict[str, Any] | None = None  # rebuild: the retrieval config to build with
    golden_queries: int = 0
    dimension: int | None = None


Ctx = RunContext[Facts, Backends]


def connect(targets: Targets) -> Backends:
    import os

    from runbooks.adapters.aws import client
    from runbooks.adapters.s3_objects import S3Corpus

    require(targets, "reindex", "retrieval")
    r = targets.retrieval
    assert r is not None
    api_key = os.environ.get(r.qdrant_api_key_env) if r.qdrant_api_key_env else None
    return Backends(targets=targets,
                    store=IndexStore(url=r.qdrant_url, path=r.qdrant_path and str(Path(r.qdrant_path).expanduser()),
                                     api_key=api_key),
                    corpus=S3Corpus(client("s3", region=targets.aws.region, endpoint_url=targets.aws.endpoint_url)))


def _retrieval(targets: Targets) -> RetrievalTargets:
    assert targets.retrieval is not None  # connect required it
    return targets.retrieval


# --- prepare --------------------------------------------------------------------------------------------------

def _build_config(ctx: Preparing[Backends], serving: stack_config.IndexConfig) -> dict[str, Any]:
    version = ctx.params.get("config")
    if not version:
        return recorded_config(serving)
    directory = _retrieval(ctx.backends.targets).config_dir
    if not directory:
        raise InputError(f"--config {version}: the targets file names no retrieval.config_dir")
    path = Path(directory).expanduser() / serving.name / f"{version}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise InputError(f"--config {version}: no {path}; versions: {', '.join(known) or 'none'}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        candidate = stack_config.IndexConfig.model_validate({**data, "name": serving.name})
    except (yaml.YAMLError, ValueError) as error:
        raise InputError(f"{path}: not a valid retrieval config: {error}") from None
    return {**recorded_config(candidate), "version": version}


def prepare(ctx: Preparing[Backends]) -> Facts:
    p = ctx.params
    try:
        stack = stack_config.load_file(ctx.backends.targets.stack_path())
    except stack_config.ConfigError as error:
        raise InputError(str(error)) from None
    indexes = {i.name: i for i in stack.retrieval.indexes}
    if p["index"] not in indexes:
        raise InputError(f"--index {p['index']!r}: no such index in {ctx.environment}; indexes: {', '.join(indexes)}")
    serving = indexes[p["index"]]
    store, index = ctx.backends.store, p["index"]
    versions, live = store.versions(index), store.live(index)
    if p.get("rollback"):
        current = version_number(index, live) if live else None
        older = [n for n, name in versions.items() if current is not None and n < current and _fit(store.metadata(name))]
        if not older:
            raise InputError(f"--rollback: {index} has no complete version older than {live or 'nothing'} to go back to "
                             "that validation did not refuse and no rollback moved away from")
        target = versions[max(older)]
        return Facts(index=index, live=live, serving_fingerprint=index_fingerprint(serving), mode="rollback",
                     target=target, target_fingerprint=store.metadata(target).get("fingerprint"))
    bucket, prefix = parse_s3_uri(p["corpus"])
    config = _build_config(ctx, serving)
    embedder = _embedder(ctx.backends.targets, ctx.environment, config)
    golden = _golden(ctx.backends.targets, index)
    return Facts(index=index, live=live, serving_fingerprint=index_fingerprint(serving), mode="rebuild",
                 target=version_name(index, max(versions, default=0) + 1), bucket=bucket, prefix=prefix, config=config,
                 golden_queries=len(golden), dimension=embedder.dimension)


def _fit(metadata: dict[str, Any]) -> bool:
    """A version a rollback may return to: built completely, not refused by validation, not rolled back from."""
    return bool(metadata.get("complete")) and (metadata.get("validation") or {}).get("status") != "refused" \
        and not metadata.get("rolled_back")


def _embedder(targets: Targets, environment: str, config: dict[str, Any]) -> Embedder:
    e = _retrieval(targets).embedding
    try:
        return embedder_for(config["embeddingModel"], url=e.url, dimension=e.dimension, api_key_env=e.api_key_env)
    except ValueError as error:
        raise InputError(f"stacks/targets/{environment}.yaml: retrieval.embedding: {error}") from None


def _golden(targets: Targets, index: str) -> list[dict[str, Any]]:
    path = Path(_retrieval(targets).golden_dir).expanduser() / f"{index}.jsonl"
    if not path.is_file():
        raise InputError(f"no golden queries for {index}: {path} is missing (JSON lines of query and expected keys)")
    try:
        return load_golden(path.read_text().splitlines(), str(path))
    except ValueError as error:
        raise InputError(str(error)) from None


def _config(ctx: Ctx) -> dict[str, Any]:
    """The retrieval config a rebuild builds with (a rollback has none: it builds nothing)."""
    assert ctx.facts.config is not None, "a rebuild's facts carry its config"
    return ctx.facts.config


def _rebuild(ctx: Ctx) -> bool:
    return ctx.facts.mode == "rebuild"


# --- 1. snapshot -------------------------------------------------------------------------------------------------

def _snapshot(ctx: Ctx) -> dict[str, Any]:
    from llmops.retrieval.build import snapshot_id

    f = ctx.facts
    assert f.bucket is not None and f.prefix is not None  # a rebuild's facts
    entries = ctx.backends.corpus.snapshot(f.bucket, f.prefix)
    if not entries:
        raise StepFailed(f"s3://{f.bucket}/{f.prefix} holds no documents; nothing to index")
    return {"snapshot_id": snapshot_id(entries), "objects": len(entries), "at": time.time(),
            "entries": [[e.key, e.version_id, e.etag, e.modified] for e in entries]}


def _entries(ctx: Ctx) -> list[SnapshotEntry]:
    return [SnapshotEntry(*row) for row in ctx.outputs["snapshot-corpus"]["entries"]]


# --- 2. build --------------------------------------------------------------------------------------------------

def _built(ctx: Ctx) -> bool:
    f, store = ctx.facts, ctx.backends.store
    if f.target not in store.versions(f.index).values():
        return False
    meta = store.metadata(f.target)
    snapshot = (ctx.outputs.get("snapshot-corpus") or {}).get("snapshot_id")
    return bool(meta.get("complete")) and meta.get("snapshot_id") == snapshot and meta.get("run_id") == ctx.run_id


def _build(ctx: Ctx) -> dict[str, Any]:
    f, b = ctx.facts, ctx.backends
    assert f.bucket is not None and f.config is not None and f.dimension is not None  # a rebuild's facts
    bucket, config = f.bucket, f.config
    snapshot = ctx.outputs["snapshot-corpus"]
    metadata = {"index": f.index, "fingerprint": config["fingerprint"], "config": config,
                "snapshot_id": snapshot["snapshot_id"], "snapshot_at": snapshot["at"],
                "corpus": f"s3://{f.bucket}/{f.prefix}", "run_id": ctx.run_id, "complete": False}
    if f.target in b.store.versions(f.index).values():
        found = b.store.metadata(f.target)
        if found.get("run_id") != ctx.run_id:
            raise WorldChanged(f"{f.target} exists and was not created by this run ({found.get('run_id')}); re-plan")
    else:
        b.store.create(f.target, f.dimension, metadata)  # a crash after this: the same collection is refilled
    embedder = _embedder(ctx.backends.targets, ctx.environment, config)

    def documents() -> Iterator[tuple[SnapshotEntry, str]]:
        for entry in _entries(ctx):
            yield entry, b.corpus.read(bucket, entry)

    last = [0.0]

    def progress(built: Any) -> None:
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            ctx.progress(f"  build-candidate: {built.documents} documents, {built.chunks} chunks")

    built = build(b.store, f.target, documents(), config, embedder, progress)
    b.store.update_metadata(f.target, {**metadata, "complete": True, "documents": built.documents,
                                       "chunks": built.chunks, "built_at": time.time()})
    return {"collection": f.target, "documents": built.documents, "chunks": built.chunks,
            "seconds": round(built.seconds, 3), "at": time.time()}


# --- 3. validate -----------------------------------------------------------------------------------------------------

def _validate(ctx: Ctx) -> dict[str, Any]:
    f, store = ctx.facts, ctx.backends.store
    findings = []
    target_fingerprint = store.metadata(f.target).get("fingerprint")
    if target_fingerprint != f.serving_fingerprint:
        findings.append(f"config mismatch: {f.target} was built with fingerprint {target_fingerprint}, serving "
                        f"queries with {f.serving_fingerprint}; change the stack's retrieval config (and deploy) first")
    result: dict[str, Any] = {"target_fingerprint": target_fingerprint, "serving_fingerprint": f.serving_fingerprint}
    if _rebuild(ctx):
        golden = _golden(ctx.backends.targets, f.index)
        config = _config(ctx)
        embedder = _embedder(ctx.backends.targets, ctx.environment, config)
        candidate = recall_at_k(store, f.target, golden, config, embedder)
        live_recall = None
        if f.live:
            live_config = store.metadata(f.live).get("config") or config
            live_embedder = _embedder(ctx.backends.targets, ctx.environment, live_config)
            live_recall = recall_at_k(store, f.live, golden, live_config, live_embedder)
        tolerance = _retrieval(ctx.backends.targets).recall_tolerance
        if live_recall is not None and candidate < live_recall - tolerance:
            findings.append(f"recall@{config['topK']} on {len(golden)} golden queries: candidate {candidate} < live "
                            f"{live_recall} - tolerance {tolerance}")
        indexed = {doc for doc, _ in store.documents(f.target)}
        wanted = {e.key for e in _entries(ctx)}
        missing = sorted(wanted - indexed)
        if missing:
            findings.append(f"{len(missing)} corpus document(s) not indexed, e.g. {', '.join(missing[:3])}")
        result.update({"recall_candidate": candidate, "recall_live": live_recall, "golden_queries": len(golden),
                       "documents_indexed": len(indexed), "documents_in_corpus": len(wanted)})
    verdict = {"status": "refused" if findings else "passed", "run_id": ctx.run_id, "findings": findings}
    store.update_metadata(f.target, {**store.metadata(f.target), "validation": verdict})
    if findings:  # marked: no rollback returns to it, and the next rebuild retires it first
        raise StepFailed(f"{f.target} is not fit to serve; the alias stays on {f.live}: " + "; ".join(findings))
    return {**result, "at": time.time()}


# --- 4. flip, 5. retire, 6. freshness ----------------------------------------------------------------------------------

def _flipped(ctx: Ctx) -> bool:
    return ctx.backends.store.live(ctx.facts.index) == ctx.facts.target


def _flip_plan(ctx: Ctx) -> Change:
    f = ctx.facts
    validation = (ctx.outputs.get("validate") or {})
    detail = ""
    if validation.get("recall_candidate") is not None:
        detail = (f" (recall@{_config(ctx)['topK']} {validation.get('recall_live')} -> {validation['recall_candidate']} "
                  f"on {validation['golden_queries']} golden queries)")
    return Change(f"point alias {f.index} at {f.target} instead of {f.live or 'nothing'} in one operation{detail}",
                  {"alias": f.index, "collection": f.live}, {"alias": f.index, "collection": f.target})


def _flip(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    store = ctx.backends.store
    now = store.live(f.index)
    if now not in (f.live, f.target):
        raise WorldChanged(f"alias {f.index} points at {now}, not {f.live} as planned; re-plan")
    if not _rebuild(ctx) and f.live:  # a rollback: the version it leaves is never returned to by a rollback
        store.update_metadata(f.live, {**store.metadata(f.live),
                                          "rolled_back": {"run_id": ctx.run_id, "to": f.target, "at": time.time()}})
    store.flip(f.index, f.target)
    return {"alias": f.index, "from": f.live, "to": f.target, "at": time.time()}


def _to_retire(ctx: Ctx) -> list[str]:
    f, store = ctx.facts, ctx.backends.store
    versions = store.versions(f.index)
    live = store.live(f.index)
    keep_after = _retrieval(ctx.backends.targets).keep_versions
    older = sorted((n for n, name in versions.items() if name != live and name != f.target), reverse=True)
    # Versions no rollback may return to (refused, rolled back from) go first; they never take a kept slot.
    unfit = [n for n in older if not _fit(store.metadata(versions[n]))]
    fit = [n for n in older if n not in unfit]
    return [versions[n] for n in unfit + fit[keep_after:]]


def _retire_plan(ctx: Ctx) -> Change | None:
    if not _rebuild(ctx):
        return None
    return Change(f"keep the newest {_retrieval(ctx.backends.targets).keep_versions} previous version(s) of {ctx.facts.index} "
                  "for rollback; delete older ones")


def _retire(ctx: Ctx) -> dict[str, Any]:
    gone = _to_retire(ctx)
    for collection in gone:
        ctx.backends.store.delete(collection)
    return {"deleted": gone, "at": time.time()}


def _export(ctx: Ctx) -> dict[str, Any]:
    f, b = ctx.facts, ctx.backends
    live = b.store.live(f.index)
    if live is None:
        raise StepFailed(f"alias {f.index} points at no collection: there is nothing to measure")
    meta = b.store.metadata(live)
    corpus = meta.get("corpus") or f"s3://{f.bucket}/{f.prefix}"
    bucket, prefix = parse_s3_uri(corpus)
    metrics = freshness(b.store, live, b.corpus.snapshot(bucket, prefix), f.serving_fingerprint)
    gateway = b.targets.pushgateway
    if gateway:
        push(gateway, f.index, metrics)
    return {"collection": live, **metrics, "pushed_to": gateway, "at": time.time()}


def signals(ctx: Ctx) -> dict[str, Any]:
    try:
        store = ctx.backends.store
        live = store.live(ctx.facts.index)
        return {"live": live, "versions": list(store.versions(ctx.facts.index).values()),
                "live_fingerprint": store.metadata(live).get("fingerprint") if live else None}
    except Exception as error:  # noqa: BLE001 - signals are for the record; a read failure must not stop the run
        return {"error": str(error)}


def _prepare_checked(ctx: Preparing[Backends]) -> Facts:
    if not ctx.params.get("rollback") and not ctx.params.get("corpus"):
        raise InputError("--corpus s3://bucket/prefix is required (except with --rollback)")
    try:
        return prepare(ctx)
    except (OSError, RuntimeError) as error:  # Qdrant or S3 unreachable before anything changed
        raise PreconditionFailed(f"{error}; nothing was changed") from None


REINDEX: Runbook[Facts, Backends] = Runbook(
    name="reindex",
    title="Rebuild the retrieval index",
    summary=__doc__.split("\n\n")[1].replace("\n", " "),
    params=(
        Param("index", "the index, as named in the stack's retrieval.indexes (e.g. docs)"),
        Param("corpus", "the documents: s3://bucket/prefix (every object one document, UTF-8 text)", parse=s3_prefix,
              required=False),
        Param("config", "a retrieval config version from the targets' retrieval.config_dir (default: the stack's)",
              parse=identifier("a config version name", "v3"), required=False),
        Param("rollback", "point the alias back at the previous complete version", parse=switch,
              required=False, switch=True),
    ),
    facts_type=Facts,
    prepare=_prepare_checked,
    lock_target=lambda ctx: f"retrieval/{ctx.facts.index}",
    lock_scope="<env>/retrieval/<index>",
    signals=signals,
    connect=connect,
    steps=(
        Step("snapshot-corpus", "Record every corpus object's key, version id and ETag (the snapshot the version is "
             "built from; in the evidence).",
             plan=lambda ctx: Change(f"snapshot s3://{ctx.facts.bucket}/{ctx.facts.prefix}") if _rebuild(ctx) else None,
             check=lambda ctx: not _rebuild(ctx) or "snapshot-corpus" in ctx.outputs, action=_snapshot,
             verify=lambda ctx: True, timeout_seconds=600, needs_approval=False),
        Step("build-candidate", "Normalise, chunk and embed every document into a new collection version whose "
             "metadata records the config, fingerprint and snapshot id.",
             plan=lambda ctx: Change(f"build {ctx.facts.target} with config {_config(ctx)['fingerprint']}")
             if _rebuild(ctx) else None,
             check=lambda ctx: not _rebuild(ctx) or _built(ctx), action=_build,
             verify=lambda ctx: not _rebuild(ctx) or _built(ctx), timeout_seconds=7200, retries=1),
        Step("validate", "Golden queries: recall@k at least the live version's minus the tolerance; every corpus "
             "document indexed; the fingerprint serving uses.",
             plan=lambda ctx: Change(f"validate {ctx.facts.target} against {ctx.facts.live or 'nothing'}"),
             check=always_run, action=_validate, verify=lambda ctx: True, timeout_seconds=1800, retries=0,
             needs_approval=False),
        Step("flip-alias", "Point the alias at the new version in one operation (after a second approval of the "
             "validation results; with --rollback, straight back to the previous version).",
             plan=_flip_plan, check=_flipped, action=_flip, verify=_flipped, timeout_seconds=60,
             gate=_rebuild),
        Step("retire-old-versions", "Keep the newest previous versions for rollback; delete older ones.",
             plan=_retire_plan, check=lambda ctx: not _rebuild(ctx) or not _to_retire(ctx), action=_retire,
             verify=lambda ctx: not _rebuild(ctx) or not _to_retire(ctx), timeout_seconds=600),
        Step("export-freshness", "Compute the freshness metrics of the live version (age, corpus objects newer, "
             "stale share, config mismatch) and push them to the Pushgateway.",
             plan=lambda ctx: Change("export freshness metrics"), check=always_run, action=_export,
             verify=lambda ctx: True, timeout_seconds=600, needs_approval=False),
    ),
)
