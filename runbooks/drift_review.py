"""Review a drift of one model's requests, and take one decision a person approves.

What the region's drift monitor judges now (each signal against its limit, the schema fields that changed, the
requests since the reference) and a sample of the recent request logs (`--since`, default the last hour) are read
before anything is asked: the prompts are embedded and placed on the reference's topics, so the plan shows which
topics grew, with a few example prompts redacted by the PII redactor. The retraining triggers that hold are listed:
drift, a schema change of the request log, the volume since the reference, a manual override (`--override
TICKET`). Then, with `--decision`:

- `accept`: the drift is the new normal -- build the next reference version from the recent logs (reason
  accepted-drift, the serving release), and verify the monitor judges against it;
- `reindex`: the retrieval index no longer fits what is asked -- record the request and hand over to the reindex
  runbook (its command is printed and recorded; it has its own approvals);
- `retrain`: record a retraining request with its reasons and notify; retraining itself happens elsewhere.

Every decision is recorded (numbers, reasons and the redacted examples only) and notified.
"""

from __future__ import annotations

import getpass
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from components import config as stack_config
from llmops.drift.client import MonitorUnavailable, monitor_state
from llmops.drift.logs import log_records
from llmops.drift.reference import MIN_RECORDS, ModelPolicy, ReferenceError, ReferenceStore, model_policy
from llmops.pii.redact import redact_text
from llmops.retrieval.embed import Embedder, embedder_for
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
    always_run,
)
from runbooks.engine.services import Notifier, RecordStore
from runbooks.params import identifier, instant
from runbooks.targets import DriftTargets, Targets, require

DECISIONS = ("accept", "reindex", "retrain")
EVIDENCE_RECORDS = 2_000  # recent records sampled for the evidence
EXAMPLES = 3  # redacted example prompts per topic that grew
EXAMPLE_CHARACTERS = 160


@dataclass
class Backends:
    targets: Targets
    store: ReferenceStore
    records: RecordStore  # where decisions and requests are recorded (the evidence store)
    notifier: Notifier
    s3: Any  # a factory of boto3 S3 clients (logs and references under s3://)
    evidence_shown: bool = False  # prepare runs twice (plan, then again under the lock): say it once


@dataclass
class Facts:
    """What prepare found, journaled at approval: numbers, reasons and redacted examples only."""
    model: str
    decision: str
    release: str  # the release serving now (a new reference belongs to it)
    reference_version: int | None
    status: str  # stable | watch | drift | unknown (no monitor)
    signals: list[dict[str, Any]] = field(default_factory=list)
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    topics: list[dict[str, Any]] = field(default_factory=list)  # the topics that grew, with redacted examples
    triggers: list[dict[str, Any]] = field(default_factory=list)  # retraining triggers that hold
    samples_since_reference: int | None = None
    logs: list[str] = field(default_factory=list)
    since: float = 0.0
    recent_records: int = 0
    logs_unreadable: str | None = None  # why no recent logs could be read (reindex and retrain go on without them)
    index: str | None = None  # reindex: the retrieval index the model's prompts are embedded for
    corpus: str | None = None


Ctx = RunContext[Facts, Backends]


def connect(targets: Targets) -> Backends:
    from runbooks.adapters.aws import client
    from runbooks.wiring import notifier_for, record_store

    require(targets, "drift-review", "drift")

    def s3() -> Any:
        return client("s3", region=targets.aws.region, endpoint_url=targets.aws.endpoint_url)
    return Backends(targets=targets, store=ReferenceStore(_drift(targets).references, s3),
                    records=record_store(targets.evidence, targets), notifier=notifier_for(targets), s3=s3)


def _drift(targets: Targets) -> DriftTargets:
    assert targets.drift is not None  # connect required it
    return targets.drift


def _embedder(targets: Targets, policy: ModelPolicy) -> Embedder | None:
    if policy.embedding_model is None:
        return None
    e = _drift(targets).embedding
    try:
        return embedder_for(policy.embedding_model, url=e.url, dimension=e.dimension, api_key_env=e.api_key_env)
    except ValueError as error:
        raise InputError(f"stacks/targets/{targets.environment}.yaml: drift.embedding: {error}") from None


# --- prepare: the evidence ------------------------------------------------------------------------------------------

def _monitor(ctx: Preparing[Backends], model: str) -> dict[str, Any] | None:
    url = _drift(ctx.backends.targets).monitor_url
    if not url:
        return None
    try:
        state = monitor_state(url)
    except MonitorUnavailable as error:
        raise PreconditionFailed(f"the drift monitor: {error}; nothing was changed") from None
    return state["models"].get(model)


def _recent(ctx: Preparing[Backends], policy: ModelPolicy, logs: list[str], since: float) -> tuple[int, list[dict]]:
    """(records since `since`, a uniform sample of them)."""
    rng = random.Random(0)
    sample: list[dict[str, Any]] = []
    seen = 0
    try:
        _, records = log_records(logs, policy.model, ctx.backends.s3)
        for record in records:
            ts = record.get("ts")
            if isinstance(ts, int | float) and ts < since:
                continue
            seen += 1
            if len(sample) < EVIDENCE_RECORDS:
                sample.append(record)
            elif (slot := rng.randrange(seen)) < EVIDENCE_RECORDS:
                sample[slot] = record
    except ReferenceError as error:
        raise InputError(str(error)) from None
    return seen, sample


def _topics(sample: list[dict[str, Any]], policy: ModelPolicy, reference: Any, embedder: Embedder | None) -> list[dict]:
    """The reference's topics (and the new ones) that grew in the recent sample, with redacted examples."""
    import numpy as np

    if embedder is None or reference is None or reference.embedding is None or policy.drift.embedding is None:
        return []
    text_field = policy.drift.embedding.field
    texts: list[str] = [t for t in (r.get(text_field) for r in sample) if isinstance(t, str)]
    if not texts:
        return []
    vectors = np.asarray(embedder.embed(texts), dtype=np.float64)
    clusters = np.asarray(reference.embedding.clusters, dtype=np.float64)
    similarities = vectors @ clusters.T
    nearest = np.argmax(similarities, axis=1)
    new = similarities[np.arange(len(texts)), nearest] < reference.embedding.outlier_similarity
    labels = [-1 if is_new else int(n) for n, is_new in zip(nearest, new, strict=True)]
    shares = Counter(labels)
    grown = []
    for cluster in sorted(shares, key=lambda c: shares[c] / len(texts) - _share(reference, c), reverse=True)[:3]:
        share, before = shares[cluster] / len(texts), _share(reference, cluster)
        if share <= before:
            break
        examples = [texts[i] for i, label in enumerate(labels) if label == cluster][:EXAMPLES]
        grown.append({"topic": "new" if cluster == -1 else f"reference topic {cluster}",
                      "share": round(share, 4), "reference_share": round(before, 4),
                      "examples": [redact_text(t)[:EXAMPLE_CHARACTERS] for t in examples]})
    return grown


def _share(reference: Any, cluster: int) -> float:
    return 0.0 if cluster == -1 else float(reference.embedding.cluster_proportions[cluster])


def prepare(ctx: Preparing[Backends]) -> Facts:
    p, targets = ctx.params, ctx.backends.targets
    try:
        stack = stack_config.load_file(targets.stack_path())
        policy = model_policy(stack, p["model"])
    except stack_config.ConfigError as error:
        raise InputError(str(error)) from None
    except ReferenceError as error:
        raise InputError(str(error)) from None
    decision = p["decision"]
    try:
        reference = ctx.backends.store.latest(policy.model)
    except ReferenceError as error:
        raise PreconditionFailed(f"{error}; nothing was changed") from None
    except Exception as error:  # noqa: BLE001 - the store unreachable: nothing was read, nothing changed
        raise PreconditionFailed(f"{_drift(targets).references}: {type(error).__name__}: {error}; nothing was "
                                 "changed") from None
    watched = _monitor(ctx, policy.model)
    judgement = (watched or {}).get("judgement") or {}
    levels = ("stable", "watch", "drift")
    status = levels[judgement.get("status", 0)] if watched else "unknown"
    signals = [{"name": s["name"], "value": s["value"], "limit": s["limit"], "status": levels[s["status"]]}
               for s in judgement.get("signals", [])]
    schema_changes = list(judgement.get("schema_changes", []))
    since_reference = (watched or {}).get("samples_since_reference")
    configured = p.get("from") or _drift(targets).logs
    logs: list[str] = [configured] if configured else []
    since = p.get("since") or time.time() - 3600
    recent, unreadable = 0, None
    sample: list[dict[str, Any]] = []
    if logs:
        try:
            recent, sample = _recent(ctx, policy, logs, since)
        except InputError as error:
            if decision == "accept":
                raise
            unreadable = str(error)
    topics = _topics(sample, policy, reference, _embedder(targets, policy)) if sample else []
    triggers: list[dict[str, Any]] = []
    drifting = [s["name"] for s in signals if s["status"] == "drift"]
    if drifting:
        triggers.append({"trigger": "drift", "signals": drifting})
    if schema_changes:
        triggers.append({"trigger": "schema", "fields": [f"{c['field']} ({c['change']})" for c in schema_changes]})
    volume = policy.drift.retraining.volume
    if volume is not None and since_reference is not None and since_reference >= volume:
        triggers.append({"trigger": "volume", "requests": since_reference, "limit": volume})
    if p.get("override"):
        triggers.append({"trigger": "manual", "ticket": p["override"]})
    facts = Facts(model=policy.model, decision=decision, release=policy.release,
                  reference_version=reference.version if reference else None, status=status, signals=signals,
                  schema_changes=schema_changes, topics=topics, triggers=triggers,
                  samples_since_reference=since_reference, logs=logs, since=since, recent_records=recent,
                  logs_unreadable=unreadable)
    if not ctx.backends.evidence_shown:
        ctx.backends.evidence_shown = True
        for line in _evidence_lines(facts):
            ctx.progress(line)
    if decision == "accept":
        if not logs:
            raise InputError(f"--decision accept builds a reference from recent logs: give --from LOGS, or "
                             f"drift.logs in stacks/targets/{ctx.environment}.yaml")
        if recent < MIN_RECORDS:
            raise InputError(f"--decision accept: {recent} record(s) of {policy.model} since "
                             f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))} in {', '.join(logs)}; a "
                             f"reference needs at least {MIN_RECORDS} (give an earlier --since)")
    elif decision == "reindex":
        if policy.drift.embedding is None:
            raise InputError(f"--decision reindex: {policy.model} judges no embedding, so no retrieval index is "
                             "tied to its drift (models[].drift.embedding.index)")
        facts.index = policy.drift.embedding.index
        facts.corpus = next(i.corpus for i in stack.retrieval.indexes if i.name == facts.index)
    elif decision == "retrain" and not triggers:
        raise InputError(f"--decision retrain: no retraining trigger holds for {policy.model} (no drift, no schema "
                         "change, volume under the limit); give --override TICKET to request it anyway")
    return facts


# --- steps --------------------------------------------------------------------------------------------------------

def _evidence_lines(f: Facts) -> list[str]:
    """What moved, for the person deciding: printed before the plan (the plan itself holds no reading that changes
    from one second to the next, so approving it does not race the monitor)."""
    lines = [f"{f.model}: {f.status} against reference v{f.reference_version or 0} ({f.recent_records} recent "
             f"requests in the logs; {f.samples_since_reference or 0} since the reference)"]
    for signal in f.signals:
        value = "n/a" if signal["value"] is None else f"{signal['value']:.3f}"
        lines.append(f"  {signal['name']}: {value} (limit {signal['limit']:.3f}) {signal['status']}")
    for change in f.schema_changes:
        lines.append(f"  schema: {change['field']} {change['change']}")
    if f.logs_unreadable:
        lines.append(f"  recent logs: not read ({f.logs_unreadable}); no topics or examples")
    for topic in f.topics:
        lines.append(f"  {topic['topic']}: {topic['share']:.0%} of recent requests (reference "
                     f"{topic['reference_share']:.0%}), e.g. " + " | ".join(topic["examples"][:2]))
    lines.append("  retraining triggers: " + (", ".join(t["trigger"] for t in f.triggers) or "none"))
    return lines


def _evidence(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    return {"status": f.status, "signals": f.signals, "schema_changes": f.schema_changes, "topics": f.topics,
            "triggers": f.triggers, "samples_since_reference": f.samples_since_reference,
            "recent_records": f.recent_records, "logs_unreadable": f.logs_unreadable,
            "reference_version": f.reference_version, "at": time.time()}


def _accepted(ctx: Ctx) -> int | None:
    """The reference version this run wrote, if it did."""
    store, f = ctx.backends.store, ctx.facts
    for version in reversed(store.versions(f.model)):
        if f.reference_version is not None and version <= f.reference_version:
            return None
        if store.get(f.model, version).reason == _reason(ctx):
            return version
    return None


def _reason(ctx: Ctx) -> str:
    return f"accepted-drift (run {ctx.run_id})"


def _accept_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if f.decision != "accept":
        return None
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f.since)) if ctx.params.get("since") else "an hour ago"
    return Change(f"build reference v{(f.reference_version or 0) + 1} of {f.model} from its request logs since {since} "
                  f"(release {f.release}); the monitor judges against it from then",
                  {"reference_version": f.reference_version}, {"reference_version": (f.reference_version or 0) + 1})


def _accept(ctx: Ctx) -> dict[str, Any]:
    from llmops.drift.reference import build_reference

    f, b = ctx.facts, ctx.backends
    policy = model_policy(stack_config.load_file(b.targets.stack_path()), f.model)
    _, records = log_records(f.logs, f.model, b.s3)
    recent = (r for r in records if not isinstance(r.get("ts"), int | float) or r["ts"] >= f.since)
    try:
        reference = build_reference(recent, model=f.model, drift=policy.drift, embedder=_embedder(b.targets, policy),
                                    release=f.release, reason=_reason(ctx), created_by=getpass.getuser())
    except ReferenceError as error:
        raise StepFailed(str(error)) from None
    stored = b.store.put(reference)
    return {"version": stored.version, "previous": stored.previous, "fingerprint": stored.fingerprint,
            "records": stored.window["records"], "where": b.store.where(f.model, stored.version), "at": time.time()}


def _monitor_follows(ctx: Ctx) -> bool:
    """The new reference is the newest version, and the monitor (if the targets name one) judges against it."""
    version = _accepted(ctx)
    if version is None or ctx.backends.store.versions(ctx.facts.model)[-1] != version:
        return False
    url = _drift(ctx.backends.targets).monitor_url
    if not url:
        return True
    while True:
        try:
            watched = monitor_state(url)["models"].get(ctx.facts.model) or {}
            if (watched.get("reference") or {}).get("version") == version:
                return True
        except MonitorUnavailable as error:
            ctx.progress(f"  waiting for the monitor: {error}")
        if time.monotonic() > ctx.deadline - 2:
            return False
        time.sleep(1)


def _request_key(ctx: Ctx) -> str:
    kind = {"accept": "drift-decisions", "reindex": "reindex-requests", "retrain": "retraining-requests"}
    return f"{kind[ctx.facts.decision]}/{ctx.facts.model}/{ctx.run_id}"


def _handover(ctx: Ctx) -> str | None:
    f = ctx.facts
    if f.decision != "reindex":
        return None
    corpus = f" --corpus {f.corpus}" if f.corpus else " --corpus s3://BUCKET/PREFIX"
    return f"llmops runbook run reindex --env {ctx.environment} --index {f.index}{corpus}"


def _record(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    accepted = (ctx.outputs.get("accept-reference") or {}).get("version")
    document = {"decision": f.decision, "model": f.model, "environment": ctx.environment, "run_id": ctx.run_id,
                "release": f.release, "reasons": f.triggers, "status": f.status, "signals": f.signals,
                "schema_changes": f.schema_changes, "topics": f.topics, "reference_version": f.reference_version,
                "new_reference_version": accepted, "handover": _handover(ctx), "at": time.time()}
    ctx.backends.records.put_once(_request_key(ctx), document)
    if document["handover"]:
        ctx.progress(f"  hand over to the reindex runbook: {document['handover']}")
    return {"key": _request_key(ctx), "handover": document["handover"], "at": document["at"]}


def _recorded(ctx: Ctx) -> bool:
    return ctx.backends.records.get(_request_key(ctx)) is not None


def _notify(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    what = {"accept": f"reference v{(ctx.outputs.get('accept-reference') or {}).get('version')} accepted",
            "reindex": f"reindex of {f.index} requested", "retrain": "retraining requested"}[f.decision]
    ctx.backends.notifier.publish(
        subject=f"drift-review: {ctx.environment}/{f.model}: {what}",
        message={"model": f.model, "decision": f.decision, "reasons": f.triggers, "status": f.status,
                 "record": _request_key(ctx), "handover": _handover(ctx), "run_id": ctx.run_id},
        dedup_id=f"{ctx.run_id}-decision")
    return {"notified": True, "at": time.time()}


def signals(ctx: Ctx) -> dict[str, Any]:
    url = _drift(ctx.backends.targets).monitor_url
    if not url:
        return {}
    try:
        watched = monitor_state(url)["models"].get(ctx.facts.model) or {}
    except MonitorUnavailable as error:
        return {"error": str(error)}
    judgement = watched.get("judgement") or {}
    return {"reference_version": (watched.get("reference") or {}).get("version"), "status": judgement.get("status"),
            "samples": judgement.get("samples"),
            "signals": {s["name"]: s["value"] for s in judgement.get("signals", [])}}


def _decision(value: str) -> str:
    if value not in DECISIONS:
        raise ValueError(f"expected one of {', '.join(DECISIONS)}")
    return value


DRIFT_REVIEW: Runbook[Facts, Backends] = Runbook(
    name="drift-review",
    title="Review a drift",
    summary=__doc__.split("\n\n")[1].replace("\n", " "),
    params=(
        Param("model", "the model, as named in the stack's models"),
        Param("decision", "accept (a new reference from recent logs), reindex (hand over to the reindex runbook) or "
              "retrain (record a retraining request)", parse=_decision),
        Param("since", "recent logs start here (ISO 8601; default: an hour ago)", parse=instant, required=False),
        Param("from", "the request logs (s3://bucket/prefix or a directory; default: the targets' drift.logs)",
              required=False, flag="--from"),
        Param("override", "a manual retraining override: the ticket that asks for it", required=False,
              parse=identifier("a ticket id", "ML-1234")),
    ),
    facts_type=Facts,
    prepare=prepare,
    lock_target=lambda ctx: f"drift/{ctx.facts.model}",
    lock_scope="<env>/drift/<model>",
    signals=signals,
    connect=connect,
    steps=(
        Step("collect-evidence", "Record what moved: each signal against its limit, schema changes, the topics that "
             "grew with redacted example prompts, and the retraining triggers that hold.",
             plan=lambda ctx: Change(f"record the evidence of {ctx.facts.model}"),
             check=always_run, action=_evidence, verify=lambda ctx: True, timeout_seconds=60,
             needs_approval=False),
        Step("accept-reference", "accept: build the next reference version from the recent logs and verify the "
             "monitor judges against it.",
             plan=_accept_plan, check=lambda ctx: ctx.facts.decision != "accept" or _accepted(ctx) is not None,
             action=_accept, verify=lambda ctx: ctx.facts.decision != "accept" or _monitor_follows(ctx),
             timeout_seconds=600, retries=1),
        Step("record-decision", "Record the decision with its reasons (a reindex or retraining request; for a "
             "reindex, the reindex runbook's command).",
             plan=lambda ctx: Change(f"record the {ctx.facts.decision} decision for {ctx.facts.model} with the "
                                     "retraining triggers that hold"),
             check=_recorded, action=_record, verify=_recorded, timeout_seconds=60),
        Step("notify", "Tell the team: the decision, its reasons and where it is recorded.",
             plan=lambda ctx: Change("notify the decision"), check=always_run, action=_notify,
             verify=lambda ctx: True, timeout_seconds=60, needs_approval=False),
    ),
)
