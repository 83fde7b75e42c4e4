"""Contain personal data found in logs: quarantine, redact, delete -- losing nothing, repeating no value.

Personal data was found under an S3 prefix (a PII alert, a report). The steps open a restricted
incident record, stop writes to the prefix with a bucket policy statement (when the targets say so),
scan every version of every object written in the window, copy every version of each affected object
to the quarantine bucket under legal hold with its checksum verified, write a redacted replacement in
place, and -- after a second approval of exactly which versions go -- delete the originals, each only
once its quarantined copy has been verified again. Then a re-scan of the live objects must find
nothing and every quarantined copy must still match; writes are allowed again; a report (counts per
entity type, objects, timeline; never a value) goes to the quarantine bucket and the data-protection
contact is notified.

The runbook reaches S3 and SNS through runbooks/adapters/s3_objects.py. Object keys that themselves
contain personal data are shown with placeholders in every record (`users/<EMAIL_ADDRESS>/log.jsonl`).
"""

from __future__ import annotations

import gzip
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

from llmops.pii.redact import redact_stream
from llmops.pii.redact import redact_text as display  # an object key as records show it
from llmops.pii.scanner import open_binary
from llmops.pii.sources import parse_s3_uri, scan_sources
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
from runbooks.engine.records import operator
from runbooks.engine.runner import crash_point
from runbooks.params import identifier, instant, s3_prefix
from runbooks.ports import ClusterScanner, ObjectStore, Topic
from runbooks.targets import Targets, require

REDACTED_FROM, INCIDENT_META = "llmops-redacted-from", "llmops-incident"


@dataclass
class Backends:
    targets: Targets
    objects: ObjectStore
    topic: Topic
    cluster: ClusterScanner | None = None  # when the targets have pii.cluster_scan and a cluster


@dataclass
class Facts:
    """The incident's scope, found at the first plan and journaled: the approved scope never grows."""
    bucket: str
    prefix: str
    since: float
    until: float
    objects: list[dict[str, Any]]  # {id, key, display, versions: [{version_id, size, etag, modified, latest}], ...}
    quarantine_bucket: str
    quarantine_prefix: str
    containment: str  # deny-writes | none
    topic: str | None  # the data-protection contact's SNS topic
    workers: int
    sid: str  # the bucket policy statement id of the containment
    exempt_principal: str | None  # this runbook's role, exempt from the deny
    # The scan runs as an Indexed Job of this many pods when the scope (bytes of every version in the window) is
    # larger than the targets' pii.cluster_scan_over_bytes; 0: locally. Decided at the first plan, like the scope.
    cluster_shards: int = 0
    cluster_estimate: str | None = None


Ctx = RunContext[Facts, Backends]


def connect(targets: Targets) -> Backends:
    from runbooks.adapters.aws import client
    from runbooks.adapters.s3_objects import S3Objects, SnsTopic

    require(targets, "pii-incident", "pii")
    assert targets.pii is not None
    aws = targets.aws
    s3 = client("s3", region=aws.region, endpoint_url=aws.endpoint_url)
    scanner = None
    if targets.pii.cluster_scan is not None and targets.pii.cluster_scan_over_bytes is not None:
        from runbooks.adapters.kubernetes_cluster import KubernetesCluster
        from runbooks.adapters.pii_cluster import PiiClusterScanner, cluster_settings

        require(targets, "pii-incident (cluster scan)", "kubernetes")
        assert targets.kubernetes is not None
        k = targets.kubernetes
        scan = targets.pii.cluster_scan
        scanner = PiiClusterScanner(
            cluster_settings(targets), KubernetesCluster(host=k.host, context=k.context, kubeconfig=k.kubeconfig,
                                                         in_cluster=k.in_cluster).batch,
            s3, poll_seconds=scan.poll_seconds, timeout_seconds=scan.timeout_seconds)
    return Backends(
        targets=targets,
        objects=S3Objects(s3, client("sts", region=aws.region, endpoint_url=aws.endpoint_url), targets.pii.kms_key_id),
        topic=SnsTopic(client("sns", region=aws.region, endpoint_url=aws.endpoint_url)),
        cluster=scanner)


# --- parameters -------------------------------------------------------------------------------------------

# --- prepare: what is in scope ----------------------------------------------------------------------------

def prepare(ctx: Preparing[Backends]) -> Facts:
    p, pii = ctx.params, ctx.backends.targets.pii
    assert pii is not None
    bucket, prefix = parse_s3_uri(p["source"])
    if p.get("until") is None:
        p["until"] = time.time()  # frozen at the first plan, so the approved scope does not grow
    since, until = p.get("since") or 0.0, p["until"]
    if since >= until:
        raise InputError(f"--since must be before --until ({_iso(since)} >= {_iso(until)})")
    objects = ctx.backends.objects
    if objects.versioning(bucket) != "Enabled":
        raise PreconditionFailed(f"s3://{bucket} has no versioning enabled: originals cannot be kept by version; "
                                 "enable versioning first (nothing was changed)")
    if not objects.object_lock_enabled(pii.quarantine_bucket):
        raise PreconditionFailed(f"quarantine bucket s3://{pii.quarantine_bucket} has no object lock: copies could "
                                 "not be put under legal hold (nothing was changed)")
    by_key: dict[str, list[dict[str, Any]]] = {}
    for version in objects.versions(bucket, prefix):
        by_key.setdefault(version["key"], []).append(version)
    in_scope: list[dict[str, Any]] = []
    for key in sorted(by_key):
        versions = sorted(by_key[key], key=lambda v: v["modified"])
        if any(since <= v["modified"] <= until for v in versions if not v["delete_marker"]):
            in_scope.append({"id": len(in_scope), "key": key, "display": display(key),
                             "versions": [{k: v[k] for k in ("version_id", "size", "etag", "modified", "latest")}
                                          for v in versions if not v["delete_marker"]],
                             "latest_is_marker": any(v["latest"] and v["delete_marker"] for v in versions)})
    if not in_scope:
        raise InputError(f"--source {p['source']}: no objects written between {_iso(since)} and {_iso(until)}")
    scope_bytes = sum(v["size"] for o in in_scope for v in o["versions"])
    shards, estimate = 0, None
    cluster = ctx.backends.cluster
    if cluster is not None and pii.cluster_scan_over_bytes is not None and scope_bytes > pii.cluster_scan_over_bytes:
        shards = cluster.pods_for(scope_bytes)
        estimate = cluster.estimate(scope_bytes, sum(len(o["versions"]) for o in in_scope), shards)
    return Facts(
        bucket=bucket, prefix=prefix, since=since, until=until, objects=in_scope,
        quarantine_bucket=pii.quarantine_bucket, quarantine_prefix=f"{pii.quarantine_prefix.strip('/')}/{p['incident']}",
        containment=pii.containment, topic=pii.data_protection_topic_arn, workers=pii.scan_workers,
        sid="LlmopsPiiContain" + "".join(c for c in p["incident"] if c.isalnum()),
        exempt_principal=objects.caller_role_arn() if pii.containment == "deny-writes" else None,
        cluster_shards=shards, cluster_estimate=estimate)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _objects(ctx: Ctx) -> list[dict[str, Any]]:
    return ctx.facts.objects


def _affected(ctx: Ctx) -> list[dict[str, Any]]:
    """The in-scope objects the scan found personal data in (empty before the scan)."""
    ids = {a["id"] for a in (ctx.outputs.get("scan") or {}).get("affected", [])}
    return [o for o in _objects(ctx) if o["id"] in ids]


def _record_key(ctx: Ctx, name: str) -> str:
    return f"{ctx.facts.quarantine_prefix}/{name}"


def _quarantine_key(ctx: Ctx, obj: dict[str, Any], version_id: str) -> str:
    return f"{ctx.facts.quarantine_prefix}/objects/{ctx.facts.bucket}/{obj['key']}/{version_id}"


# --- 1. the incident record -------------------------------------------------------------------------------

def _open_record(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    record = {"incident": ctx.params["incident"], "environment": ctx.environment, "opened_by": operator(),
              "opened_at": _iso(time.time()), "run_id": ctx.run_id, "source": f"s3://{f.bucket}/{f.prefix}",
              "window": {"since": _iso(f.since), "until": _iso(f.until)},
              "objects_in_scope": [o["display"] for o in _objects(ctx)],
              "classification": "restricted: entity types, counts and object keys only; never a value"}
    created = ctx.backends.objects.put_json_once(f.quarantine_bucket, _record_key(ctx, "incident.json"), record)
    return {"record": f"s3://{f.quarantine_bucket}/{_record_key(ctx, 'incident.json')}", "created": created,
            "at": time.time()}


def _record_exists(ctx: Ctx) -> bool:
    return ctx.backends.objects.head(ctx.facts.quarantine_bucket, _record_key(ctx, "incident.json")) is not None


# --- 2 and 8. containment ---------------------------------------------------------------------------------

def _statement(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    return {"Sid": f.sid, "Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject"],
            "Resource": f"arn:aws:s3:::{f.bucket}/{f.prefix}*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": f.exempt_principal}}}


def _contained(ctx: Ctx) -> bool:
    policy = ctx.backends.objects.policy(ctx.facts.bucket) or {}
    return any(s.get("Sid") == ctx.facts.sid for s in policy.get("Statement", []))


def _contain_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if f.containment != "deny-writes":
        return None
    return Change(f"deny writes to s3://{f.bucket}/{f.prefix}* (bucket policy statement {f.sid}; this "
                  "runbook's role excepted) until the incident is contained", None, _statement(ctx))


def _contain(ctx: Ctx) -> dict[str, Any]:
    objects, bucket = ctx.backends.objects, ctx.facts.bucket
    policy = objects.policy(bucket) or {"Version": "2012-10-17", "Statement": []}
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != ctx.facts.sid] + [_statement(ctx)]
    objects.set_policy(bucket, policy)
    return {"statement": ctx.facts.sid, "at": time.time()}


def _lift_plan(ctx: Ctx) -> Change | None:
    f = ctx.facts
    if f.containment != "deny-writes":
        return None
    return Change(f"allow writes to s3://{f.bucket}/{f.prefix} again (remove statement {f.sid})",
                  _statement(ctx), None)


def _lift(ctx: Ctx) -> dict[str, Any]:
    objects, bucket = ctx.backends.objects, ctx.facts.bucket
    policy = objects.policy(bucket)
    if policy is not None:
        policy["Statement"] = [s for s in policy.get("Statement", []) if s.get("Sid") != ctx.facts.sid]
        objects.set_policy(bucket, policy)
    return {"statement_removed": ctx.facts.sid, "at": time.time()}


# --- 3. scan ------------------------------------------------------------------------------------------------

def _scan(ctx: Ctx) -> dict[str, Any]:
    f, objects = ctx.facts, ctx.backends.objects
    sources, owner = [], {}
    for obj in _objects(ctx):
        for version in obj["versions"]:
            source = objects.source(f.bucket, obj["key"], version["version_id"], version["size"])
            sources.append(source)
            owner[source.name] = (obj["id"], version["version_id"])
    per_object: dict[int, Counter[str]] = {}
    scanned_bytes = 0
    where = {}
    if f.cluster_shards:
        where = _scan_on_cluster(ctx, owner, per_object)
        scanned_bytes = sum(s.size for s in sources)
    else:
        for result in scan_sources(sources, workers=f.workers):
            scanned_bytes += result.summary.bytes
            if result.summary.counts:
                per_object.setdefault(owner[result.source.name][0], Counter()).update(result.summary.counts)
    totals: Counter[str] = sum(per_object.values(), Counter())
    affected = [{"id": i, "key": _objects(ctx)[i]["display"], "counts": dict(sorted(per_object[i].items()))}
                for i in sorted(per_object)]
    ctx.progress(f"  scan: {len(sources)} version(s), {scanned_bytes / 1e6:.1f} MB; {len(affected)} object(s) "
                 f"hold personal data: {dict(sorted(totals.items())) or 'none'}")
    return {"versions_scanned": len(sources), "bytes": scanned_bytes, "affected": affected,
            "counts": dict(sorted(totals.items())), **where, "at": time.time()}


def _scan_on_cluster(ctx: Ctx, owner: dict[str, tuple[int, str]], per_object: dict[int, Counter[str]]) -> dict[str, Any]:
    """The scan as an Indexed Job over every version under the prefix; only the findings in versions of the window
    count. Named after the run, so a resumed run follows the Job it submitted instead of starting another."""
    f, scanner = ctx.facts, ctx.backends.cluster
    if scanner is None:
        raise StepFailed("the plan chose the cluster scan, but the targets no longer have pii.cluster_scan and a "
                         "cluster; restore them, then resume")
    scan_id = "".join(c if c.isalnum() else "-" for c in f"{ctx.params['incident']}-{ctx.run_id}".lower())[:42]
    result = scanner.scan(scan_id.strip("-"), f"s3://{f.bucket}/{f.prefix}", f.cluster_shards, ctx.progress)
    unreadable = [e for e in result["errors"] if e["path"] in owner]
    if unreadable:
        raise StepFailed(f"{len(unreadable)} version(s) in scope could not be scanned on the cluster: "
                         f"{[display(e['path']) for e in unreadable]}")
    for finding in result["findings"]:
        if finding["path"] in owner:
            per_object.setdefault(owner[finding["path"]][0], Counter())[finding["entity_type"]] += 1
    return {"on_cluster": {"job": result["job"], "shards": f.cluster_shards, "results": result["results"]}}


def _scanned(ctx: Ctx) -> bool:
    return "scan" in ctx.outputs


# --- 4. quarantine ------------------------------------------------------------------------------------------

def _pending_quarantine(ctx: Ctx) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, version) pairs of affected objects with no quarantined copy under legal hold yet."""
    f, objects = ctx.facts, ctx.backends.objects
    pending = []
    for obj in _affected(ctx):
        for version in obj["versions"]:
            head = objects.head(f.quarantine_bucket, _quarantine_key(ctx, obj, version["version_id"]))
            if head is None or head.get("ObjectLockLegalHoldStatus") != "ON":
                pending.append((obj, version))
    return pending


def _quarantine_plan(ctx: Ctx) -> Change:
    f = ctx.facts
    where = f"s3://{f.quarantine_bucket}/{f.quarantine_prefix}/objects/"
    if not _scanned(ctx):
        return Change(f"copy every version of each affected object to {where} under legal hold, tagged with the "
                      "incident, each copy's SHA-256 checked against its original")
    return Change(f"copy {sum(len(o['versions']) for o in _affected(ctx))} version(s) of {len(_affected(ctx))} "
                  f"affected object(s) to {where} under legal hold, checksums verified",
                  None, {o["display"]: [v["version_id"] for v in o["versions"]] for o in _affected(ctx)})


def _quarantine(ctx: Ctx) -> dict[str, Any]:
    f, objects = ctx.facts, ctx.backends.objects
    copied = 0
    for obj, version in _pending_quarantine(ctx):
        vid = version["version_id"]
        target = _quarantine_key(ctx, obj, vid)
        original = objects.sha256(f.bucket, obj["key"], vid)
        existing = objects.head(f.quarantine_bucket, target)
        if existing is None:  # a copy made before a crash is held, never copied again
            objects.copy(f.bucket, obj["key"], vid, f.quarantine_bucket, target,
                         tags={"llmops-incident": ctx.params["incident"], "llmops-source-version": vid},
                         metadata={"source-sha256": original, "source-bucket": f.bucket, "source-version": vid,
                                   INCIDENT_META: ctx.params["incident"]})
            crash_point("quarantine", f"copied-{copied + 1}")
        if objects.sha256(f.quarantine_bucket, target) != original:
            raise StepFailed(f"the quarantined copy of {obj['display']} version {vid} does not match its original; "
                             "nothing was deleted")
        objects.hold(f.quarantine_bucket, target)
        copied += 1
        crash_point("quarantine", f"item-{copied}")
    return {"copied": copied, "at": time.time()}


def _quarantine_verified(ctx: Ctx) -> bool:
    """Every version of every affected object has a copy under legal hold, tagged, whose bytes match the
    checksum recorded from the original."""
    return all(_copy_verified(ctx, obj, version["version_id"]) for obj in _affected(ctx) for version in obj["versions"])


def _copy_verified(ctx: Ctx, obj: dict[str, Any], version_id: str) -> bool:
    f, objects = ctx.facts, ctx.backends.objects
    key = _quarantine_key(ctx, obj, version_id)
    head = objects.head(f.quarantine_bucket, key)
    if head is None or head.get("ObjectLockLegalHoldStatus") != "ON":
        return False
    expected = head.get("Metadata", {}).get("source-sha256")
    tags = objects.tags(f.quarantine_bucket, key)
    return (bool(expected) and tags.get("llmops-incident") == ctx.params["incident"]
            and objects.sha256(f.quarantine_bucket, key) == expected)


# --- 5. redacted replacement ----------------------------------------------------------------------------------

def _latest(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["latest_is_marker"] or not obj["versions"]:
        return None
    return max(obj["versions"], key=lambda v: v["modified"])


def _replaced(ctx: Ctx, obj: dict[str, Any]) -> bool:
    latest = _latest(obj)
    if latest is None:
        return True  # deleted already: nothing to replace
    head = ctx.backends.objects.head(ctx.facts.bucket, obj["key"])
    return head is not None and head.get("Metadata", {}).get(REDACTED_FROM) == latest["version_id"]


def _redact_plan(ctx: Ctx) -> Change:
    if not _scanned(ctx):
        return Change("write a redacted replacement (typed placeholders) of each affected object in place")
    return Change(f"write a redacted replacement of {len(_affected(ctx))} object(s) in place",
                  None, sorted(o["display"] for o in _affected(ctx) if _latest(o)))


def _redact(ctx: Ctx) -> dict[str, Any]:
    f, objects = ctx.facts, ctx.backends.objects
    written = {}
    for obj in _affected(ctx):
        if _replaced(ctx, obj):
            continue
        latest = _latest(obj)
        assert latest is not None
        head = objects.head(f.bucket, obj["key"])
        if head is None or head.get("VersionId") != latest["version_id"]:
            raise StepFailed(f"{obj['display']} changed since the scan (its current version is not the one scanned); "
                             "a writer is still active. Stop it, then resume.")
        source = objects.source(f.bucket, obj["key"], latest["version_id"], latest["size"])

        def produce(out: IO[bytes], source: Any = source) -> None:
            with open_binary(source.open()) as stream:
                if isinstance(stream, gzip.GzipFile):  # gzip in, gzip out
                    with gzip.GzipFile(fileobj=out, mode="wb") as packed:
                        redact_stream(stream, packed)
                else:
                    redact_stream(stream, out)

        version = objects.put_stream(f.bucket, obj["key"], produce,
                                     {REDACTED_FROM: latest["version_id"], INCIDENT_META: ctx.params["incident"]},
                                     head.get("ContentType"))
        written[obj["display"]] = version
    return {"replacements": len(written), "at": time.time()}


# --- 6. delete the originals (a gate: approved on its own) -----------------------------------------------------

def _originals_left(ctx: Ctx) -> list[tuple[dict[str, Any], str]]:
    f, objects = ctx.facts, ctx.backends.objects
    left = []
    for obj in _affected(ctx):
        present = {v["version_id"] for v in objects.key_versions(f.bucket, obj["key"])}
        left += [(obj, v["version_id"]) for v in obj["versions"] if v["version_id"] in present]
    return left


def _delete_plan(ctx: Ctx) -> Change:
    if not _scanned(ctx):
        return Change("after a second approval of exactly which versions go: delete every original version of each "
                      "affected object, each only once its quarantined copy is verified again")
    versions: dict[str, list[str]] = {}
    for obj in _affected(ctx):
        versions[obj["display"]] = [v["version_id"] for v in obj["versions"]]
    return Change(f"delete {sum(map(len, versions.values()))} original version(s) of {len(versions)} object(s); "
                  "each was quarantined under legal hold and is verified again just before it goes",
                  versions, {k: "the redacted replacement only" for k in versions})


def _delete(ctx: Ctx) -> dict[str, Any]:
    f, objects = ctx.facts, ctx.backends.objects
    deleted = 0
    for obj, version_id in _originals_left(ctx):
        if not _copy_verified(ctx, obj, version_id):
            raise StepFailed(f"the quarantined copy of {obj['display']} version {version_id} is missing or does not "
                             "match; that original was not deleted")
        objects.delete_version(f.bucket, obj["key"], version_id)
        deleted += 1
        crash_point("delete-originals", f"item-{deleted}")
    return {"deleted": deleted, "at": time.time()}


# --- 7. verify ----------------------------------------------------------------------------------------------------

def _verify_clean(ctx: Ctx) -> dict[str, Any]:
    f, objects = ctx.facts, ctx.backends.objects
    sources = []
    for obj in _objects(ctx):
        head = objects.head(f.bucket, obj["key"])
        if head is not None:
            sources.append(objects.source(f.bucket, obj["key"], head["VersionId"], head.get("ContentLength", 0)))
    found: Counter[str] = Counter()
    for result in scan_sources(sources, workers=f.workers):
        found.update(result.summary.counts)
    if found:
        raise StepFailed(f"a re-scan of the live objects still finds personal data: {dict(sorted(found.items()))}")
    unverified = [f"{o['display']}@{v['version_id']}" for o in _affected(ctx) for v in o["versions"]
                  if not _copy_verified(ctx, o, v["version_id"])]
    if unverified:
        raise StepFailed(f"quarantined copies missing or not matching their originals: {unverified}")
    return {"live_objects_rescanned": len(sources), "findings": 0,
            "quarantined_verified": sum(len(o["versions"]) for o in _affected(ctx)), "at": time.time()}


# --- 9. report, 10. notify --------------------------------------------------------------------------------------------

def report(ctx: Ctx) -> dict[str, Any]:
    """What happened, for people: counts, objects, timeline. Built only from keys and counts."""
    scan = ctx.outputs.get("scan") or {}
    timeline = {step: _iso(float(out["at"])) for step, out in ctx.outputs.items() if isinstance(out, dict) and "at" in out}
    return {"incident": ctx.params["incident"], "environment": ctx.environment, "run_id": ctx.run_id,
            "source": f"s3://{ctx.facts.bucket}/{ctx.facts.prefix}",
            "window": {"since": _iso(ctx.facts.since), "until": _iso(ctx.facts.until)},
            "objects_in_scope": len(_objects(ctx)), "versions_scanned": scan.get("versions_scanned", 0),
            "affected_objects": [{"key": a["key"], "counts": a["counts"]} for a in scan.get("affected", [])],
            "counts": scan.get("counts", {}),
            "versions_quarantined": sum(len(o["versions"]) for o in _affected(ctx)),
            "versions_deleted": (ctx.outputs.get("delete-originals") or {}).get("deleted", 0),
            "quarantine": f"s3://{ctx.facts.quarantine_bucket}/{ctx.facts.quarantine_prefix}/objects/",
            "timeline": timeline}


def _report_key(ctx: Ctx) -> str:
    return _record_key(ctx, f"report-{ctx.run_id}.json")


def _write_report(ctx: Ctx) -> dict[str, Any]:
    document = report(ctx)
    ctx.backends.objects.put_json_once(ctx.facts.quarantine_bucket, _report_key(ctx), document)
    return {"report": f"s3://{ctx.facts.quarantine_bucket}/{_report_key(ctx)}", "counts": document["counts"],
            "at": time.time()}


def _reported(ctx: Ctx) -> bool:
    return ctx.backends.objects.head(ctx.facts.quarantine_bucket, _report_key(ctx)) is not None


def _notified_key(ctx: Ctx) -> str:
    return _record_key(ctx, f"notified-{ctx.run_id}.json")


def _notify_plan(ctx: Ctx) -> Change | None:
    topic = ctx.facts.topic
    return Change(f"notify the data-protection contact ({topic}): counts and objects, no values") if topic else None


def _notify(ctx: Ctx) -> dict[str, Any]:
    document = report(ctx)
    subject = (f"[{ctx.environment}] PII incident {ctx.params['incident']}: {len(document['affected_objects'])} "
               "object(s) contained")
    topic = ctx.facts.topic
    assert topic is not None  # the step has nothing to do without one (its plan is None)
    message_id = ctx.backends.topic.publish(topic, subject, {"event": "pii-incident-contained", **document})
    ctx.backends.objects.put_json_once(ctx.facts.quarantine_bucket, _notified_key(ctx),
                                  {"message_id": message_id, "topic": ctx.facts.topic, "at": time.time()})
    return {"message_id": message_id, "at": time.time()}


def _notified(ctx: Ctx) -> bool:
    return ctx.backends.objects.head(ctx.facts.quarantine_bucket, _notified_key(ctx)) is not None


PII_INCIDENT: Runbook[Facts, Backends] = Runbook(
    name="pii-incident",
    title="Contain personal data found in logs",
    summary=__doc__.split("\n\n")[1].replace("\n", " "),
    params=(
        Param("incident", "the incident id, e.g. INC-2041 (names the record and the quarantine prefix)",
              parse=identifier("an incident id", "INC-2041")),
        Param("source", "where the data was found: s3://bucket/prefix", parse=s3_prefix),
        Param("since", "only objects written at or after this time (ISO 8601; default: all)", parse=instant,
              required=False),
        Param("until", "only objects written at or before this time (ISO 8601; default: when first planned)",
              parse=instant, required=False),
    ),
    facts_type=Facts,
    prepare=prepare,
    lock_target=lambda ctx: f"pii/{ctx.facts.bucket}/{ctx.facts.prefix}",
    lock_scope="<env>/pii/<bucket>/<prefix>",
    connect=connect,
    steps=(
        Step("open-incident", "Open the incident record in the quarantine bucket (restricted: entity types, counts "
             "and object keys only).",
             plan=lambda ctx: Change(f"open the incident record s3://{ctx.facts.quarantine_bucket}/"
                                     f"{_record_key(ctx, 'incident.json')}"),
             check=_record_exists, action=_open_record, verify=_record_exists, timeout_seconds=60),
        Step("contain-writes", "Stop the bleeding: a bucket policy statement denies writes to the prefix, except "
             "from this runbook's role (when the targets' pii.containment is deny-writes).",
             plan=_contain_plan, check=lambda ctx: ctx.facts.containment != "deny-writes" or _contained(ctx),
             action=_contain, verify=lambda ctx: ctx.facts.containment != "deny-writes" or _contained(ctx),
             timeout_seconds=60),
        Step("scan", "Scan every version of every object written in the window; record which objects hold "
             "personal data, with counts per entity type (never a value).",
             plan=lambda ctx: Change(f"scan {sum(len(o['versions']) for o in _objects(ctx))} version(s) of "
                                     f"{len(_objects(ctx))} object(s) under s3://{ctx.facts.bucket}/"
                                     f"{ctx.facts.prefix}" + (f" on the cluster: {ctx.facts.cluster_estimate}"
                                                              if ctx.facts.cluster_shards else " locally")),
             check=always_run, action=_scan, verify=lambda ctx: True, timeout_seconds=3600, retries=1,
             needs_approval=False),
        Step("quarantine", "Copy every version of each affected object to the quarantine bucket under legal hold, "
             "tagged with the incident; each copy's SHA-256 must equal its original's.",
             plan=_quarantine_plan, check=lambda ctx: not _pending_quarantine(ctx), action=_quarantine,
             verify=_quarantine_verified, timeout_seconds=3600),
        Step("redact-in-place", "Write a redacted replacement (typed placeholders; JSON lines stay valid) as the "
             "new current version of each affected object.",
             plan=_redact_plan, check=lambda ctx: all(_replaced(ctx, o) for o in _affected(ctx)), action=_redact,
             verify=lambda ctx: all(_replaced(ctx, o) for o in _affected(ctx)), timeout_seconds=3600),
        Step("delete-originals", "After a second approval of exactly which versions go: delete every original "
             "version of each affected object, each only once its quarantined copy is verified again.",
             plan=_delete_plan, check=lambda ctx: not _originals_left(ctx), action=_delete,
             verify=lambda ctx: not _originals_left(ctx), timeout_seconds=3600, gate=True),
        Step("verify-clean", "Re-scan the live objects (nothing may be found) and check every quarantined copy "
             "against its original's checksum.",
             plan=lambda ctx: Change("re-scan the live objects and verify every quarantined copy"),
             check=always_run, action=_verify_clean, verify=lambda ctx: True, timeout_seconds=3600, retries=1,
             needs_approval=False),
        Step("lift-containment", "Allow writes to the prefix again: remove the deny statement.",
             plan=_lift_plan, check=lambda ctx: ctx.facts.containment != "deny-writes" or not _contained(ctx),
             action=_lift, verify=lambda ctx: ctx.facts.containment != "deny-writes" or not _contained(ctx),
             timeout_seconds=60),
        Step("report", "Write the incident report to the quarantine bucket: counts per entity type, objects, "
             "timeline; never a value.",
             plan=lambda ctx: Change("write the incident report (counts, objects, timeline)"),
             check=_reported, action=_write_report, verify=_reported, timeout_seconds=60),
        Step("notify-data-protection", "Notify the data-protection contact (SNS) with the report's counts.",
             plan=_notify_plan, check=lambda ctx: not ctx.facts.topic or _notified(ctx), action=_notify,
             verify=lambda ctx: not ctx.facts.topic or _notified(ctx), timeout_seconds=60),
    ),
)
