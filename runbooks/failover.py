"""Fail over a region: move inference traffic to a standby that is verified ready, and back.

Before anything changes, the target region must be ready: its GPU nodes Ready, every model's
Deployment with all replicas ready and serving the same release as the source (or, if the source's
cluster cannot be reached, the release the stack declares), and each release's model artifacts
replicated there with the same keys, sizes and ETags. The steps swap the failover records in one
atomic Route53 batch (the target's records become PRIMARY, the source's SECONDARY, so Route53 still
falls back to the source if the target fails), wait until the change is in sync, verify that DNS
answers with the target's endpoints, and pin the active region in the stack file so the next `pulumi
up` keeps it. `--failback` moves traffic back to the stack's primary region with the same checks.

The swap also writes a TXT record `_llmops-failover.<domain>` (in the same atomic batch) saying which
region traffic left, and which run moved it; a later plain failover refuses to move traffic back to that
region -- that is a failback, and needs `--failback`, which removes the record.

The runbook reaches Route53, S3, the clusters and the registry through runbooks/adapters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from components import config as stack_config
from components.config import StackConfig
from components.manifests.gateway import model_hostnames
from components.manifests.vllm import RELEASE_ANNOTATION, RELEASE_PARTS_ANNOTATION
from components.scheduling import POOL_LABEL
from runbooks.engine import (
    Change,
    InputError,
    Param,
    PreconditionFailed,
    Preparing,
    Runbook,
    RunContext,
    Step,
    TransientError,
    WorldChanged,
    always_run,
)
from runbooks.params import aws_region, switch
from runbooks.ports import Buckets, Cluster, DnsZone, Registry
from runbooks.stack_file import set_active_region
from runbooks.targets import Targets, require

MARKER_PREFIX = "_llmops-failover"


def marker_name(domain: str) -> str:
    """The TXT record that remembers the last failover: which region traffic left, to where, by which run."""
    return f"{MARKER_PREFIX}.{domain}"


@dataclass
class Backends:
    targets: Targets
    dns: DnsZone
    clusters: dict[str, Cluster]  # by region
    buckets: dict[str, Buckets]  # by region
    registries: dict[str, Registry]  # by region (those the targets name)


@dataclass
class Facts:
    """Which way traffic moves and what prepare verified, journaled at approval."""
    source: str
    target: str
    primary: str
    zone: str
    records: dict[str, dict[str, Any]]  # model name -> {"primary": region, "values": {region: [value]}}
    marker_name: str
    failback: bool
    namespace: str
    expected: dict[str, str | None]  # model name -> the target region's record value
    readiness: dict[str, Any]  # what was checked: pools, models, artifacts


Ctx = RunContext[Facts, Backends]


def connect(targets: Targets) -> Backends:
    from runbooks.adapters.aws import client
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster
    from runbooks.adapters.mlflow_registry import MlflowRegistry
    from runbooks.adapters.route53_dns import Route53Dns
    from runbooks.adapters.s3_objects import S3Buckets

    require(targets, "failover", "failover")
    assert targets.failover is not None
    endpoint = targets.aws.endpoint_url
    regions = targets.failover.regions
    return Backends(
        targets=targets,
        dns=Route53Dns(client("route53", region=targets.aws.region, endpoint_url=endpoint)),
        clusters={name: KubernetesCluster(host=r.kubernetes.host, context=r.kubernetes.context,
                                          kubeconfig=r.kubernetes.kubeconfig) for name, r in regions.items()},
        buckets={name: S3Buckets(client("s3", region=name, endpoint_url=endpoint)) for name in regions},
        registries={name: MlflowRegistry(r.registry.tracking_uri) for name, r in regions.items() if r.registry})


def _read_marker(dns: DnsZone, zone: str, domain: str) -> dict[str, Any] | None:
    records = dns.record_sets(zone, marker_name(domain), "TXT")
    if not records:
        return None
    value = (records[0].get("ResourceRecords") or [{}])[0].get("Value", "").strip('"')
    fields = dict(part.split("=", 1) for part in value.split() if "=" in part)
    return {**fields, "record": records[0]} if "from" in fields else None


# --- prepare: which way, and is the target really ready? -------------------------------------------------------

@dataclass(frozen=True)
class _Move:
    """The direction being prepared, for the readiness checks."""
    source: str
    target: str
    primary: str
    namespace: str


def prepare(ctx: Preparing[Backends]) -> Facts:
    targets = ctx.backends.targets
    path = targets.stack_path()
    try:
        stack = stack_config.load_file(path)
    except stack_config.ConfigError as error:
        raise InputError(str(error)) from None
    if stack.failover is None:
        raise InputError(f"{path.name}: no failover config; {ctx.environment} runs in one region")
    if stack.failover.routing != "failover":
        raise InputError(f"{path.name}: failover.routing is {stack.failover.routing}: every region takes "
                         "traffic already; take a region out by scaling it down instead")
    active = stack.active_region
    p = ctx.params
    source = p.get("from") or active
    target = p.get("to") or (stack.regions.primary if p.get("failback") else None)
    if target is None:
        others = [r for r in stack.regions.all if r != source]
        target = others[0] if len(others) == 1 else None
        if target is None:
            raise InputError(f"--to is required: {ctx.environment} has several regions besides {source}")
    for option, region in (("--from", source), ("--to", target)):
        if region not in stack.regions.allowed:
            raise InputError(f"{option} {region}: outside the allowed regions of {ctx.environment} "
                             f"({', '.join(stack.regions.allowed)}): data residency forbids serving there")
        if region not in stack.regions.all:
            raise InputError(f"{option} {region}: not a region of {ctx.environment} ({', '.join(stack.regions.all)})")
    if source == target:
        raise InputError(f"--from and --to are both {source}")
    failover_targets = targets.failover
    assert failover_targets is not None
    for region in (source, target):
        if region not in failover_targets.regions:
            raise InputError(f"stacks/targets/{ctx.environment}.yaml: failover.regions has no {region}")
    dns = ctx.backends.dns
    records = _records(dns, stack, failover_targets.hosted_zone_id)
    marker = _read_marker(dns, failover_targets.hosted_zone_id, stack.serving.domain)
    if marker and marker["from"] == target and not p.get("failback"):
        raise InputError(f"--to {target}: traffic was moved away from {target} by failover run {marker.get('run')} "
                         f"(at {marker.get('at')}); moving it back is a failback: run with --failback (the same "
                         "readiness checks, and it removes the pin)")
    primaries = {r["primary"] for r in records.values()}
    if primaries != {source}:
        raise InputError(f"--from {source}: traffic is not there; the PRIMARY records are in "
                         f"{', '.join(sorted(str(p) for p in primaries))}"
                         + (" (already failed over)" if primaries == {target} else ""))
    move = _Move(source, target, stack.regions.primary, failover_targets.regions[target].kubernetes.namespace)
    return Facts(source=source, target=target, primary=stack.regions.primary, zone=failover_targets.hosted_zone_id,
                 records=records, marker_name=marker_name(stack.serving.domain), failback=bool(p.get("failback")),
                 namespace=move.namespace,
                 expected={name: (r["values"][target] or [None])[0] for name, r in records.items()},
                 readiness=_readiness(ctx.backends, stack, move))  # raises PreconditionFailed, naming what is not ready


def _records(dns: DnsZone, stack: StackConfig, zone: str) -> dict[str, dict[str, Any]]:
    """Per model name: which region its PRIMARY record names, and each region's record value."""
    found = {}
    for model in stack.models:
        _, name = model_hostnames(model.name, stack.serving.domain, "x")
        sets = {r["SetIdentifier"]: r for r in dns.record_sets(zone, name)}
        missing = [region for region in stack.regions.all if region not in sets]
        if missing:
            raise PreconditionFailed(f"{name}: no failover record for {', '.join(missing)} in zone {zone}; "
                                     "run `pulumi up` for the stack first")
        primary = [region for region, r in sets.items() if r.get("Failover") == "PRIMARY"]
        found[name] = {"primary": primary[0] if len(primary) == 1 else None,
                       "values": {region: [v["Value"].rstrip(".") for v in r.get("ResourceRecords", [])]
                                  for region, r in sets.items()}}
    return found


def _readiness(b: Backends, stack: StackConfig, move: _Move) -> dict[str, Any]:
    source, target, namespace = move.source, move.target, move.namespace
    problems: list[str] = []
    report: dict[str, Any] = {"models": {}, "pools": {}, "artifacts": {}}
    try:
        for pool in sorted({m.pool for m in stack.models}):
            nodes = b.clusters[target].nodes(f"{POOL_LABEL}={pool}")
            ready = [n for n in nodes if any(c.get("type") == "Ready" and c.get("status") == "True"
                                              for c in (n.get("status") or {}).get("conditions") or [])]
            report["pools"][pool] = {"nodes": len(nodes), "ready": len(ready)}
            if not ready:
                problems.append(f"GPU pool {pool}: no Ready node in {target} ({len(nodes)} node(s))")
        for model in stack.models:
            deployment = b.clusters[target].deployment(namespace, model.name)
            if deployment is None:
                problems.append(f"{model.name}: no Deployment {namespace}/{model.name} in {target}")
                continue
            status, spec = deployment.get("status") or {}, deployment.get("spec") or {}
            wanted = spec.get("replicas") or 1
            ready_replicas = status.get("readyReplicas") or 0
            release = (deployment["metadata"].get("annotations") or {}).get(RELEASE_ANNOTATION)
            parts = json.loads((deployment["metadata"].get("annotations") or {}).get(RELEASE_PARTS_ANNOTATION) or "{}")
            expected_release, where = _source_release(b, move, model)
            report["models"][model.name] = {"ready": ready_replicas, "wanted": wanted, "release": release,
                                            "source_release": expected_release, "compared_with": where}
            if ready_replicas < wanted or ready_replicas < 1:
                problems.append(f"{model.name}: {ready_replicas}/{wanted} replicas ready in {target}")
            if where == "source cluster" and release != expected_release:
                problems.append(f"{model.name}: {target} serves release {release}, {source} serves {expected_release}")
            if where == "stack config" and parts.get("model_version") != expected_release:
                problems.append(f"{model.name}: {target} serves version {parts.get('model_version')}, the stack declares "
                                f"{expected_release} ({source}'s cluster is unreachable)")
            version = parts.get("model_version")
            if version:
                report["artifacts"][model.name] = _artifact_problems(b, move, model.registry.model, version, problems)
    except TransientError as error:
        raise PreconditionFailed(f"{error}; nothing was changed") from None
    if problems:
        raise PreconditionFailed(f"{target} is not ready to take traffic from {source}; nothing was changed:\n  - "
                                 + "\n  - ".join(problems))
    return report


def _source_release(b: Backends, move: _Move, model: stack_config.Model) -> tuple[str | None, str]:
    """The release the source serves; if its cluster is down (the reason for failing over), the stack's."""
    try:
        deployment = b.clusters[move.source].deployment(move.namespace, model.name)
    except (TransientError, PreconditionFailed):
        deployment = None
    if deployment is not None:
        return (deployment["metadata"].get("annotations") or {}).get(RELEASE_ANNOTATION), "source cluster"
    return model.release.version, "stack config"


def _artifact_problems(b: Backends, move: _Move, registered: str, version: str,
                       problems: list[str]) -> dict[str, Any]:
    assert b.targets.failover is not None
    regions = b.targets.failover.regions
    registry = b.registries.get(move.primary) or b.registries.get(move.target)
    if registry is None:
        problems.append("no registry in the targets' failover.regions: cannot find the artifacts of a version")
        return {}
    found = registry.version(registered, version)
    if found is None:
        problems.append(f"{registered} version {version}: not in the model registry")
        return {}
    source_uri = str(found["source"])
    bucket, _, prefix = source_uri.removeprefix("s3://").partition("/")
    primary_bucket = regions[move.primary].artifact_bucket
    if bucket != primary_bucket:
        problems.append(f"{registered} version {version}: artifacts at {source_uri}, not in the primary's artifact "
                        f"bucket {primary_bucket}, so they are not replicated")
        return {"source": source_uri}
    if move.target == move.primary:
        return {"source": source_uri, "replica": "the primary's own bucket"}
    target_bucket = regions[move.target].artifact_bucket
    issues = replica_problems(b.buckets[move.primary], primary_bucket, b.buckets[move.target], target_bucket,
                              prefix.rstrip("/") + "/")
    problems += [f"{registered} version {version}: {issue}" for issue in issues]
    return {"source": source_uri, "replica": f"s3://{target_bucket}/{prefix}", "problems": len(issues)}


def replica_problems(source: Buckets, source_bucket: str, target: Buckets, target_bucket: str, prefix: str) -> list[str]:
    """What is wrong with the replica of `prefix` (empty: every object is there with the same size and ETag,
    and the source reports no replication pending or failed). Keys, sizes and ETags, not contents: S3
    replication keeps them, and hashing hundreds of GB at failover time is too slow."""
    wanted, present = source.listing(source_bucket, prefix), target.listing(target_bucket, prefix)
    problems = []
    if not wanted:
        problems.append(f"s3://{source_bucket}/{prefix} is empty")
    for key, (size, etag) in sorted(wanted.items()):
        if key not in present:
            problems.append(f"{key} missing in s3://{target_bucket}")
        elif present[key] != (size, etag):
            problems.append(f"{key} differs in s3://{target_bucket} (size/ETag {present[key]} != {(size, etag)})")
        elif source.replication_status(source_bucket, key) in ("PENDING", "FAILED"):
            problems.append(f"{key}: replication {source.replication_status(source_bucket, key)}")
    return problems


# --- steps ----------------------------------------------------------------------------------------------------

def _roles_now(ctx: Ctx) -> dict[str, dict[str, str | None]]:
    f = ctx.facts
    now = {}
    for name in f.records:
        sets = {r["SetIdentifier"]: r.get("Failover") for r in ctx.backends.dns.record_sets(f.zone, name)}
        now[name] = {f.source: sets.get(f.source), f.target: sets.get(f.target)}
    return now


def _shifted(ctx: Ctx) -> bool:
    f = ctx.facts
    return all(roles[f.target] == "PRIMARY" and roles[f.source] == "SECONDARY" for roles in _roles_now(ctx).values())


def _shift_plan(ctx: Ctx) -> Change:
    f = ctx.facts
    names = sorted(f.records)
    remember = (f"remove the failover record {f.marker_name}" if f.failback else
                f"record in TXT {f.marker_name} that traffic left {f.source}, so only --failback moves it back")
    return Change(f"make {f.target} PRIMARY and {f.source} SECONDARY for {', '.join(names)}, and {remember} "
                  "(one atomic Route53 change; Route53 still falls back to the source if the target fails)",
                  {n: {f.source: "PRIMARY", f.target: "SECONDARY"} for n in names},
                  {n: {f.source: "SECONDARY", f.target: "PRIMARY"} for n in names})


def _shift(ctx: Ctx) -> dict[str, Any]:
    f, dns = ctx.facts, ctx.backends.dns
    changes = []
    for name in f.records:
        current = {r["SetIdentifier"]: r for r in dns.record_sets(f.zone, name)}
        for region, role in ((f.source, "SECONDARY"), (f.target, "PRIMARY")):
            record = {k: v for k, v in current[region].items() if k in (
                "Name", "Type", "SetIdentifier", "TTL", "ResourceRecords", "HealthCheckId", "AliasTarget")}
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {**record, "Failover": role}})
    changes += _marker_changes(ctx)
    settings = ctx.backends.targets.failover
    assert settings is not None  # connect required it
    deadline = min(ctx.deadline, time.monotonic() + settings.change_timeout_seconds)
    change_id = dns.change(f.zone, changes, f"llmops failover {f.source} -> {f.target} ({ctx.run_id})")
    dns.wait_insync(change_id, deadline, settings.poll_seconds)
    return {"change_id": change_id, "records": len(changes), "at": time.time()}


def _marker_changes(ctx: Ctx) -> list[dict[str, Any]]:
    """Record the move (a failover) or forget it (a failback), in the same batch as the swap."""
    f = ctx.facts
    current = ctx.backends.dns.record_sets(f.zone, f.marker_name, "TXT")
    if f.failback:
        return [{"Action": "DELETE", "ResourceRecordSet": {k: v for k, v in record.items() if k in (
            "Name", "Type", "TTL", "ResourceRecords")}} for record in current]
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    value = f'"from={f.source} to={f.target} run={ctx.run_id} at={at}"'
    return [{"Action": "UPSERT", "ResourceRecordSet": {"Name": f.marker_name + ".", "Type": "TXT", "TTL": 300,
                                                        "ResourceRecords": [{"Value": value}]}}]


def _answers(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    found = {}
    for name in f.records:
        values, how = ctx.backends.dns.dns_answer(f.zone, name)
        found[name] = {"answer": values, "expected": [f.expected[name]], "how": how}
    return found


def _verify_dns(ctx: Ctx) -> dict[str, Any]:
    answers = _answers(ctx)
    wrong = {name: a for name, a in answers.items() if a["answer"] != a["expected"]}
    if wrong:  # retried with backoff: resolvers may lag the INSYNC change
        raise TransientError(f"DNS does not answer with {ctx.facts.target} yet: {json.dumps(wrong, sort_keys=True)}")
    return {"answers": answers, "at": time.time()}


def _pinned(ctx: Ctx) -> bool:
    stack = stack_config.load_file(ctx.backends.targets.stack_path())
    return stack.active_region == ctx.facts.target


def _pin_plan(ctx: Ctx) -> Change | None:
    if _pinned(ctx):
        return None
    f = ctx.facts
    value = None if f.target == f.primary else f.target
    shown = value or f"(default: {f.primary})"
    return Change(f"pin failover.activeRegion = {shown} in {ctx.backends.targets.stack_path().name}, "
                  "so the next `pulumi up` keeps traffic where it is", {"activeRegion": f.source},
                  {"activeRegion": value})


def _pin(ctx: Ctx) -> dict[str, Any]:
    f, path = ctx.facts, ctx.backends.targets.stack_path()
    set_active_region(path, None if f.target == f.primary else f.target)  # back on the primary: the pin goes
    return {"file": str(path), "active_region": f.target}


def signals(ctx: Ctx) -> dict[str, Any]:
    try:
        return {"dns": _answers(ctx), "readiness": ctx.facts.readiness}
    except (TransientError, PreconditionFailed, WorldChanged) as error:
        return {"error": str(error)}


FAILOVER: Runbook[Facts, Backends] = Runbook(
    name="failover",
    title="Fail over a region",
    summary=__doc__.split("\n\n")[1].replace("\n", " "),
    params=(
        Param("from", "the region traffic leaves (default: where the PRIMARY records are now)", parse=aws_region,
              required=False),
        Param("to", "the region traffic moves to (default: the other region; with --failback, the stack's primary)",
              parse=aws_region, required=False),
        Param("failback", "move traffic back to the stack's primary region (the same readiness checks)",
              parse=switch, required=False, switch=True),
    ),
    facts_type=Facts,
    prepare=prepare,
    lock_target=lambda ctx: f"dns/{ctx.facts.zone}",
    lock_scope="<env>/dns/<hosted zone>",
    signals=signals,
    connect=connect,
    steps=(
        Step("shift-traffic", "Swap the failover records in one atomic Route53 change: the target's become PRIMARY, "
             "the source's SECONDARY; wait until Route53 reports the change INSYNC.",
             plan=_shift_plan, check=_shifted, action=_shift, verify=_shifted, timeout_seconds=600),
        Step("verify-dns", "Verify that Route53 answers each model's name with the target region's endpoint.",
             plan=lambda ctx: Change("verify that DNS answers with the target region's endpoints"),
             check=always_run, action=_verify_dns, verify=lambda ctx: True, timeout_seconds=300, retries=5,
             backoff_seconds=5, needs_approval=False),
        Step("pin-active-region", "Pin failover.activeRegion in the environment's stack file (a change to commit), so "
             "the next `pulumi up` keeps traffic where it is.",
             plan=_pin_plan, check=_pinned, action=_pin, verify=_pinned, timeout_seconds=60),
    ),
)
