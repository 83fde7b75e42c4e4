"""The reindex drill: the corpus changed under the live `docs` index. A corpus in moto's S3 and an index built from it
in an embedded Qdrant directory (two complete versions, the newer live, so `reindex --rollback` has somewhere to go);
the project's freshness exporter (`llmops.retrieval.freshness`, what the `llmops retrieval freshness` CronJob runs)
pushes the index's freshness to Debian's Pushgateway; Debian's Prometheus scrapes it and evaluates the prod stack's
own `RetrievalIndexStale` rule (its `for:` shortened for the drill, said so in the report).

The drill overwrites a share of the documents in S3 (more than the alert's 5 %), records when the exporter pushed the
stale fraction, when Prometheus saw it and when the alert fired; runs the reindex runbook as on-call would (its plan
approved by the drill, then its flip gate approved by its hash, both said and recorded as the drill's); and verifies
the mitigation on real signals: the alias points at the new version, golden-query recall holds, the stale fraction is
back to 0 on Prometheus and the alert resolved.

`llmops drill reindex [--changed 0.2] [--documents 120] [--timeout 120]`.

The world (`ReindexWorld`) is also a part a long-lived sandbox can compose: it can use a moto server started by
someone else (`aws_endpoint`), run without Prometheus and the exporter (`with_signals=False`), seed a named corpus
bucket, and says what it contributes to a targets file (`targets_sections`) and to a prod stack file (`adapt_stack`).

Only the standard library is imported here: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmops.drill import arguments

HELP = ("the corpus changed under the live docs index: RetrievalIndexStale fires on real Prometheus, the reindex "
        "runbook rebuilds, validates and flips (approved by the drill), the alert resolves")
STARTING = ("drill: starting moto's S3, a corpus and a live docs index built from it (embedded Qdrant), the freshness "
            "exporter, the Pushgateway and Prometheus ...")
KEPT = "corpus golden queries, Qdrant directory, journal, evidence, audit log and stack file"

ENV = "drill"
INDEX = "docs"
PREFIX = "docs/"
LOCAL_MODEL = "local:hashing-1024"  # the local embedder stands in for the index's embedding endpoint
ALERT = "RetrievalIndexStale"
STEPS = ("snapshot-corpus", "build-candidate", "validate", "flip-alias", "retire-old-versions", "export-freshness")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--changed", type=arguments.share, default=0.2,
                        help="share of the corpus documents overwritten in S3 (default 0.2; the alert fires above 0.05)")
    parser.add_argument("--documents", type=arguments.count, default=120, help="documents in the corpus (default 120)")
    parser.add_argument("--alert-for", type=arguments.duration, default="2s",
                        help="the RetrievalIndexStale rule's `for:` in the drill (the stack's is 30m; default 2s)")
    parser.add_argument("--export-interval", type=arguments.positive_seconds, default=1.0,
                        help="seconds between freshness exports (the CronJob's schedule, shortened; default 1)")
    parser.add_argument("--timeout", type=arguments.positive_seconds, default=120.0,
                        help="give up after this many seconds (exit 1)")


def make_drill(args: argparse.Namespace) -> ReindexWorld:
    import tempfile

    return ReindexWorld(Path(tempfile.mkdtemp(prefix="llmops-reindex-drill-")), documents=args.documents,
                        export_interval=args.export_interval, alert_for=args.alert_for)


class ReindexWorld:
    """A corpus in S3, golden queries, a live index built from the corpus (embedded Qdrant), the prod stack file with
    the docs index on the local embedder, and -- with signals -- the freshness exporter, the Pushgateway and
    Prometheus with the stack's RetrievalIndexStale rule."""

    def __init__(self, workdir: Path, *, aws_endpoint: str | None = None, with_signals: bool = True,
                 bucket: str | None = None, documents: int = 120, export_interval: float = 1.0,
                 alert_for: str = "2s", environment_name: str = ENV, stack_source: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.aws_endpoint = aws_endpoint
        self.with_signals = with_signals
        self.bucket = bucket or f"llmops-drill-corpus-{uuid.uuid4().hex[:8]}"
        self.count, self.export_interval, self.alert_for = documents, export_interval, alert_for
        self.environment_name = environment_name
        self.qdrant = self.workdir / "qdrant"
        self.targets_dir = self.workdir / "targets"
        # A composer's stack file (already through `adapt_stack`), read where it is; else the prod stack, adapted here.
        self.stack_source = stack_source
        self.stack_file = Path(stack_source) if stack_source else self.workdir / "Pulumi.prod.yaml"
        self.golden_dir = self.workdir / "golden"
        self.moto: Any = None
        self.pushgateway: Any = None
        self.prometheus: Any = None
        self._exporter: threading.Thread | None = None
        self._stop = threading.Event()
        # Embedded Qdrant takes one client at a time (a file lock): the exporter and the runbook take turns.
        self._qdrant_lock = threading.Lock()
        self.exports = 0
        self.last_export: dict[str, float] = {}
        self.export_error: str | None = None
        self.seed_seconds = 0.0

    # --- composing: what this world needs of a targets file and a stack file --------------------------------------

    @property
    def corpus(self) -> str:
        return f"s3://{self.bucket}/{PREFIX}"

    def adapt_stack(self, document: dict[str, Any]) -> dict[str, Any]:
        """A prod stack-file document with the docs index on the local embedder (no embeddings endpoint runs here),
        small chunks (a quick build) and its corpus in this world's bucket."""
        adapted = copy.deepcopy(document)
        for index in adapted["config"]["llmops:retrieval"]["indexes"]:
            if index["name"] == INDEX:
                index.update({"embeddingModel": LOCAL_MODEL, "chunkSize": 128, "chunkOverlap": 16,
                              "corpus": self.corpus})
        return adapted

    def use_stack(self, path: Path) -> None:
        """Read the composer's stack file (composed with `adapt_stack`) instead of writing one: before `start`."""
        self.stack_source = self.stack_file = Path(path)

    def targets_sections(self) -> dict[str, Any]:
        """The targets keys this world contributes (the rest -- aws, audit, evidence, state -- is the composer's)."""
        return {"retrieval": {"qdrant_path": str(self.qdrant), "golden_dir": str(self.golden_dir),
                              "keep_versions": 1}}

    def write_targets(self, environment: str | None = None) -> Path:
        """`<targets_dir>/<environment>.yaml` for running the reindex runbook against this world."""
        import yaml

        environment = environment or self.environment_name
        targets: dict[str, Any] = {
            "environment": environment, "stack_file": str(self.stack_file),
            "aws": {"region": "us-east-1", "endpoint_url": self.aws_endpoint},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"), **self.targets_sections()}
        if self.pushgateway is not None:
            targets["pushgateway"] = self.pushgateway.url  # the runbook's own freshness push lands where Prometheus looks
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        path = self.targets_dir / f"{environment}.yaml"
        path.write_text(yaml.safe_dump(targets, sort_keys=False))
        return path

    def environment(self) -> dict[str, str]:
        """Environment variables for a runbook (in this process or another) that should use this world."""
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "drill",
                "AWS_SECRET_ACCESS_KEY": "drill", "AWS_DEFAULT_REGION": "us-east-1"}

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> ReindexWorld:
        from llmops.drill.backends import MotoServer, PrometheusServer, PushgatewayServer

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        if self.aws_endpoint is None:
            self.moto = MotoServer().start()
            self.aws_endpoint = self.moto.url
        began = time.monotonic()
        self._seed()
        self.seed_seconds = round(time.monotonic() - began, 2)
        if self.with_signals:
            self.pushgateway = PushgatewayServer().start()
            self.export_once()  # fresh before anything changes: the alert starts inactive
            (self.workdir / "prometheus").mkdir(exist_ok=True)
            self.prometheus = PrometheusServer(self.workdir / "prometheus",
                                               {"pushgateway": (self.pushgateway.port, {})}, [self.rule()]).start()
            self._exporter = threading.Thread(target=self._export_loop, name="reindex-drill-freshness", daemon=True)
            self._exporter.start()
        self.write_targets()
        return self

    def stop(self) -> None:
        """Stop what was started (also after a start that failed half way); idempotent. A moto server given to the
        world is left running: its owner stops it."""
        self._stop.set()
        if self._exporter is not None:
            self._exporter.join(timeout=30)
            self._exporter = None
        for name in ("prometheus", "pushgateway", "moto"):
            server = getattr(self, name)
            if server is not None:
                setattr(self, name, None)
                server.stop()

    # --- the seeded state --------------------------------------------------------------------------------------------

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.aws_endpoint, region_name="us-east-1",
                            aws_access_key_id="drill", aws_secret_access_key="drill")

    def serving_index(self) -> Any:
        from components import config as stack_config

        config = stack_config.load_file(self.stack_file)
        return next(i for i in config.retrieval.indexes if i.name == INDEX)

    def _seed(self) -> None:
        """The corpus (versioned bucket), golden queries, the adapted prod stack, and two complete versions of the
        index built from the corpus, the newer one live -- as two earlier reindex runs would have left them."""
        import json

        import yaml

        from components.paths import PROJECT_ROOT
        from components.release import recorded_config
        from llmops.retrieval.build import build, s3_snapshot, snapshot_id
        from llmops.retrieval.corpus import documents, golden
        from llmops.retrieval.embed import embedder_for

        s3 = self.s3()
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self.texts: dict[str, str] = {}
        for key, text, _ in documents(self.count):
            s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode())
            self.texts[key] = text
        if self.stack_source is None:
            stack = yaml.safe_load((PROJECT_ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
            self.stack_file.write_text(yaml.safe_dump(self.adapt_stack(stack), sort_keys=False))
        else:
            stack = yaml.safe_load(self.stack_file.read_text())
            if self.adapt_stack(stack) != stack:
                raise RuntimeError(f"{self.stack_file}: the docs index is not on {LOCAL_MODEL} with its corpus in "
                                   f"{self.corpus}; compose the stack file with this world's adapt_stack")
        self.golden_dir.mkdir(parents=True, exist_ok=True)
        (self.golden_dir / f"{INDEX}.jsonl").write_text(
            "".join(json.dumps(q) + "\n" for q in golden(self.count, queries=30)))
        config = recorded_config(self.serving_index())
        self.fingerprint = config["fingerprint"]
        embedder = embedder_for(config["embeddingModel"])
        entries = s3_snapshot(s3, self.bucket, PREFIX)
        snapshot, snapshot_at = snapshot_id(entries), time.time()
        with self.store() as store:
            if store.live(INDEX) is not None:
                return  # already seeded (a world started again on the same directory)
            for number in (1, 2):
                name = f"{INDEX}--v{number}"
                metadata = {"index": INDEX, "fingerprint": config["fingerprint"], "config": config,
                            "snapshot_id": snapshot, "snapshot_at": snapshot_at, "corpus": self.corpus,
                            "run_id": f"seed-{number}", "complete": False}
                store.create(name, embedder.dimension, metadata)
                built = build(store, name, ((e, self.texts[e.key]) for e in entries), config, embedder)
                store.update_metadata(name, {**metadata, "complete": True, "documents": built.documents,
                                             "chunks": built.chunks, "built_at": time.time(),
                                             "validation": {"status": "passed", "run_id": f"seed-{number}",
                                                            "findings": []}})
            store.flip(INDEX, f"{INDEX}--v2")

    @contextmanager
    def store(self) -> Iterator[Any]:
        """The embedded Qdrant directory, opened for this caller alone and closed again."""
        from llmops.drill.backends import wait_until
        from llmops.retrieval.store import IndexStore

        with self.exclusive():
            opened: list[Any] = []

            def open_store() -> bool:
                try:
                    opened.append(IndexStore(path=str(self.qdrant)))
                    return True
                except RuntimeError:  # a client not yet collected still holds the directory
                    import gc

                    gc.collect()
                    return False
            wait_until(open_store, 30, "the embedded Qdrant directory to be free", interval=0.2)
            try:
                yield opened[0]
            finally:
                opened[0].close()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Nothing else of this world opens the Qdrant directory meanwhile (a runbook run in this process holds it).
        Afterwards, clients the caller left unreferenced are collected, so the directory is free again."""
        import gc

        with self._qdrant_lock:
            try:
                yield
            finally:
                gc.collect()

    # --- the freshness signal ----------------------------------------------------------------------------------------

    def rule(self) -> dict[str, Any]:
        """The prod stack's RetrievalIndexStale rule, as rendered for the stack, with `for:` shortened."""
        from components import config as stack_config
        from components.manifests.alert_rules import RuleContext, index_alerts

        config = stack_config.load_file(self.stack_file)
        context = RuleContext(runbook_base_url=config.alerting.runbook_base_url, environment=self.environment_name,
                              region=config.regions.primary)
        rule = next(r for r in index_alerts(context) if r["alert"] == ALERT)
        self.stack_schedule = config.retrieval.freshness.schedule if config.retrieval.freshness else None
        self.stack_alert_for = rule.get("for")
        return {**rule, "for": self.alert_for}

    def export_once(self) -> dict[str, float]:
        """What `llmops retrieval freshness` does (the CronJob): the live version against the corpus, pushed."""
        from llmops.retrieval.build import s3_snapshot
        from llmops.retrieval.freshness import freshness, push

        with self.store() as store:
            live = store.live(INDEX)
            metrics = freshness(store, live, s3_snapshot(self.s3(), self.bucket, PREFIX), self.fingerprint)
        if self.pushgateway is not None:
            push(self.pushgateway.url, INDEX, metrics)
        self.last_export = {**metrics, "at": time.time()}
        self.exports += 1
        return metrics

    def _export_loop(self) -> None:
        while not self._stop.wait(self.export_interval):
            try:
                self.export_once()
                self.export_error = None
            except Exception as error:  # noqa: BLE001 - a failed export is retried at the next tick, as the CronJob's
                self.export_error = str(error)

    def prometheus_stale_fraction(self) -> float | None:
        assert self.prometheus is not None
        found = self.prometheus.query(f'max by (index) (llmops_index_stale_fraction{{index="{INDEX}"}})')
        return float(found[0]["value"][1]) if found else None

    def alert(self, state: str = "firing") -> bool:
        assert self.prometheus is not None
        return bool(self.prometheus.query(f'ALERTS{{alertname="{ALERT}",alertstate="{state}",index="{INDEX}"}}'))

    def alert_active(self) -> bool:
        assert self.prometheus is not None
        return bool(self.prometheus.query(f'ALERTS{{alertname="{ALERT}",index="{INDEX}"}}'))

    # --- the fault and what the drill checks -------------------------------------------------------------------------

    def change_corpus(self, share: float) -> list[str]:
        """Overwrite `share` of the documents (spread over the topics) with a revision of each: new ETags, so the
        live index serves stale text of them. Each keeps its words, so the golden queries still find it."""
        keys = sorted(self.texts)
        step = max(1, round(1 / share))
        changed = keys[::step][:max(1, round(share * len(keys)))]
        s3 = self.s3()
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        for key in changed:  # an editor's correction: the last sentence amended, dated
            self.texts[key] = self.texts[key].rstrip(".") + f" (corrected {stamp})."
            s3.put_object(Bucket=self.bucket, Key=key, Body=self.texts[key].encode())
        return changed

    def live(self) -> str | None:
        with self.store() as store:
            return store.live(INDEX)

    def versions(self) -> list[str]:
        with self.store() as store:
            return list(store.versions(INDEX).values())

    def golden_recall(self) -> tuple[str | None, float | None]:
        """recall@k of the golden queries on the live version, with the config it was built with."""
        from llmops.retrieval.build import load_golden, recall_at_k
        from llmops.retrieval.embed import embedder_for

        path = self.golden_dir / f"{INDEX}.jsonl"
        queries = load_golden(path.read_text().splitlines(), str(path))
        with self.store() as store:
            live = store.live(INDEX)
            if live is None:
                return None, None
            config = store.metadata(live)["config"]
            return live, recall_at_k(store, live, queries, config, embedder_for(config["embeddingModel"]))


# --- the rehearsal -----------------------------------------------------------------------------------------------------

def rehearse(drill: ReindexWorld, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    import os
    from datetime import datetime, timezone

    from llmops.drill.backends import wait_until
    from llmops.drill.report import DrillReport, finish, journal_check, run_approved
    from runbooks.engine import RunbookError
    from runbooks.engine.journal import Journal
    from runbooks.engine.runner import RunOptions
    from runbooks.launch import launch
    from runbooks.targets import load_targets

    def clock(at: float) -> str:
        return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S.%f")[:-4]

    def moment(name: str, text: str, at: float | None = None) -> None:
        report.mark(name, text, at)
        say(f"drill: {clock(report.events[name])} +{report.since(name) or 0:5.1f} s {text}")

    report = DrillReport("reindex", f"{args.changed:.0%} of the corpus changed")
    os.environ.update(drill.environment())
    prometheus, gateway = drill.prometheus, drill.pushgateway
    assert prometheus is not None and gateway is not None  # started, with signals
    state_dir = drill.workdir / "state"
    previous = drill.live()
    _, recall_before = drill.golden_recall()
    retrieval = load_targets(ENV).retrieval
    assert retrieval is not None  # the world wrote it
    tolerance = retrieval.recall_tolerance  # what the runbook's validation allows too
    say(f"drill: corpus {drill.corpus} ({drill.count} documents, seeded with versions {', '.join(drill.versions())}; "
        f"alias {INDEX} -> {previous}, golden recall {recall_before}) in {drill.seed_seconds:.1f} s; the freshness "
        f"exporter pushes to {gateway.url} every {drill.export_interval:g} s; Prometheus {prometheus.url} scrapes it "
        f"and evaluates the stack's {ALERT} (for: {drill.alert_for} in the drill, {drill.stack_alert_for} in the stack)")
    try:
        wait_until(lambda: drill.prometheus_stale_fraction() == 0 and not drill.alert_active(), 60,
                   "Prometheus to see the fresh index", interval=0.2)
    except TimeoutError as error:
        say(f"drill: {error}")
        return 1
    changed = drill.change_corpus(args.changed)
    share = len(changed) / drill.count
    moment("injected", f"corpus changed: {len(changed)} of {drill.count} documents overwritten in S3 ({share:.1%})")
    marks = (("exported", "the freshness exporter pushed the stale fraction",
              lambda: drill.last_export.get("stale_fraction", 0) > 0 and drill.last_export["at"] > report.events["injected"]),
             ("prometheus_saw", "Prometheus scraped a stale fraction above 5 %",
              lambda: (drill.prometheus_stale_fraction() or 0) > 0.05),
             ("alert_pending", f"{ALERT} pending", lambda: drill.alert("pending") or drill.alert("firing")),
             ("alert_firing", f"the {ALERT} alert fired", drill.alert))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and "alert_firing" not in report.events:
        for name, text, seen in marks:
            if name not in report.events and seen():
                moment(name, f"{text} (stale fraction {drill.last_export.get('stale_fraction', 0):.3f})")
        time.sleep(0.2)
    fired = "alert_firing" in report.events
    report.objective(f"{ALERT} fires", f"within {args.timeout:g} s of the change",
                     f"after {report.since('alert_firing'):.1f} s" if fired else
                     f"never (stale fraction {drill.last_export.get('stale_fraction', 0):.3f})", fired)
    report.figures.update({
        "documents": drill.count, "changed": f"{len(changed)} ({share:.1%})",
        "alert": f"{ALERT}: max by (index) (llmops_index_stale_fraction) > 0.05",
        "alert for": f"{drill.alert_for} in the drill (the stack's: {drill.stack_alert_for}, shortened for the drill)",
        "freshness export interval": f"{drill.export_interval:g} s in the drill (the stack's CronJob: {drill.stack_schedule!r}, "
                                     "shortened for the drill)",
        "scrape and rule evaluation interval": "0.5 s", "seeding (corpus and two index versions)":
            f"{drill.seed_seconds:.1f} s"})
    if not fired:
        if drill.export_error:
            say(f"drill: the last freshness export failed: {drill.export_error}")
        return finish(report, say, args.report_dir)

    params: dict[str, str | None] = {"index": INDEX, "corpus": drill.corpus, "config": None, "rollback": None}
    say(f"drill: {clock(time.time())} reindex --index {INDEX} --corpus {drill.corpus}")
    result: Any = None
    try:
        with drill.exclusive():  # the exporter waits: the runbook holds the embedded Qdrant directory meanwhile
            paused = run_approved(report, "reindex", ENV, params, state_dir, say)
            report.exit_codes["runbook at the flip gate"] = paused.exit_code
            if paused.error and paused.exit_code != 3:
                say(f"drill: reindex stopped: {paused.error}")
            if paused.exit_code == 3 and "runbook_finished" in report.events:  # at the gate: not finished
                at = report.events.pop("runbook_finished")
                report.labels.pop("runbook_finished", None)
                moment("runbook_paused", f"reindex paused at the flip-alias gate (exit code {paused.exit_code})", at)
            result = paused
            if paused.exit_code == 3 and paused.run_id:
                waits = [e for e in Journal(state_dir, paused.run_id).events() if e.get("event") == "awaiting_approval"]
                gate, summary = waits[-1]["gate_hash"], waits[-1].get("summary", "")
        alias_at_gate = drill.live()
        if paused.exit_code == 3 and paused.run_id:
            say(f"drill: the gate: {summary}; alias {INDEX} still -> {alias_at_gate}")
            approval = (f"gate {gate} of reindex run {paused.run_id} (flip-alias) approved by the drill "
                        f"(--resume {paused.run_id} --approve {gate})")
            say(f"drill: {approval}")
            moment("gate_approved", "the drill approved the flip gate")
            with drill.exclusive():
                result = launch("reindex", ENV, {}, RunOptions(resume=paused.run_id, approve=gate),
                                lambda message: say(f"  {message}"))
            moment("runbook_finished", f"reindex finished ({result.status}, exit code {result.exit_code})")
            for step in result.steps:
                say(f"  {step['step']:<22} {step['outcome']:<10} {step.get('seconds') or 0:6.2f} s")
            if result.error:
                say(f"drill: reindex stopped: {result.error}")
            report.steps = []
            report.add_run(result, journal_check(state_dir, result.run_id), [approval])
        report.objective("the flip waits for a second approval", "paused at flip-alias (exit code 3), alias unchanged",
                         f"exit code {paused.exit_code}, alias {INDEX} -> {alias_at_gate}",
                         paused.exit_code == 3 and alias_at_gate == previous)
    except RunbookError as error:
        say(f"drill: the reindex runbook refused: {error}")
        report.exit_codes["runbook"] = error.exit_code
    succeeded = result is not None and result.status == "succeeded" and result.exit_code == 0
    report.objective("reindex rebuilds, validates and flips", "succeeded, exit code 0",
                     f"{result.status}, exit code {result.exit_code}" if result is not None else
                     f"refused, exit code {report.exit_codes.get('runbook')}", succeeded)
    if succeeded:
        outputs = {s["step"]: s.get("outputs") or {} for s in result.steps}
        target = outputs.get("flip-alias", {}).get("to")
        validation = outputs.get("validate", {})
        live, recall_after = drill.golden_recall()
        say(f"drill: alias {INDEX} -> {live} (was {previous}); versions {', '.join(drill.versions())}; golden recall "
            f"{recall_before} -> {recall_after} (the runbook's validation: live {validation.get('recall_live')}, "
            f"candidate {validation.get('recall_candidate')})")
        report.objective("the live alias points at the new version", f"{INDEX} -> {target}",
                         f"{INDEX} -> {live}", live is not None and live == target and live != previous)
        floor = round((recall_before or 0) - tolerance, 4)
        report.objective("golden-query recall on the live version", f"at least {floor} (before {recall_before} - "
                         f"tolerance {tolerance})", str(recall_after),
                         recall_after is not None and recall_after >= floor)
        try:
            wait_until(lambda: drill.last_export.get("at", 0) > report.events["runbook_finished"]
                       and drill.last_export.get("stale_fraction") == 0 and drill.prometheus_stale_fraction() == 0
                       and not drill.alert_active(), args.timeout, "the stale fraction at 0 and the alert resolved",
                       interval=0.2)
            moment("mitigation_verified", f"mitigation verified: stale fraction 0 on Prometheus, {ALERT} resolved")
        except TimeoutError as error:
            say(f"drill: {error} (Prometheus: {drill.prometheus_stale_fraction()}, alert active: "
                f"{drill.alert_active()})")
        verified = "mitigation_verified" in report.events
        report.objective("stale fraction back to 0 and the alert resolved", f"within {args.timeout:g} s",
                         f"{report.since('mitigation_verified'):.1f} s after the change" if verified else "not seen",
                         verified)
        report.figures.update({"alias": f"{previous} -> {live}", "golden recall": f"{recall_before} -> {recall_after}",
                               "build": f"{outputs.get('build-candidate', {}).get('documents')} documents, "
                                        f"{outputs.get('build-candidate', {}).get('chunks')} chunks in "
                                        f"{outputs.get('build-candidate', {}).get('seconds')} s",
                               "retired": ", ".join(outputs.get("retire-old-versions", {}).get("deleted", [])) or "none"})
    report.objective("the run's journal is consistent", "every step started finished once, run finished",
                     "consistent" if report.journal.get("consistent") else
                     "; ".join(report.journal.get("problems", ["no run"])), bool(report.journal.get("consistent")))
    report.figures["freshness exports"] = drill.exports
    return finish(report, say, args.report_dir)
