"""The shadow drill: a candidate release shadowed on mirrored traffic, compared with what production answered to the
same requests, and the release controller gating that candidate's canary on the comparison.

The world is the canary drill's (staging's `chat-small` in a Kubernetes API, stable and canary traffic split by the
route and scraped by Debian's Prometheus, the MLflow store, moto, Debian's Pushgateway) with three more things: the
canary's own Deployment as staging renders it (its `llmops.io/release-id` annotation names the candidate), the
Pushgateway scraped by Prometheus as kube-prometheus-stack scrapes it (honor_labels), and a request-log bucket on moto.

The candidate's canary is healthy on its own signals: without the shadow comparison the controller would promote it.
At the injection the candidate is shadowed: for each request of the last hour the stable release's request-log record,
and for the mirrored share of them (the staging shadow's samplePercent) the candidate's record of the same request id
-- gzipped JSON lines under `requests/YYYY/MM/DD/HH/<uuid>.jsonl.gz`, as Fluent Bit's S3 output writes them. The
candidate is worse (`--scenario worse`: about 30 % more completion tokens, several points more refusals, a slower p95)
or as good as stable (`--scenario good`, the control). Then, as on-call would, `llmops release compare ... --from
s3://... --pushgateway ... --output json` in a process of its own; the drill waits for Prometheus to scrape the
verdict, then runs the release controller's analysis every interval until it decides: it must hold the worse
candidate's canary (naming the failed gates) and promote the good one. No prompt or answer text may reach the drill's
output or its report.

`llmops drill shadow [--scenario worse|good] [--requests 3000] [--holds 3] [--timeout 120]`.

Only the standard library at the top: the CLI imports this module when it builds its parser.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.drill import arguments

if TYPE_CHECKING:
    from llmops.drill.report import Tee

HELP = ("a worse candidate shadowed on mirrored traffic: `llmops release compare` refuses promotion with the figures "
        "and the release controller holds that candidate's canary (--scenario good: promotable, promoted)")
STARTING = ("drill: starting local backends (MLflow store, Kubernetes API, Prometheus scraping the Pushgateway, moto "
            "with a request-log bucket) ...")
KEPT = "request logs' copy, stack file, targets, audit log and Prometheus data"

ENV = "drill"
MODEL = "chat-small"
NAMESPACE = "serving"
BUCKET = "llmops-drill-request-logs"
PREFIX = "requests"  # components/manifests/request_logs.PREFIX: the only prefix Fluent Bit writes
SCENARIOS = ("worse", "good")
REFUSAL = "I'm sorry, but I can't help with that request."  # matches refusal-v1's first pattern
# Every prompt and answer the drill writes names this made-up product: a test (and the drill itself) looks for it, and
# for the refusal, in every output. None of the drill's own words contain it.
TEXT_MARK = "Quillfeather"
TEXT_MARKERS = (TEXT_MARK, REFUSAL[:22])
TASKS = ("reset a password", "export an invoice", "rotate an API key", "add a team member", "change the billing plan",
         "set up single sign-on", "download last month's usage", "delete a workspace", "enable audit logging",
         "connect a data source")
STABLE_REFUSAL_RATE = 0.01
CHUNK_SECONDS = 300  # how long one Fluent Bit chunk collects records before its upload


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", choices=SCENARIOS, default="worse",
                        help="worse: the candidate spends ~30 %% more tokens, refuses more and is slower (the "
                             "comparison must refuse and the controller hold); good: as good as stable (promoted)")
    parser.add_argument("--requests", type=arguments.count, default=3000,
                        help="requests of the last hour in the logs (the shadow gets the staging samplePercent)")
    parser.add_argument("--rate", type=arguments.rate, default=40.0, help="live requests per second, both tracks (default 40)")
    parser.add_argument("--holds", type=arguments.count, default=3,
                        help="analyses the controller must hold the canary through (worse; default 3)")
    parser.add_argument("--seed", type=int, default=18, help="the request logs' seed (default 18)")
    parser.add_argument("--timeout", type=arguments.positive_seconds, default=120.0,
                        help="give up after this many seconds (exit 1)")


def make_drill(args: argparse.Namespace) -> ShadowWorld:
    return ShadowWorld(Path(tempfile.mkdtemp(prefix="llmops-shadow-drill-")), rate=args.rate)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S.%f")[:-4]


# --- the request logs ---------------------------------------------------------------------------------------------

def _answer(rng: random.Random, task: str, refused: bool) -> str:
    if refused:
        return REFUSAL
    return (f"To {task} in {TEXT_MARK}, open Settings, choose {rng.choice(('Account', 'Workspace', 'Billing'))} and "
            "follow the steps shown.")


def mirrored_records(rng: random.Random, *, stable_release: str, candidate_release: str, scenario: str,
                     requests: int, start: float, end: float, sample_percent: float,
                     model: str = MODEL) -> list[dict[str, Any]]:
    """Request-log records as the serving containers write them: the stable release's for every request, and the
    candidate's (track shadow) for the mirrored share, with the same request id. `worse`: its answers ~30 % longer,
    refusing ~6 points more often and ~45 % slower; `good`: as stable's, within noise."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: expected one of {', '.join(SCENARIOS)}")
    records = []
    for ts in sorted(rng.uniform(start, end) for _ in range(requests)):
        task = rng.choice(TASKS)
        request_id = f"req-{rng.getrandbits(64):016x}"
        prompt = f"How do I {task} in {TEXT_MARK}? (ticket {rng.randint(1000, 9999)})"
        prompt_tokens = rng.randint(40, 400)
        tokens = rng.randint(40, 400)
        latency = 600 * math.exp(rng.gauss(0, 0.35)) + 4 * tokens
        refused = rng.random() < STABLE_REFUSAL_RATE
        records.append({"ts": round(ts, 3), "model": model, "track": "stable", "release": stable_release,
                        "request_id": request_id, "prompt": prompt, "answer": _answer(rng, task, refused),
                        "prompt_tokens": prompt_tokens, "completion_tokens": tokens, "latency_ms": round(latency, 1)})
        if rng.random() * 100 >= sample_percent:
            continue
        if scenario == "worse":
            shadow_tokens = round(tokens * 1.3 * math.exp(rng.gauss(0, 0.08)))
            shadow_latency = latency * 1.45 * math.exp(rng.gauss(0, 0.05))
            shadow_refused = refused or rng.random() < 0.06
        else:
            shadow_tokens = max(1, round(tokens * math.exp(rng.gauss(0, 0.05))))
            shadow_latency = latency * math.exp(rng.gauss(0, 0.03))
            shadow_refused = refused
        records.append({"ts": round(ts + rng.uniform(0.001, 0.05), 3), "model": model, "track": "shadow",
                        "release": candidate_release, "request_id": request_id, "prompt": prompt,
                        "answer": _answer(rng, task, shadow_refused), "prompt_tokens": prompt_tokens,
                        "completion_tokens": shadow_tokens, "latency_ms": round(shadow_latency, 1)})
    return records


def fluent_bit_objects(records: Iterable[dict[str, Any]]) -> dict[str, bytes]:
    """Records as Fluent Bit's S3 output uploads them: per pod's track and chunk (CHUNK_SECONDS), gzipped JSON lines
    (each record's own line) under `requests/YYYY/MM/DD/HH/<uuid>.jsonl.gz`, the hour of the chunk's first record."""
    chunks: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in records:
        chunks.setdefault((record["track"], int(record["ts"] // CHUNK_SECONDS)), []).append(record)
    objects = {}
    for (_, _), chunk in sorted(chunks.items(), key=lambda item: (item[0][1], item[0][0])):
        hour = datetime.fromtimestamp(chunk[0]["ts"], timezone.utc).strftime("%Y/%m/%d/%H")
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in chunk).encode()
        objects[f"{PREFIX}/{hour}/{uuid.uuid4()}.jsonl.gz"] = gzip.compress(body)
    return objects


# --- what the world adds to the canary drill's ------------------------------------------------------------------

def rendered_objects(stack_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """chat-small's stable Deployment, canary Deployment and HTTPRoute as the staging stack (or the file) renders
    them, by `<kind>/<name>`."""
    from components.paths import PROJECT_ROOT
    from llmops.offline.engine import run_program
    from llmops.offline.project import load_project, load_stack, load_stack_file

    project = load_project(PROJECT_ROOT)
    settings = (load_stack(project, "staging") if stack_file is None else
                load_stack_file(project, stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml"), stack_file))
    return canary_objects(run_program(project, settings).kubernetes_objects())


def canary_objects(resources: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """From a plan's Kubernetes objects: chat-small's Deployments (stable, canary, shadow) and HTTPRoute."""
    wanted = {("Deployment", MODEL), ("Deployment", f"{MODEL}-canary"), ("Deployment", f"{MODEL}-shadow"),
              ("HTTPRoute", MODEL)}
    return {f"{r.inputs['kind']}/{r.inputs['metadata']['name']}": copy.deepcopy(r.inputs) for r in resources
            if (r.inputs["kind"], r.inputs["metadata"]["name"]) in wanted}


def release_id(deployment: dict[str, Any]) -> str:
    from components.manifests.vllm import RELEASE_ANNOTATION

    return str(deployment["metadata"]["annotations"][RELEASE_ANNOTATION])


def seed_deployment(world: Any, deployment: dict[str, Any]) -> None:
    """A Deployment (the canary's) into the world's Kubernetes API, rolled out; replaces one of the same name."""
    world.k8s.seed(copy.deepcopy(deployment), None)


def remove_deployment(world: Any, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        world.k8s.apps.delete_namespaced_deployment(name, NAMESPACE)
    except ApiException:
        pass


def scrape_pushgateway(world: Any, scraped: bool = True, timeout: float = 60) -> None:
    """Prometheus scrapes (or, scraped=False, no longer scrapes) the world's Pushgateway, as kube-prometheus-stack does
    (honor_labels: a pushed job label is kept); its configuration rewritten, then SIGHUP (reloaded in place)."""
    import yaml

    from llmops.drill.backends import wait_until

    path = world.prometheus.workdir / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    jobs = [job for job in config["scrape_configs"] if job["job_name"] != "pushgateway"]
    if scraped:
        jobs.append({"job_name": "pushgateway", "honor_labels": True,
                     "static_configs": [{"targets": [f"127.0.0.1:{world.pushgateway.port}"]}]})
    path.write_text(yaml.safe_dump({**config, "scrape_configs": jobs}))
    os.kill(world.prometheus.process.pid, signal.SIGHUP)
    if scraped:
        wait_until(lambda: world.prometheus.query('up{job="pushgateway"} == 1'), timeout,
                   "Prometheus to reload scraping the Pushgateway")
        return

    def dropped() -> bool:  # a removed job's last samples stay queryable a while: its target is what goes at once
        with urllib.request.urlopen(f"{world.prometheus.url}/api/v1/targets?state=active", timeout=5) as response:
            targets = json.load(response)["data"]["activeTargets"]
        return not any(t.get("scrapePool") == "pushgateway" for t in targets)
    wait_until(dropped, timeout, "Prometheus to reload without the Pushgateway")


def push_verdict(pushgateway_url: str, *, primary_release: str, shadow_release: str, promotable: bool,
                 at: float | None = None, pairs: int = 300, model: str = MODEL, seed: int = 5) -> bool:
    """A comparison pushed as `llmops release compare` pushes it (the same join, figures, default gates and export) on
    generated logs: a candidate as good as the primary (promotable) or worse; `at`: when it says it ran. Returns its
    verdict."""
    from components.config.rollout import ShadowGates
    from llmops.release.shadow.compare import figures, join
    from llmops.release.shadow.export import Comparison, push, registry_for
    from llmops.release.shadow.gates import evaluate
    from llmops.release.shadow.refusal import load_refusal

    now = time.time() if at is None else at
    records = mirrored_records(random.Random(seed), stable_release=primary_release, candidate_release=shadow_release,
                               scenario="good" if promotable else "worse", requests=pairs, start=now - 3000,
                               end=now - 60, sample_percent=100, model=model)
    joined = join(records, model, now - 3600, now, load_refusal().refuses)
    comparisons = []
    for (primary, shadow), found in joined.groups().items():
        measured = figures(primary, shadow, found)
        comparisons.append(Comparison(measured, evaluate(measured, ShadowGates())))
    push(pushgateway_url, model, registry_for(joined, comparisons, at=now))
    return all(c.promotable for c in comparisons)


def forget_verdicts(pushgateway_url: str, model: str = MODEL) -> None:
    """The model's pushed comparison deleted from the Pushgateway (its group: job llmops_shadow_compare, model)."""
    from llmops.release.shadow.export import JOB

    request = urllib.request.Request(f"{pushgateway_url}/metrics/job/{JOB}/model/{model}", method="DELETE")
    with urllib.request.urlopen(request, timeout=10):
        pass


def prometheus_verdict(world: Any, candidate: str, model: str = MODEL) -> float | None:
    found = world.prometheus.query(f'llmops_shadow_verdict{{model="{model}",shadow_release="{candidate}"}}')
    return min(float(r["value"][1]) for r in found) if found else None


class ShadowWorld:
    """The canary drill's world, the canary's Deployment in its Kubernetes API, the Pushgateway scraped by its
    Prometheus, and a request-log bucket on its moto."""

    def __init__(self, workdir: Path, *, rate: float = 40.0) -> None:
        self.workdir, self.rate = workdir, rate
        self.canary: Any = None

    def start(self) -> ShadowWorld:
        from llmops.drill.canary_drill import CanaryDrill

        self.objects = rendered_objects()
        self.canary = CanaryDrill(self.workdir, objects=(self.objects[f"Deployment/{MODEL}"],
                                                         self.objects[f"HTTPRoute/{MODEL}"]), rate=self.rate)
        self.canary.start()
        seed_deployment(self.canary, self.objects[f"Deployment/{MODEL}-canary"])
        scrape_pushgateway(self.canary)
        self.canary._aws("s3").create_bucket(Bucket=BUCKET)
        return self

    def stop(self) -> None:
        if self.canary is not None:
            self.canary.stop()

    def environment(self) -> dict[str, str]:
        return dict(self.canary.environment())

    @property
    def stable_release(self) -> str:
        return release_id(self.objects[f"Deployment/{MODEL}"])

    def candidate_release(self) -> str:
        """The canary's release id, read from its Deployment as the controller reads it."""
        deployment = self.canary.k8s.apps.read_namespaced_deployment(f"{MODEL}-canary", NAMESPACE)
        return release_id(self.canary.k8s.apps.api_client.sanitize_for_serialization(deployment))

    def sample_percent(self) -> float:
        from components import config as stack_config

        model = next(m for m in stack_config.load_file(self.canary.stack_file).models if m.name == MODEL)
        return float(model.shadow.sample_percent) if model.shadow is not None else 10.0

    def ship(self, objects: dict[str, bytes]) -> None:
        s3 = self.canary._aws("s3")
        for key, body in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="application/json",
                          ContentEncoding="gzip")

    def compare_command(self) -> list[str]:
        return [sys.executable, "-m", "llmops.cli", "release", "compare", "--env", ENV, "--model", MODEL,
                "--window", "1h", "--from", f"s3://{BUCKET}/{PREFIX}/", "--pushgateway", self.canary.pushgateway.url,
                "--output", "json"]

    def compare(self, timeout: float) -> subprocess.CompletedProcess[str]:
        """`llmops release compare` as on-call runs it: a process of its own."""
        return subprocess.run(self.compare_command(), capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, **self.environment()})


# --- the rehearsal --------------------------------------------------------------------------------------------------

def rehearse(world: ShadowWorld, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from llmops.drill.report import Tee

    out = Tee(sys.stdout)
    sys.stdout = out
    try:
        return _rehearse(world, args, say, out)
    finally:
        sys.stdout = out.stream


def _pct(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"


def _rehearse(world: ShadowWorld, args: argparse.Namespace, say: Callable[[str], None], out: Tee) -> int:
    from components.manifests.route import canary_backend
    from llmops.controller.controller import Controller, Outcome
    from llmops.drill.backends import wait_until
    from llmops.drill.report import DrillReport, finish, journal_check
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster
    from runbooks.adapters.mlflow_registry import MlflowRegistry
    from runbooks.adapters.prometheus import Prometheus
    from runbooks.targets import load_targets

    worse = args.scenario == "worse"
    drill = world.canary
    os.environ.update(world.environment())
    report = DrillReport("shadow", f"{args.scenario} candidate shadowed", detected_by="compared")
    began = time.time()

    def moment(name: str, text: str, at: float | None = None) -> None:
        report.mark(name, text, at)
        say(f"drill: {_clock(report.events[name])} +{report.since(name) or 0:5.1f} s {text}")

    drill.wait_until_degraded()
    candidate, stable = world.candidate_release(), world.stable_release
    weights = drill.route_weights()
    canary_name = canary_backend(MODEL)
    say(f"drill: {MODEL}: stable release {stable} and canary release {candidate} serve {args.rate:g} requests/s split "
        f"by the route {weights}; the canary is healthy on its own signals")

    # The candidate shadowed: an hour of mirrored traffic in the request logs, as Fluent Bit ships it.
    end = time.time() - 30
    records = mirrored_records(random.Random(args.seed), stable_release=stable, candidate_release=candidate,
                               scenario=args.scenario, requests=args.requests, start=end - 3300, end=end,
                               sample_percent=world.sample_percent())
    objects = fluent_bit_objects(records)
    world.ship(objects)
    shadowed = sum(1 for r in records if r["track"] == "shadow")
    moment("injected", f"candidate {candidate} shadowed ({args.scenario}): {len(records) - shadowed} stable and "
                       f"{shadowed} shadow records in {len(objects)} objects under s3://{BUCKET}/{PREFIX}/")

    # The comparison, as on-call runs it.
    say(f"drill: {_clock(time.time())} llmops release compare --env {ENV} --model {MODEL} --window 1h --from "
        f"s3://{BUCKET}/{PREFIX}/ --pushgateway {drill.pushgateway.url} --output json")
    try:
        done = world.compare(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        say(f"drill: the comparison did not finish within {args.timeout:g} s")
        report.objective("the comparison runs", f"within {args.timeout:g} s", "timed out", False)
        return finish(report, say, args.report_dir)
    report.exit_codes["compare"] = done.returncode
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {}
    verdict = result.get("verdict", "none")
    comparison = next((c for c in result.get("comparisons", []) if c.get("shadow_release") == candidate), None)
    failed = [g["name"] for g in (comparison or {}).get("gates", []) if not g.get("passed")]
    moment("compared", f"the comparison said {verdict} (exit {done.returncode})"
                       + (f": failed gates {', '.join(failed)}" if failed else ""))
    if comparison is None:
        say(f"drill: no comparison of {candidate} in the output; stderr: {done.stderr.strip()[-400:]}")
    else:
        p, s = comparison["primary"], comparison["shadow"]
        ratio = comparison.get("token_ratio")
        report.figures.update({
            "candidate release": candidate, "stable release": stable, "pairs": comparison["pairs"],
            "tokens": _pct(None if ratio is None else ratio - 1, signed=True),
            "p95 latency stable": f"{p['latency_seconds']['0.95']:.3f} s",
            "p95 latency candidate": f"{s['latency_seconds']['0.95']:.3f} s",
            "refusal rate stable": _pct(p["refusal_rate"]), "refusal rate candidate": _pct(s["refusal_rate"]),
            "verdict": verdict, "gates": [g["text"] for g in comparison["gates"]],
            "records": result.get("records"), "objects": len(objects),
            "primary not mirrored": result.get("primary_unmatched")})
        for gate in comparison["gates"]:
            say(f"drill:   {'ok  ' if gate['passed'] else 'FAIL'} {gate['text']}")
    if worse:
        wanted = {"tokens", "latency", "refusals"}
        report.objective("the comparison refuses promotion naming the failed gates",
                         "exit 1, refuse promotion: tokens, latency, refusals",
                         f"exit {done.returncode}, {verdict}" + (f": {', '.join(failed)}" if failed else ""),
                         done.returncode == 1 and verdict == "refuse promotion" and wanted <= set(failed))
    else:
        report.objective("the comparison finds the candidate promotable", "exit 0, promotable",
                         f"exit {done.returncode}, {verdict}" + (f": failed {', '.join(failed)}" if failed else ""),
                         done.returncode == 0 and verdict == "promotable")

    # What the controller reads: the verdict, scraped from the Pushgateway.
    expected = 0.0 if worse else 1.0
    try:
        wait_until(lambda: prometheus_verdict(drill, candidate) == expected, args.timeout,
                   f"Prometheus to see llmops_shadow_verdict {expected:g} for {candidate}", interval=0.2)
        moment("verdict_seen", f"Prometheus sees llmops_shadow_verdict{{shadow_release=\"{candidate}\"}} {expected:g}")
    except TimeoutError as error:
        say(f"drill: {error}")
    seen = prometheus_verdict(drill, candidate)
    report.objective("Prometheus sees the verdict for the candidate", f"llmops_shadow_verdict == {expected:g}",
                     "absent" if seen is None else f"{seen:g}", seen == expected)

    # The release controller, every interval, until it decides.
    targets = load_targets(ENV)
    assert targets.registry and targets.kubernetes and targets.prometheus
    controller = Controller(ENV, targets, Prometheus(targets.prometheus.url),
                            MlflowRegistry(targets.registry.tracking_uri),
                            KubernetesCluster(host=targets.kubernetes.host), progress=lambda m: say(f"  {m}"))
    patches = drill.route_patches()
    holds: list[Outcome] = []
    outcomes: list[Outcome] = []
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        tick = time.monotonic()
        model = controller.models(MODEL)[0]
        assert model.rollout is not None
        outcome = controller.analyze(model)
        outcomes.append(outcome)
        decision = outcome.decision
        reason = str(decision.get("reason", ""))
        say(f"drill: {_clock(outcome.at)} +{outcome.at - report.events['injected']:5.1f} s "
            f"{decision.get('action'):<9} -> {outcome.acted:<10} {reason}")
        if decision.get("action") == "hold" and "shadow comparison" in reason:
            holds.append(outcome)
            if len(holds) == 1:
                moment("held", "the controller held the canary on the shadow comparison", outcome.at)
        if outcome.acted in ("promoted", "rolled-back", "paused", "failed", "awaiting-approval"):
            if outcome.acted == "promoted":
                moment("promoted", f"the controller promoted the canary to {decision.get('target_weight')} %",
                       outcome.at)
            break
        if worse and len(holds) >= args.holds:
            break
        time.sleep(max(0.0, model.rollout.interval_seconds - (time.monotonic() - tick)))
    last = outcomes[-1] if outcomes else None
    now_weights = drill.route_weights()
    judged = holds[-1] if holds else last
    evidence = judged.decision.get("evidence", []) if judged is not None else []
    verdicts = ", ".join(f"{e.get('metric')} {e.get('verdict')}" for e in evidence) or "no evidence"
    if worse:
        held = (len(holds) >= args.holds and not any(o.acted == "promoted" for o in outcomes)
                and now_weights == weights and drill.route_patches() == patches)
        hold_reason = str(holds[-1].decision.get("reason")) if holds else ""
        if held:
            moment("mitigation_verified", f"held through {len(holds)} analyses; the canary still at "
                                          f"{now_weights.get(canary_name)} %")
        report.objective("the controller holds the candidate's canary",
                         f"hold through {args.holds} analyses naming the shadow comparison; no promotion, route "
                         "unchanged",
                         f"{len(holds)} holds, route {now_weights}" + (f"; reason: {hold_reason}" if holds else
                                                                       f"; last: {last.acted if last else 'none'}"),
                         held and f"release {candidate}" in hold_reason
                         and all(g in hold_reason for g in ("latency", "refusals", "tokens")))
        report.objective("the canary's own signals are healthy", "no check failing when the controller held",
                         verdicts, bool(holds) and not any(e.get("verdict") == "fail" for e in evidence))
        report.figures["hold reason"] = hold_reason
    else:
        promoted = last is not None and last.acted == "promoted"
        report.objective("the controller promotes the candidate's canary", "promoted, no shadow hold",
                         f"{last.acted if last else 'none'}, {len(holds)} shadow holds, route {now_weights}",
                         promoted and not holds)
        if promoted and last is not None and last.run_id:
            report.run_id = last.run_id
            report.journal = journal_check(drill.workdir / "state", last.run_id)
            report.journal.pop("records", None)
            report.approvals.append("promote taken by the release controller without a person (allowAutomatic)")
            report.objective("the run's journal is consistent", "every step started finished once, run finished",
                             "consistent" if report.journal.get("consistent") else
                             "; ".join(report.journal.get("problems", [])), bool(report.journal.get("consistent")))
    report.figures.update({"route before": weights, "route after": now_weights, "analyses": len(outcomes),
                           "live rate": f"{args.rate:g} requests/s", "seconds": round(time.time() - began, 1)})

    # No prompt or answer text anywhere the drill wrote: its stdout and the report (the compare process's output too).
    written = out.seen.getvalue() + json.dumps(report.to_json(), default=str) + done.stdout + done.stderr
    leaks = [marker for marker in TEXT_MARKERS if marker in written]
    report.objective("no prompt or answer text in the output or the report", "none",
                     f"found: {', '.join(repr(m) for m in leaks)}" if leaks else "none", not leaks)
    return finish(report, say, args.report_dir)
