"""The PII-incident drill: clean inference logs in a versioned bucket (moto's S3); at a moment of the drill a
misconfigured logger writes personal data into new objects under the prefix (one gzip-compressed, one with an e-mail
address in its key). The project's own scanner (`llmops pii scan ... --pushgateway`, in a process of its own, as the
scheduled scan runs it) pushes its findings to Debian's Pushgateway; Debian's Prometheus scrapes it and evaluates the
stack's PiiDetectedInLogs rule (its `for:` shortened for the drill, said so in the report). Once the alert fires the
pii-incident runbook runs with the drill's approvals -- the plan's hash, then the deletion gate's hash -- and the drill
checks real state: every original version quarantined under legal hold byte for byte, only clean redacted
replacements left, clean logs untouched, a re-scan that finds nothing (and that Prometheus saw add no finding), the
data-protection topic's message in its queue -- and that no personal data value appears in the drill's own output,
its report, the audit log, the evidence or the incident records.

`llmops drill pii-incident [--timeout 120] [--for 5s]`.

The world (`PiiDrill`) can also be one part of a long-lived sandbox: it takes a shared moto endpoint, runs without
Prometheus and the Pushgateway (`with_signals=False`), and names its log bucket and prefix.

Only the standard library at the top: the CLI imports this module when it builds its parser.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.drill import arguments

if TYPE_CHECKING:
    from llmops.drill.report import Tee

HELP = ("personal data written to logs: the real scanner and Prometheus raise PiiDetectedInLogs, the pii-incident "
        "runbook contains it (both approvals by the drill); no value may leak into any output")
STARTING = "drill: starting moto (S3, SNS, SQS, STS), Prometheus and the Pushgateway; writing clean logs ..."
KEPT = "targets, Prometheus data, audit log, evidence and the run's journal"

ENV = "drill"
INCIDENT = "INC-DRILL"
SOURCE_LABEL = "chat-logs"  # the scheduled scan's --source-label (README: `--source-label chat-logs`)
ALERT = "PiiDetectedInLogs"
STACK_FOR = "1m"  # what the stack's rule waits; the drill's is --for
CONTAINMENT = "none"
CONTAINMENT_WHY = ("none: moto enforces a bucket policy's Deny on every caller, the runbook's own role too, so "
                   "deny-writes would refuse the redacted replacements; deny-writes is tested in tests/runbooks")
# What the misconfigured logger writes: (object name under the prefix, lines, corpus seed, share of lines with personal
# data, gzip). Fixed, so that a test can know every value written (`injected_values`) and look for each in outputs.
INJECTED = (("part-0100.jsonl", 200, 1, 0.3, False), ("part-0101.jsonl.gz", 200, 2, 0.3, True),
            ("users/jane.doe@example.com/session.jsonl", 20, 6, 0.5, False))
KEY_VALUE = "jane.doe@example.com"  # personal data in an object key


def injected_lines(lines: int, seed: int, density: float) -> str:
    from llmops.pii.corpus import generate

    return "".join(text + "\n" for text, _ in generate(lines, seed=seed, density=density, prose=1))


def values_in(text: str) -> set[str]:
    from llmops.pii.detectors import detect

    data = text.encode()
    return {data[m.start:m.end].decode() for m in detect(data)}


def injected_values() -> set[str]:
    """Every personal data value the drill writes into the logs (keys included)."""
    found = {KEY_VALUE}
    for _, lines, seed, density, _ in INJECTED:
        found |= values_in(injected_lines(lines, seed, density))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=arguments.positive_seconds, default=120.0,
                        help="give up waiting for the alert (or for Prometheus to see the re-scan) after this many "
                             "seconds (exit 1)")
    parser.add_argument("--for", dest="for_", type=arguments.duration, default="5s", metavar="DURATION",
                        help=f"the PiiDetectedInLogs rule's `for:` in the drill (the stack's: {STACK_FOR}; default 5s)")


def make_drill(args: argparse.Namespace) -> PiiDrill:
    return PiiDrill(for_=getattr(args, "for_", "5s"))


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S.%f")[:-4]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class PiiDrill:
    """Buckets, topic and queue on moto; with signals, a Pushgateway and Prometheus with the stack's PII rule."""

    def __init__(self, workdir: Path | None = None, *, aws_endpoint: str | None = None, with_signals: bool = True,
                 bucket: str = "inference-logs", prefix: str = "chat/2026/11/22/",
                 quarantine_bucket: str = "pii-quarantine", for_: str = "5s") -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="llmops-pii-drill-"))
        self.aws_endpoint, self.with_signals, self.for_ = aws_endpoint, with_signals, for_
        self.bucket, self.prefix, self.quarantine = bucket, prefix.strip("/") + "/", quarantine_bucket
        self.targets_dir = self.workdir / "targets"
        self.moto: Any = None
        self.pushgateway: Any = None
        self.prometheus: Any = None
        self.topic_arn: str | None = None
        self.queue_url: str | None = None
        self.originals: dict[str, dict[str, str]] = {}  # key -> version id -> sha256 of what was written
        self.clean_keys: set[str] = set()
        self.values: set[str] = set()  # every personal data value written: none may appear in any output
        self._clients: dict[str, Any] = {}

    # --- the world --------------------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def client(self, service: str) -> Any:
        import boto3

        if service not in self._clients:
            self._clients[service] = boto3.client(service, endpoint_url=self.aws_endpoint, region_name="us-east-1",
                                                  aws_access_key_id="drill", aws_secret_access_key="drill")
        return self._clients[service]

    def start(self) -> PiiDrill:
        from llmops.drill.backends import MotoServer, PrometheusServer, PushgatewayServer, wait_until

        self.workdir.mkdir(parents=True, exist_ok=True)
        # Each server is kept before it is started: `stop` stops what a failed start left running.
        if self.aws_endpoint is None:
            self.moto = MotoServer()
            self.moto.start()
            self.aws_endpoint = self.moto.url
        self._aws_resources()
        self.write_clean_logs()
        if self.with_signals:
            self.pushgateway = PushgatewayServer()
            self.pushgateway.start()
            (self.workdir / "prometheus").mkdir(exist_ok=True)
            self.prometheus = PrometheusServer(self.workdir / "prometheus",
                                               {"pushgateway": (self.pushgateway.port, {})}, self.rules())
            self.prometheus.start()
            wait_until(lambda: self.prometheus.query('up{job="pushgateway"} == 1'), 30,
                       "Prometheus's first scrape of the Pushgateway")
        self.write_targets(ENV)
        return self

    def stop(self) -> None:
        """Stop what was started (also after a start that failed half way); idempotent."""
        for name in ("prometheus", "pushgateway", "moto"):
            server = getattr(self, name)
            setattr(self, name, None)
            if server is not None:
                try:
                    server.stop()
                except Exception:  # noqa: BLE001 - not started (no process), or gone: stop the rest regardless
                    pass

    def _aws_resources(self) -> None:
        s3, sns, sqs = self.client("s3"), self.client("sns"), self.client("sqs")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.create_bucket(Bucket=self.quarantine, ObjectLockEnabledForBucket=True)
        self.topic_arn = sns.create_topic(Name=f"data-protection-{self.bucket}")["TopicArn"]
        self.queue_url = sqs.create_queue(QueueName=f"data-protection-{self.bucket}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def _put(self, name: str, text: str, gzipped: bool = False) -> str:
        import gzip
        import hashlib

        key = self.prefix + name
        body = gzip.compress(text.encode()) if gzipped else text.encode()
        put = self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)
        self.originals.setdefault(key, {})[put.get("VersionId", "null")] = hashlib.sha256(body).hexdigest()
        self.values |= values_in(text) | values_in(key)
        return key

    def write_clean_logs(self) -> None:
        """What the logger writes when it is configured right: no personal data."""
        for number in range(3):
            self.clean_keys.add(self._put(f"part-{number:04d}.jsonl", injected_lines(200, 10 + number, 0.0)))

    def inject(self) -> list[str]:
        """A misconfigured logger writes prompts unredacted: new objects with personal data, one of them compressed,
        one per user with the user's e-mail address in its key."""
        return [self._put(name, injected_lines(lines, seed, density), gzipped)
                for name, lines, seed, density, gzipped in INJECTED]

    # --- composition: targets and stack ------------------------------------------------------------------------

    def rules(self) -> list[dict[str, Any]]:
        """The stack's PiiDetectedInLogs rule, expression and labels as the stack renders them; `for:` shortened."""
        from components import config as stack_config
        from components.manifests.alert_rules import RuleContext, pii_alerts
        from components.paths import STACKS_DIR

        config = stack_config.load_file(STACKS_DIR / "Pulumi.dev.yaml")
        context = RuleContext(runbook_base_url=config.alerting.runbook_base_url, environment=ENV,
                              region=config.regions.primary)
        (rule,) = [dict(r) for r in pii_alerts(context) if r["alert"] == ALERT]
        self.stack_for = rule.get("for", STACK_FOR)
        self.expression = rule["expr"]
        rule["for"] = self.for_
        return [rule]

    def targets_sections(self) -> dict[str, Any]:
        return {"pii": {"quarantine_bucket": self.quarantine, "quarantine_prefix": "incidents",
                        "containment": CONTAINMENT, "data_protection_topic_arn": self.topic_arn, "scan_workers": 3}}

    def adapt_stack(self, document: dict[str, Any]) -> dict[str, Any]:
        return document  # the runbook reads nothing of the stack that the drill would have to change

    def write_targets(self, environment: str, directory: Path | None = None) -> Path:
        import yaml

        from components.paths import STACKS_DIR

        directory = directory or self.targets_dir
        directory.mkdir(parents=True, exist_ok=True)
        targets: dict[str, Any] = {
            "environment": environment, "stack_file": str(STACKS_DIR / "Pulumi.dev.yaml"),
            "aws": {"region": "us-east-1", "endpoint_url": self.aws_endpoint},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"), **self.targets_sections()}
        if self.pushgateway is not None:
            targets["pushgateway"] = self.pushgateway.url
        path = directory / f"{environment}.yaml"
        path.write_text(yaml.safe_dump(targets, sort_keys=False))
        return path

    def environment(self) -> dict[str, str]:
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "drill",
                "AWS_SECRET_ACCESS_KEY": "drill", "AWS_DEFAULT_REGION": "us-east-1", "LLMOPS_OPERATOR": "drill"}

    # --- the scheduled scan and what Prometheus sees -------------------------------------------------------------

    def scan_command(self) -> list[str]:
        assert self.pushgateway is not None
        return [sys.executable, "-m", "llmops.cli", "pii", "scan", self.source, "--output", "none",
                "--endpoint-url", str(self.aws_endpoint), "--region", "us-east-1", "--workers", "3",
                "--pushgateway", self.pushgateway.url, "--source-label", SOURCE_LABEL]

    def scan(self) -> subprocess.CompletedProcess[str]:
        """The scheduled scan, as its CronJob runs it: the real scanner in a process of its own."""
        return subprocess.run(self.scan_command(), capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, **self.environment()})

    def query(self, expr: str) -> list[dict[str, Any]]:
        assert self.prometheus is not None
        result: list[dict[str, Any]] = self.prometheus.query(expr)
        return result

    def findings(self) -> dict[str, float]:
        """The findings counter as Prometheus scraped it, by entity type."""
        return {r["metric"].get("entity_type", "?"): float(r["value"][1])
                for r in self.query(f'llmops_pii_findings_total{{source="{SOURCE_LABEL}"}}')}

    def last_success(self) -> float:
        found = self.query(f'max(llmops_pii_scan_last_success_timestamp_seconds{{source="{SOURCE_LABEL}"}})')
        return float(found[0]["value"][1]) if found else 0.0

    def alert(self, state: str = "firing") -> list[dict[str, Any]]:
        return self.query(f'ALERTS{{alertname="{ALERT}",alertstate="{state}"}}')

    # --- real state afterwards ------------------------------------------------------------------------------------

    def versions(self, bucket: str, prefix: str = "") -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for page in self.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                found.setdefault(version["Key"], []).append(version)
        return found

    def body(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        import gzip

        extra = {"VersionId": version_id} if version_id else {}
        data: bytes = self.client("s3").get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data

    def containment_problems(self, affected: set[str]) -> tuple[int, list[str]]:
        """How many original versions are held in quarantine, and what is wrong (nothing, when contained): every
        original version of an affected object copied once under legal hold with its checksum, only a clean
        redacted replacement left live; every other object untouched."""
        import hashlib

        from llmops.pii.detectors import detect

        s3, problems, held = self.client("s3"), [], 0
        where = f"incidents/{INCIDENT}/objects/{self.bucket}/"
        quarantined = self.versions(self.quarantine, f"incidents/{INCIDENT}/objects/")
        for number, (key, originals) in enumerate(sorted(self.originals.items())):
            name = f"object {number + 1}"  # never the key: one holds an e-mail address
            live = self.versions(self.bucket, key).get(key, [])
            if key not in affected:
                if {v["VersionId"] for v in live} != set(originals):
                    problems.append(f"{name}: clean, yet its versions changed")
                continue
            for version_id, sha in originals.items():
                copy_key = f"{where}{key}/{version_id}"
                if len(quarantined.get(copy_key, [])) != 1:
                    problems.append(f"{name}: version not quarantined exactly once")
                    continue
                head = s3.head_object(Bucket=self.quarantine, Key=copy_key)
                stored = s3.get_object(Bucket=self.quarantine, Key=copy_key)["Body"].read()
                if head.get("ObjectLockLegalHoldStatus") != "ON" or hashlib.sha256(stored).hexdigest() != sha:
                    problems.append(f"{name}: quarantined copy not under legal hold or not byte for byte")
                    continue
                held += 1
            if len(live) != 1 or live[0]["VersionId"] in originals:
                problems.append(f"{name}: {len(live)} live version(s); expected only the redacted replacement")
            elif detect(self.body(self.bucket, key)):
                problems.append(f"{name}: its replacement still holds personal data")
        return held, problems

    def notifications(self) -> list[dict[str, Any]]:
        assert self.queue_url is not None
        messages = self.client("sqs").receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                      WaitTimeSeconds=1).get("Messages", [])
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]

    def records_text(self) -> str:
        """What the run left for people: the audit log, the evidence, and the incident's records in the quarantine
        bucket (the journal, local and for resuming only, holds the real object keys, as designed)."""
        parts = [p.read_text(errors="replace") for d in ("audit", "evidence") for p in (self.workdir / d).rglob("*")
                 if p.is_file()]
        for key in self.versions(self.quarantine, f"incidents/{INCIDENT}/"):
            if key.endswith(".json"):
                parts.append(self.body(self.quarantine, key).decode(errors="replace"))
        return "\n".join(parts)

    def leaks(self, text: str) -> int:
        """How many of the personal data values written appear in the text."""
        return sum(1 for value in self.values if value in text)


def rehearse(drill: PiiDrill, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from llmops.drill.report import Tee

    out, err = Tee(sys.stdout), Tee(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        return _rehearse(drill, args, say, out, err)
    finally:
        sys.stdout, sys.stderr = out.stream, err.stream


def _rehearse(drill: PiiDrill, args: argparse.Namespace, say: Callable[[str], None], out: Tee, err: Tee) -> int:
    from llmops.drill.backends import wait_until
    from llmops.drill.report import DrillReport, finish, journal_check, render_html, run_approved
    from runbooks.engine import RunbookError
    from runbooks.engine.journal import Journal
    from runbooks.engine.runner import RunOptions
    from runbooks.launch import launch

    os.environ.update(drill.environment())
    report = DrillReport("pii-incident", "personal data written to logs")
    state_dir = drill.workdir / "state"
    assert drill.prometheus is not None and drill.pushgateway is not None
    scans: dict[str, int] = {}
    scanner_output: list[str] = []

    def scheduled_scan(name: str) -> subprocess.CompletedProcess[str]:
        began = time.time()
        done = drill.scan()
        scans[name] = done.returncode
        scanner_output.extend((done.stdout, done.stderr))
        summary = [line for line in done.stderr.splitlines() if line.startswith("pii:")]
        say(f"drill: {_clock(time.time())} scheduled scan ({name}) exit {done.returncode} in {time.time() - began:.1f} s"
            f"{': ' + summary[-1] if summary else ''}")
        return done

    def timed(name: str, text: str) -> None:
        report.mark(name, text)
        say(f"drill: {_clock(report.events[name])} +{report.since(name) or 0:5.1f} s {text}")

    say(f"drill: {drill.source} on moto {drill.aws_endpoint} holds {len(drill.clean_keys)} clean log objects; "
        f"Prometheus {drill.prometheus.url} scrapes the Pushgateway {drill.pushgateway.url} every 0.5 s and "
        f"evaluates the stack's {ALERT}: {drill.expression} for {drill.for_} (the stack: {drill.stack_for})")
    say(f"drill: the scheduled scan: {' '.join(drill.scan_command()[1:])}")
    if scheduled_scan("clean logs").returncode != 0:
        say("drill: the scan of the clean logs did not exit 0 (nothing found); the drill cannot start from clean logs")
        return 1
    try:
        wait_until(lambda: drill.findings() and drill.last_success() > 0, 60,
                   "Prometheus to scrape the first scan's counters")
    except TimeoutError as error:
        say(f"drill: {error}")
        return 1
    say(f"drill: Prometheus sees {len(drill.findings())} findings series at {sum(drill.findings().values()):g}; "
        f"{ALERT} is {'firing' if drill.alert() else 'silent'}")

    keys = drill.inject()
    report.mark("injected", f"personal data written to {len(keys)} new log objects")
    say(f"drill: {_clock(report.events['injected'])} injected: a misconfigured logger wrote {len(keys)} objects with "
        f"personal data under {drill.source} (one gzip, one with an e-mail address in its key)")
    detected = scheduled_scan("after the injection")
    if detected.returncode == 1:
        timed("scan_found", "the scheduled scan found personal data and pushed its counts")
    deadline = time.time() + args.timeout
    while time.time() < deadline and "alert_firing" not in report.events:
        if "prometheus_saw" not in report.events and sum(drill.findings().values()) > 0:
            counts = {k: int(v) for k, v in sorted(drill.findings().items()) if v}
            timed("prometheus_saw", f"Prometheus scraped the findings counter ({counts})")
        if "alert_pending" not in report.events and drill.alert("pending"):
            timed("alert_pending", f"{ALERT} pending")
        if drill.alert():
            kinds = sorted({a["metric"].get("entity_type", "?") for a in drill.alert()})
            timed("alert_firing", f"{ALERT} fired ({len(kinds)} entity types: {', '.join(kinds)})")
        time.sleep(0.2)
    fired = "alert_firing" in report.events
    report.objective(f"{ALERT} fires", f"within {args.timeout:g} s of the injection",
                     f"after {report.since('alert_firing'):.1f} s" if fired else "never", fired)
    affected = set(keys)
    result = None
    if fired:
        params: dict[str, str | None] = {"incident": INCIDENT, "source": drill.source, "since": None,
                                         "until": _iso(time.time() + 1)}
        say(f"drill: {_clock(time.time())} pii-incident --incident {INCIDENT} --source {drill.source} "
            f"--until {params['until']}")
        try:
            result = run_approved(report, "pii-incident", ENV, params, state_dir, say)
            if result.exit_code == 3 and result.run_id is not None:
                report.events["runbook_paused"] = report.events.pop("runbook_finished")
                report.labels.pop("runbook_finished", None)
                report.labels["runbook_paused"] = "paused for the deletion gate (exit 3)"
                report.exit_codes["runbook (paused at the gate)"] = 3
                say(f"drill: {_clock(report.events['runbook_paused'])} +{report.since('runbook_paused'):5.1f} s "
                    "the run paused before delete-originals (exit 3)")
                waits = [e for e in Journal(state_dir, result.run_id).events() if e.get("event") == "awaiting_approval"]
                gate = waits[-1]["gate_hash"]
                approval = (f"gate {gate} of {waits[-1]['step']} ({result.run_id}) approved by the drill "
                            f"(--resume {result.run_id} --approve {gate})")
                say(f"drill: {approval}")
                report.mark("gate_approved", "the deletion gate approved by the drill")
                result = launch("pii-incident", ENV, {}, RunOptions(resume=result.run_id, approve=gate),
                                lambda message: say(f"  {message}"))
                timed("runbook_finished", f"pii-incident finished ({result.status})")
                for step in result.steps:
                    say(f"  {step['step']:<22} {step['outcome']:<16} {step.get('seconds') or 0:6.2f} s")
                report.steps.clear()
                report.add_run(result, journal_check(state_dir, result.run_id), [approval])
        except RunbookError as error:
            say(f"drill: the pii-incident runbook refused: {error}")
            report.exit_codes["runbook"] = error.exit_code
        code = report.exit_codes.get("runbook")
        report.objective("pii-incident contains the incident", "paused at the deletion gate (3), then succeeded (0)",
                         f"{result.status}, exit code {code}" if result else f"refused, exit code {code}",
                         result is not None and code == 0 and report.exit_codes.get("runbook (paused at the gate)") == 3)
        held, problems = drill.containment_problems(affected)
        versions = sum(len(drill.originals[k]) for k in affected)
        report.objective("affected objects quarantined, originals gone, clean replacements live",
                         f"{versions} version(s) of {len(affected)} object(s) under legal hold byte for byte; "
                         f"{len(drill.clean_keys)} clean object(s) untouched",
                         "; ".join(problems) if problems else f"{held} version(s) held, clean objects untouched",
                         not problems and held == versions)
        say(f"drill: {_clock(time.time())} quarantine: {held} of {versions} original version(s) held; "
            f"{'; '.join(problems) or 'every clean object untouched, every replacement clean'}")
        before = drill.findings()
        rescan_began = time.time()
        rescan = scheduled_scan("re-scan after containment")
        try:
            wait_until(lambda: drill.last_success() >= int(rescan_began) - 1 and drill.findings() == before
                       and drill.last_success() > 0, args.timeout, "Prometheus to scrape the re-scan")
            seen = rescan.returncode == 0
        except TimeoutError as error:
            say(f"drill: {error}")
            seen = False
        report.objective("a re-scan of the source prefix finds nothing", "scanner exit 0; the counter Prometheus "
                         "scrapes does not grow", f"exit {rescan.returncode}; counter "
                         f"{'unchanged' if drill.findings() == before else 'changed'}", seen)
        notices = drill.notifications()
        run_counts = next((s.get("outputs") or {} for s in (result.steps if result else []) if s["step"] == "report"),
                          {}).get("counts")
        for notice in notices:  # keys as every record shows them: personal data in a key as a placeholder
            say(f"drill: the data-protection topic's message (from its queue): {notice.get('event')}, objects "
                f"{', '.join(a['key'].removeprefix(drill.prefix) for a in notice.get('affected_objects', []))}; "
                f"counts {notice.get('counts')}")
        notified = len(notices) == 1 and notices[0].get("event") == "pii-incident-contained"
        report.objective("the data-protection contact is notified", "one message, counts only",
                         f"{len(notices)} message(s)" + (f": {sum(notices[0].get('counts', {}).values())} findings in "
                                                         f"{len(notices[0].get('affected_objects', []))} objects"
                                                         if notices else ""),
                         notified and (run_counts is None or notices[0].get("counts") == run_counts))
        if all(o.passed for o in report.objectives):
            timed("mitigation_verified", "mitigation verified: quarantined, re-scan clean in Prometheus, notified")
        leaks_checked = "\n".join([out.seen.getvalue(), err.seen.getvalue(), *scanner_output, drill.records_text(),
                                   json.dumps(notices), drill.pushgateway.metrics()])
        report.objective("the run's journal is consistent", "every step started finished once, run finished",
                         "consistent" if report.journal.get("consistent") else
                         "; ".join(report.journal.get("problems", ["no run"])), bool(report.journal.get("consistent")))
    else:
        leaks_checked = "\n".join([out.seen.getvalue(), err.seen.getvalue(), *scanner_output])
    report.figures.update({
        f"{ALERT} for": f"{drill.for_} in the drill (the stack: {drill.stack_for})",
        f"{ALERT} expression": drill.expression,
        "alert resolution": "not awaited: the expression looks back 15 m (increase over [15m]), so the alert "
                            "resolves 15 m after the last new finding; the drill checks instead that the re-scan "
                            "added no finding in Prometheus",
        "scrape and rule evaluation interval": "0.5 s",
        "scheduled scan": " ".join(["llmops", *drill.scan_command()[3:]]),
        "scan exit codes": scans, "containment": CONTAINMENT_WHY,
        "objects injected": len(affected), "personal data values seeded": len(drill.values),
        "findings in Prometheus": {k: int(v) for k, v in sorted(drill.findings().items()) if v}})
    # The report itself must hold no value either: checked as it will be written (then the files, by the tests).
    draft = report.to_json()
    draft["html"] = ""
    text = leaks_checked + json.dumps(draft, default=str) + render_html({**draft, "passed": False})
    leaked = drill.leaks(text)
    report.objective("no personal data value in any output", "none of the values written, in the drill's stdout and "
                     "stderr, the scanner's output, the report, audit log, evidence, incident records, notification "
                     "and metrics", f"{leaked} of {len(drill.values)} values found in {len(text)} characters", not leaked)
    return finish(report, say, args.report_dir)

