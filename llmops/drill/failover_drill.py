"""`llmops drill failover`: region us-east-1 goes down on real local backends and the failover runbook moves traffic
to the warm standby, us-west-2 -- the prod stack's two regions, as its plan renders them.

The world (the one tests/runbooks/failover_world.py builds for the runbook's tests): moto's Route53 with the prod
stack's failover records (PRIMARY us-east-1, SECONDARY us-west-2) and health checks, the models' artifacts in the
primary's bucket and their replicas in the standby's (moto S3), MLflow's store naming each version's source, and one
Kubernetes API (kmock) per region seeded with the Deployments the prod plan renders there, ready, on Ready GPU nodes.
With signals (the default): per region and model a vLLM-like endpoint (`/v1/models` as Route53's check reads it,
`/metrics` with vLLM's series, `/v1/chat/completions`), per region Debian's Prometheus scraping that region's
endpoints with the stack's own `VllmMetricsAbsent` rule (its `for:` shortened for the drill), and users' requests at
a steady rate to whichever regional endpoint the PRIMARY record names.

The fault: every endpoint in us-east-1 answers 503 (no ready pod behind the gateway), its Deployments lose their ready
replicas and its GPU nodes go NotReady. The drill records when its probe of the health path failed, when Prometheus
took the alert pending and when it fired; runs `failover --from us-east-1 --to us-west-2` with the plan printed and
approved by the drill; and verifies against real state: the failover roles swapped in moto, DNS answering with
us-west-2's endpoints, the stack file's `activeRegion`, us-west-2's Prometheus seeing every model served without
errors, and users' requests answered there.

The module's top level imports only the standard library: the CLI imports it to build its parser.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from llmops.drill import arguments

HELP = ("region us-east-1 goes down; the VllmMetricsAbsent alert fires on real Prometheus, the failover runbook "
        "moves traffic to us-west-2 (moto Route53 and S3, kmock, MLflow; needs Debian's prometheus)")
STARTING = ("drill: starting local backends (moto Route53 and S3, MLflow store, a Kubernetes API per region, "
            "vLLM-like endpoints and Prometheus per region) and rendering the prod stack's Deployments ...")
KEPT = "stack file, targets, evidence, audit log, journal and Prometheus data"

ENV = "drill"
STACK = "prod"
PRIMARY, STANDBY = "us-east-1", "us-west-2"
NAMESPACE = "serving"
ALERT = "VllmMetricsAbsent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=arguments.positive_seconds, default=120.0,
                        help="give up waiting for the alert, or for the mitigation, after this many seconds (exit 1)")
    parser.add_argument("--rate", type=arguments.rate, default=10.0, help="users' requests per second, per model (default 10)")
    parser.add_argument("--alert-for", type=arguments.seconds_or_zero, default=2.0,
                        help=f"the {ALERT} rule's `for:` in the drill, seconds (the stack's is 10m; default 2)")


def make_drill(args: argparse.Namespace) -> FailoverDrill:
    return FailoverDrill(Path(tempfile.mkdtemp(prefix="llmops-failover-drill-")), rate=args.rate,
                         alert_for_seconds=args.alert_for)


# --- the world -------------------------------------------------------------------------------------------------------

def prod_deployments(regions: dict[str, str], models: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """region -> model -> the Deployment exactly as the prod stack renders it there (the offline plan, ~5 s)."""

    from components.paths import PROJECT_ROOT
    from llmops.offline.engine import run_program
    from llmops.offline.project import load_project, load_stack

    project = load_project(PROJECT_ROOT)
    return deployments_by_region(run_program(project, load_stack(project, STACK)), regions, models)


def deployments_by_region(plan: Any, regions: dict[str, str], models: list[str],
                          stack: str = STACK) -> dict[str, dict[str, dict[str, Any]]]:
    """region -> model -> the Deployment the plan renders there (regions: name -> code, as in resource names)."""
    import copy

    found: dict[str, dict[str, dict[str, Any]]] = {region: {} for region in regions}
    for resource in plan.kubernetes_objects():
        inputs = resource.inputs
        if inputs["kind"] != "Deployment" or inputs["metadata"]["name"] not in models:
            continue
        for region, code in regions.items():
            if f"{stack}-{code}-{inputs['metadata']['name']}" in resource.urn:
                found[region][inputs["metadata"]["name"]] = copy.deepcopy(inputs)
    return found


class RegionalEndpoint:
    """One model's serving endpoint in one region, as the gateway in front of its pods answers: vLLM's `/v1/models`
    (what Route53's HTTPS_STR_MATCH check reads), `/metrics` with vLLM's series, and completions. `down`: no ready pod
    behind it -- every path answers 503, so the health check fails and Prometheus's scrape does too."""

    def __init__(self, region: str, model: str) -> None:
        from llmops.drill.backends import free_port

        self.region, self.model, self.port = region, model, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.down = False
        self.counts = {"2xx": 0, "5xx": 0}
        self.lock = threading.Lock()
        self.server: Any = None

    def start(self) -> RegionalEndpoint:
        from http.server import BaseHTTPRequestHandler

        from llmops.drill.backends import QuietHTTPServer

        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's method name
                if endpoint.down:
                    self._answer(503, b"no healthy upstream", "text/plain")
                elif self.path == "/v1/models":  # compact, as vLLM writes it: the check's search string matches
                    self._answer(200, json.dumps({"object": "list", "data": [
                        {"id": endpoint.model, "object": "model", "owned_by": "vllm"}]}, separators=(",", ":")).encode())
                elif self.path == "/metrics":
                    self._answer(200, endpoint.exposition().encode(), "text/plain; version=0.0.4; charset=utf-8")
                else:
                    self._answer(404, b"{}")

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if endpoint.down:
                    self._answer(503, b"no healthy upstream", "text/plain")
                    return
                with endpoint.lock:
                    endpoint.counts["2xx"] += 1
                self._answer(200, json.dumps({"object": "chat.completion", "model": endpoint.model,
                                              "region": endpoint.region}).encode())

            def log_message(self, *args: Any) -> None:
                return

        self.server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def exposition(self) -> str:
        with self.lock:
            counts = dict(self.counts)
        lines = ["# TYPE vllm:num_requests_running gauge", f'vllm:num_requests_running{{model_name="{self.model}"}} 1',
                 "# TYPE vllm:num_requests_waiting gauge", f'vllm:num_requests_waiting{{model_name="{self.model}"}} 0',
                 "# TYPE http_requests_total counter"]
        lines += [f'http_requests_total{{handler="/v1/chat/completions",method="POST",status="{status}"}} {n}'
                  for status, n in counts.items()]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Users:
    """Users' requests to `<model>.<domain>`: resolved every second from the failover records as a resolver with a
    short TTL would (the PRIMARY record's value: moto's health checks always report healthy, as Route53's would for
    the first 30 s of an outage), then `rate` requests a second per model to that regional endpoint."""

    def __init__(self, drill: FailoverDrill, rate: float) -> None:
        self.drill, self.rate = drill, rate
        self.outcomes: list[tuple[float, str, str, bool]] = []  # at, model, region, answered
        self.answer: dict[str, str] = {}  # model -> region its name resolves to now
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="failover-drill-users", daemon=True)

    def start(self) -> Users:
        self._thread.start()
        return self

    def _resolve(self) -> None:
        try:
            roles = self.drill.roles(with_values=True)
        except Exception:  # noqa: BLE001 - moto busy or stopping: keep the last answer, as a resolver's cache would
            return
        for model in self.drill.models:
            primary = [region for region, (role, _) in roles.get(model, {}).items() if role == "PRIMARY"]
            if primary:
                self.answer[model] = primary[0]

    def _loop(self) -> None:
        import urllib.error
        import urllib.request

        resolved_at, sent = 0.0, 0
        began = time.monotonic()
        while not self._stop.wait(0.05):
            if time.monotonic() - resolved_at >= 1.0:
                self._resolve()
                resolved_at = time.monotonic()
            due = int((time.monotonic() - began) * self.rate)
            while sent < due and not self._stop.is_set():
                sent += 1
                for model in self.drill.models:
                    region = self.answer.get(model)
                    if region is None:
                        continue
                    endpoint = self.drill.endpoints[region][model]
                    request = urllib.request.Request(f"{endpoint.url}/v1/chat/completions", data=b"{}", method="POST",
                                                     headers={"Content-Type": "application/json"})
                    try:
                        with urllib.request.urlopen(request, timeout=2) as response:
                            ok = response.status == 200
                    except (urllib.error.URLError, OSError):
                        ok = False
                    with self._lock:
                        self.outcomes.append((time.time(), model, region, ok))

    def between(self, start: float, end: float) -> list[tuple[float, str, str, bool]]:
        with self._lock:
            return [o for o in self.outcomes if start <= o[0] < end]

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class FailoverDrill:
    """The two-region prod world. `aws_endpoint`: use that moto server (a sandbox's) instead of starting one;
    `with_signals=False`: the seeded world only (no endpoints, Prometheus or users)."""

    def __init__(self, workdir: Path, *, aws_endpoint: str | None = None, with_signals: bool = True,
                 rate: float = 10.0, alert_for_seconds: float = 2.0,
                 deployments: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        import uuid

        self.workdir, self.aws_endpoint, self.with_signals = Path(workdir), aws_endpoint, with_signals
        self.rate, self.alert_for_seconds, self.deployments = rate, alert_for_seconds, deployments
        self.suffix = uuid.uuid4().hex[:8]
        self._started: list[Any] = []
        self.clusters: dict[str, Any] = {}
        self.endpoints: dict[str, dict[str, RegionalEndpoint]] = {}
        self.prometheus: dict[str, Any] = {}
        self.users: Users | None = None
        self.targets_dir = self.workdir / "targets"
        self.scrape_interval, self.rule_interval = "500ms", "500ms"
        self.rules: dict[str, list[dict[str, Any]]] = {}  # region -> the alert rules its Prometheus evaluates
        self.stack_alert_for: str | None = None  # the rule's `for:` in the stack
        self.zone = ""
        self.registry_uri = ""
        self._load_stack()

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def _load_stack(self) -> None:
        from components import config as stack_config
        from components.config.base import region_code
        from components.paths import STACKS_DIR

        self.source_stack = STACKS_DIR / f"Pulumi.{STACK}.yaml"
        stack = stack_config.load_file(self.source_stack)
        assert stack.failover is not None and stack.regions.primary == PRIMARY and STANDBY in stack.regions.all
        self.stack = stack
        self.regions = {region: region_code(region) for region in stack.regions.all}
        self.models = [m.name for m in stack.models]
        self.domain = stack.serving.domain
        self.buckets = {region: f"{STACK}-{code}-artifacts-{self.suffix}" for region, code in self.regions.items()}

    def start(self) -> FailoverDrill:
        """Start and seed everything; a failure half way leaves `stop` able to stop what did start."""
        from llmops.drill.backends import KubernetesApi, MotoServer

        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.deployments is None:
            self.deployments = prod_deployments(self.regions, self.models)
        if self.aws_endpoint is None:
            moto = MotoServer().start()
            self._started.append(moto)
            self.aws_endpoint = moto.url
        for region in self.regions:
            self.clusters[region] = KubernetesApi().start()
            self._started.append(self.clusters[region])  # kmock stacks DNS interceptors: stopped last-in, first-out
        self._dns()
        self._artifacts()
        self.registry_uri = self._registry()
        for region in self.regions:
            self.seed_cluster(region)
        self._stack_file()
        if self.with_signals:
            self._signals()
        self.write_targets(self.targets_dir, ENV)
        return self

    def stop(self) -> None:
        """Stop everything started so far, last first (also after a start that failed half way); idempotent."""
        from llmops.drill.backends import stop_all

        stop_all(self._started)

    def _aws(self, service: str, region: str = PRIMARY) -> Any:
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.aws_endpoint, aws_access_key_id="drill",
                            aws_secret_access_key="drill")

    def _dns(self) -> None:
        route53 = self._aws("route53")
        self.route53 = route53
        self.zone = route53.create_hosted_zone(Name=self.domain, CallerReference=f"llmops-drill-{self.suffix}")[
            "HostedZone"]["Id"].split("/")[-1]
        assert self.stack.failover is not None
        check = self.stack.failover.health_check
        self.checks = {}
        for region, code in self.regions.items():
            self.checks[region] = route53.create_health_check(
                CallerReference=f"{self.suffix}-{code}", HealthCheckConfig={
                    "Type": "HTTPS_STR_MATCH", "FullyQualifiedDomainName": f"{self.models[0]}.{code}.{self.domain}",
                    "Port": 443, "ResourcePath": check.path, "SearchString": f'"id":"{self.models[0]}"',
                    "RequestInterval": check.interval_seconds, "FailureThreshold": check.failure_threshold}
            )["HealthCheck"]["Id"]
        changes = []
        for model in self.models:
            for region, code in self.regions.items():
                changes.append({"Action": "CREATE", "ResourceRecordSet": {
                    "Name": f"{model}.{self.domain}", "Type": "CNAME", "SetIdentifier": region,
                    "TTL": self.stack.failover.ttl_seconds, "Failover": "PRIMARY" if region == PRIMARY else "SECONDARY",
                    "HealthCheckId": self.checks[region], "ResourceRecords": [{"Value": f"{model}.{code}.{self.domain}"}]}})
        route53.change_resource_record_sets(HostedZoneId=self.zone, ChangeBatch={"Changes": changes})

    def _artifacts(self) -> None:
        import hashlib

        for region, bucket in self.buckets.items():
            s3 = self._aws("s3", region)
            extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            s3.create_bucket(Bucket=bucket, **extra)
            for model in self.stack.models:
                for name in ("config.json", "tokenizer.json", "model-00001-of-00002.safetensors"):
                    key = f"artifacts/{model.registry.model}/{model.release.version}/model/{name}"
                    s3.put_object(Bucket=bucket, Key=key, Body=hashlib.sha256(key.encode()).digest() * 64)  # the replica

    def _registry(self) -> str:
        from mlflow import MlflowClient

        directory = self.workdir / "registry"
        shutil.rmtree(directory, ignore_errors=True)  # seeded afresh, also in a directory an earlier world used
        directory.mkdir(parents=True)
        uri = f"sqlite:///{directory / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        for model in self.stack.models:
            client.create_registered_model(model.registry.model)
            for number in range(1, int(model.release.version) + 1):
                client.create_model_version(
                    model.registry.model, f"s3://{self.buckets[PRIMARY]}/artifacts/{model.registry.model}/{number}/model")
        return uri

    def seed_cluster(self, region: str, *, ready: bool = True) -> None:
        """The region's Deployments as the prod plan renders them, all replicas ready (or none), on its GPU nodes
        (Ready, or not)."""
        import copy

        assert self.deployments is not None
        api = self.clusters[region]
        for deployment in self.deployments[region].values():
            deployment = copy.deepcopy(deployment)
            deployment["spec"]["replicas"] = deployment["spec"].get("replicas") or 2
            api.seed(deployment, None)
        for pool in sorted({m.pool for m in self.stack.models}):
            api.seed_node(f"{pool}-{region}-node", {"llmops.io/pool": pool})
        if not ready:
            self._region_down(region)

    def _region_down(self, region: str) -> None:
        from kubernetes import client

        api = self.clusters[region]
        for model, deployment in (self.deployments or {}).get(region, {}).items():
            api.apps.patch_namespaced_deployment_status(model, NAMESPACE, {"status": {
                "readyReplicas": 0, "availableReplicas": 0,
                "unavailableReplicas": deployment["spec"].get("replicas") or 2}})
        core = client.CoreV1Api(api.api)
        for node in core.list_node().items:
            core.patch_node_status(node.metadata.name, {"status": {"conditions": [
                {"type": "Ready", "status": "False", "reason": "NodeStatusUnknown"}]}})

    def adapt_stack(self, document: dict[str, Any]) -> dict[str, Any]:
        """What the prod stack file needs here: its failover records live in moto's zone, not the real one."""
        document["config"]["llmops:failover"]["hostedZoneId"] = self.zone
        return document

    def _stack_file(self) -> None:
        """The prod stack file, adapted, its comments kept (the runbook's pin keeps them too)."""
        from ruamel.yaml import YAML

        yaml = YAML()
        yaml.preserve_quotes = True
        document = yaml.load(self.source_stack.read_text())
        self.adapt_stack(document)
        (self.workdir / "stacks").mkdir(parents=True, exist_ok=True)
        self.stack_file = self.workdir / "stacks" / f"Pulumi.{STACK}.yaml"
        with self.stack_file.open("w") as out:
            yaml.dump(document, out)

    def _signals(self) -> None:
        from components.manifests.alert_rules import RuleContext, serving_alerts
        from components.manifests.route import stable_backend
        from llmops.drill.backends import PrometheusServer

        for region in self.regions:
            self.endpoints[region] = {}
            for model in self.models:
                endpoint = RegionalEndpoint(region, model).start()
                self._started.append(endpoint)
                self.endpoints[region][model] = endpoint
        for region in self.regions:
            # Each region's Prometheus evaluates that region's rules (components/alert_rules.py renders them so).
            context = RuleContext(runbook_base_url=self.stack.alerting.runbook_base_url,
                                  environment=self.stack.environment, region=region, serving_namespace=NAMESPACE)
            rules = [r for r in serving_alerts(self.models, context) if r["alert"] == ALERT]
            self.stack_alert_for = rules[0].get("for")
            self.rules[region] = [{**r, "for": f"{self.alert_for_seconds:g}s"} for r in rules]
            directory = self.workdir / f"prometheus-{region}"
            directory.mkdir(parents=True, exist_ok=True)
            targets = {f"{model}-{self.regions[region]}": (endpoint.port, {"namespace": NAMESPACE,
                                                                            "service": stable_backend(model)})
                       for model, endpoint in self.endpoints[region].items()}
            self.prometheus[region] = PrometheusServer(directory, targets, self.rules[region],
                                                       interval=self.scrape_interval,
                                                       evaluation_interval=self.rule_interval).start()
            self._started.append(self.prometheus[region])
        self.users = Users(self, self.rate).start()
        self._started.append(self.users)

    def targets_sections(self) -> dict[str, Any]:
        """The targets-file keys this world contributes (a sandbox merges them into its own)."""
        return {"aws": {"region": PRIMARY, "endpoint_url": self.aws_endpoint},
                "failover": {"hosted_zone_id": self.zone, "change_timeout_seconds": 30, "poll_seconds": 0.2,
                             "regions": {region: {"kubernetes": {"host": self.clusters[region].url,
                                                                 "namespace": NAMESPACE},
                                                  "artifact_bucket": self.buckets[region],
                                                  "registry": {"tracking_uri": self.registry_uri}}
                                         for region in self.regions}}}

    def write_targets(self, directory: Path, environment: str) -> Path:
        """`<directory>/<environment>.yaml`: this world's targets with its own stack file and records."""
        import yaml

        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{environment}.yaml"
        path.write_text(yaml.safe_dump({
            "environment": environment, "stack_file": str(self.stack_file), **self.targets_sections(),
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state")}, sort_keys=False))
        return path

    def environment(self) -> dict[str, str]:
        """Environment variables for a runbook process that should use this world."""
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "drill",
                "AWS_SECRET_ACCESS_KEY": "drill", "AWS_DEFAULT_REGION": PRIMARY}

    def describe(self) -> str:
        parts = [f"moto {self.aws_endpoint} (hosted zone {self.zone})"]
        parts += [f"Kubernetes API {region} {api.url}" for region, api in self.clusters.items()]
        parts += [f"Prometheus {region} {p.url} (pid {p.process.pid})" for region, p in self.prometheus.items()]
        parts += [f"{region} endpoints " + ", ".join(f"{m} {e.url}" for m, e in endpoints.items())
                  for region, endpoints in self.endpoints.items()]
        return "; ".join(parts) + f"; MLflow store {self.registry_uri}; directory {self.workdir}"

    # --- the fault ---------------------------------------------------------------------------------------------------

    def inject_region_down(self, region: str = PRIMARY) -> float:
        """Region down: its endpoints answer 503 (no ready pod), its Deployments lose their ready replicas, its GPU
        nodes go NotReady. The moment it began."""
        at = time.time()
        for endpoint in self.endpoints.get(region, {}).values():
            endpoint.down = True
        self._region_down(region)
        return at

    # --- what is seen ------------------------------------------------------------------------------------------------

    def roles(self, with_values: bool = False) -> dict[str, dict[str, Any]]:
        """model -> region -> its failover role (and the record's value), read from moto's Route53."""
        found: dict[str, dict[str, Any]] = {}
        for record in self.route53.list_resource_record_sets(HostedZoneId=self.zone)["ResourceRecordSets"]:
            if record["Type"] == "CNAME":
                model = record["Name"].rstrip(".").removesuffix(f".{self.domain}")
                value = record["ResourceRecords"][0]["Value"].rstrip(".")
                found.setdefault(model, {})[record["SetIdentifier"]] = (
                    (record["Failover"], value) if with_values else record["Failover"])
        return found

    def dns_answers(self) -> dict[str, list[str]]:
        """What Route53 answers for each model's name, by the runbook's own adapter."""
        from runbooks.adapters.route53_dns import Route53Dns

        dns = Route53Dns(self.route53)
        return {model: dns.dns_answer(self.zone, f"{model}.{self.domain}")[0] for model in self.models}

    def active_region(self) -> str:
        from components import config as stack_config

        return stack_config.load_file(self.stack_file).active_region

    def ready_replicas(self, region: str) -> dict[str, int]:
        api = self.clusters[region]
        return {model: api.apps.read_namespaced_deployment(model, NAMESPACE).status.ready_replicas or 0
                for model in self.models}

    def health_answers(self, region: str) -> dict[str, bool]:
        """Route53's check, done by hand (moto's report every check healthy): does the health path name the model?"""
        import urllib.error
        import urllib.request

        assert self.stack.failover is not None
        found = {}
        for model, endpoint in self.endpoints[region].items():
            try:
                with urllib.request.urlopen(endpoint.url + self.stack.failover.health_check.path, timeout=2) as r:
                    found[model] = f'"id":"{model}"' in r.read().decode()
            except (urllib.error.URLError, OSError):
                found[model] = False
        return found

    def alerts(self, region: str) -> dict[str, dict[str, Any]]:
        """model -> {state, activeAt} of the region's VllmMetricsAbsent alerts, from Prometheus's own API."""
        import urllib.request

        with urllib.request.urlopen(f"{self.prometheus[region].url}/api/v1/alerts", timeout=5) as response:
            alerts = json.load(response)["data"]["alerts"]
        return {a["labels"].get("model", ""): {"state": a["state"], "active_at": _epoch(a.get("activeAt"))}
                for a in alerts if a["labels"].get("alertname") == ALERT}

    def scraped(self, region: str) -> set[str]:
        """The models whose vLLM series the region's Prometheus has now."""
        found = self.prometheus[region].query(f'vllm:num_requests_running{{namespace="{NAMESPACE}"}}')
        return {r["metric"].get("model_name", "") for r in found}

    def serving_signals(self, region: str, window: str = "2s") -> dict[str, dict[str, float | None]]:
        """Per model, the request rate and the availability error ratio the region's Prometheus computes with the
        stack's own SLI expressions."""
        from components.manifests.alert_rules import availability_error_ratio, request_rate

        prometheus, found = self.prometheus[region], {}
        for model in self.models:
            rate = prometheus.query(request_rate(model, NAMESPACE, window))
            errors = prometheus.query(availability_error_ratio(model, NAMESPACE, window))
            found[model] = {"rate": float(rate[0]["value"][1]) if rate else None,
                            "errors": float(errors[0]["value"][1]) if errors else None}
        return found


def _epoch(value: str | None) -> float | None:
    """Prometheus's RFC 3339 time (nanoseconds) as epoch seconds."""
    from datetime import datetime

    if not value or value.startswith("0001-"):
        return None
    head, _, fraction = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]:0<6}+00:00").timestamp()


# --- the rehearsal ------------------------------------------------------------------------------------------------

def _percent(part: int, whole: int) -> str:
    return "n/a" if whole == 0 else f"{part / whole * 100:.1f} %"


def rehearse(drill: FailoverDrill, args: argparse.Namespace, say: Any) -> int:
    import math
    import os

    from llmops.drill.backends import wait_until
    from llmops.drill.report import DrillReport, finish, run_approved
    from runbooks.engine import RunbookError

    report = DrillReport("failover", f"region {PRIMARY} down")
    os.environ.update(drill.environment())
    say(f"drill: backends up: {drill.describe()}")
    assert drill.users is not None

    def at(name: str) -> str:
        return f"+{report.since(name) or 0.0:5.1f} s"

    try:  # serving, scraped and quiet in both regions, with users on the primary, before anything breaks
        wait_until(lambda: all(drill.scraped(r) == set(drill.models) and not drill.alerts(r) for r in drill.regions)
                   and len(drill.users.outcomes) >= 2 * len(drill.models), 60, "both regions scraped and serving",
                   interval=0.2)
    except TimeoutError as error:
        say(f"drill: {error}")
        return 1
    began, users = time.time(), drill.users
    # Users' requests before the fault (a second's worth): the baseline's error rate.
    wait_until(lambda: len(users.between(began, time.time())) >= args.rate * len(drill.models), 30,
               "users' requests before the fault", interval=0.1)
    baseline = users.between(began, time.time())
    say(f"drill: {', '.join(drill.models)} serve from {PRIMARY} (PRIMARY records); {STANDBY} is warm, ready and "
        f"idle. Users send {args.rate:g} requests/s per model: {_percent(sum(not o[3] for o in baseline), len(baseline))}"
        f" fail. Each region's Prometheus scrapes its endpoints every {drill.scrape_interval} and evaluates the "
        f"stack's {ALERT} rule every {drill.rule_interval} (for: {args.alert_for:g}s here, {drill.stack_alert_for} in "
        "the stack)")

    report.mark("injected", f"region {PRIMARY} down", drill.inject_region_down(PRIMARY))
    say(f"drill: {at('injected')} injected: region {PRIMARY} down -- its endpoints answer 503, its Deployments have "
        f"{drill.ready_replicas(PRIMARY)} ready replicas, its GPU nodes are NotReady")
    deadline = time.time() + args.timeout
    while time.time() < deadline and "alert_firing" not in report.events:
        if "health_check_failing" not in report.events and not any(drill.health_answers(PRIMARY).values()):
            report.mark("health_check_failing", f"{PRIMARY}'s health path stopped naming its models")
            say(f"drill: {at('health_check_failing')} the health check's path ({drill.stack.failover.health_check.path}"  # type: ignore[union-attr]
                f") in {PRIMARY} no longer answers with the models' ids")
        alerts = drill.alerts(PRIMARY)
        if "alert_pending" not in report.events and alerts:
            active = min((a["active_at"] for a in alerts.values() if a["active_at"]), default=None)
            report.mark("alert_pending", f"{ALERT} pending in {PRIMARY}'s Prometheus", active)
            say(f"drill: {at('alert_pending')} Prometheus in {PRIMARY} finds no vLLM series of "
                f"{', '.join(sorted(alerts))}: {ALERT} pending")
        if set(drill.models) <= {m for m, a in alerts.items() if a["state"] == "firing"}:
            report.mark("alert_firing", f"{ALERT} firing for every model in {PRIMARY}")
            say(f"drill: {at('alert_firing')} {ALERT} firing for {', '.join(drill.models)} in {PRIMARY} "
                f"(severity page, runbook failover)")
        time.sleep(0.2)
    fired = "alert_firing" in report.events
    report.objective(f"{ALERT} fires for every model of {PRIMARY}", f"within {args.timeout:g} s of the fault",
                     f"after {report.since('alert_firing'):.1f} s" if fired else "never", fired)
    result = None
    if fired:
        say(f"drill: failing over: failover --from {PRIMARY} --to {STANDBY}")
        try:
            result = run_approved(report, "failover", ENV, {"from": PRIMARY, "to": STANDBY},
                                  drill.workdir / "state", say)
        except RunbookError as error:
            say(f"drill: the failover runbook refused: {error}")
            report.exit_codes["runbook"] = error.exit_code
        report.objective("the failover runs", "succeeded, exit code 0",
                         f"{result.status}, exit code {result.exit_code}" if result is not None else
                         f"refused, exit code {report.exit_codes.get('runbook')}",
                         result is not None and result.exit_code == 0)
    seen: dict[str, Any] = {}
    if result is not None and result.exit_code == 0:
        limit = 1 - min(m.slo.availability.objective for m in drill.stack.models) / 100
        swapped = {m: {PRIMARY: "SECONDARY", STANDBY: "PRIMARY"} for m in drill.models}
        code = drill.regions[STANDBY]
        expected = {m: [f"{m}.{code}.{drill.domain}"] for m in drill.models}

        def mitigated() -> bool:
            seen.update(roles=drill.roles(), answers=drill.dns_answers(), active=drill.active_region(),
                        signals=drill.serving_signals(STANDBY), alerts=drill.alerts(STANDBY),
                        resolved=dict(users.answer))
            return (seen["roles"] == swapped and seen["answers"] == expected and seen["active"] == STANDBY
                    and not seen["alerts"] and set(seen["resolved"].values()) == {STANDBY}
                    and all(s["rate"] and s["errors"] is not None and not math.isnan(s["errors"])
                            and s["errors"] <= limit for s in seen["signals"].values()))
        try:
            wait_until(mitigated, args.timeout, f"traffic served from {STANDBY}", interval=0.5)
            report.mark("mitigation_verified", f"traffic served from {STANDBY}, verified")
            say(f"drill: {at('mitigation_verified')} mitigation verified: Route53 PRIMARY is {STANDBY} for every "
                f"model, DNS answers {', '.join(a[0] for a in seen['answers'].values())}, activeRegion "
                f"{seen['active']}, {STANDBY}'s Prometheus sees "
                + ", ".join(f"{m} at {s['rate']:.1f} requests/s with {s['errors'] * 100:.1f} % errors"
                            for m, s in seen["signals"].items()))
        except TimeoutError as error:
            say(f"drill: {error}; last seen: {json.dumps(seen, default=str)}")
        since = report.events.get("mitigation_verified", time.time())
        try:  # a second's worth of users' requests after the mitigation
            wait_until(lambda: len(users.between(since, time.time())) >= args.rate * len(drill.models), 30,
                       "users' requests after the mitigation", interval=0.1)
        except TimeoutError as error:
            say(f"drill: {error}")
        after = users.between(since, time.time())
        settled = drill.serving_signals(STANDBY)  # over the last 2 s: users' requests all on the standby by now
        on_standby = [o for o in after if o[2] == STANDBY]
        report.objective(f"traffic on {STANDBY}",
                         f"PRIMARY records and DNS answers in {STANDBY}, its requests answered within the SLO",
                         f"records {'swapped' if seen.get('roles') == swapped else seen.get('roles')}, DNS "
                         f"{sorted(sum(seen.get('answers', {}).values(), []))}; {_percent(len(on_standby), len(after))} "
                         f"of requests served there, {_percent(sum(not o[3] for o in after), len(after))} failed",
                         "mitigation_verified" in report.events and len(after) > 0
                         and len(on_standby) == len(after) and all(o[3] for o in after))
        report.objective("the stack file pins the active region", f"failover.activeRegion {STANDBY}",
                         str(seen.get("active")), seen.get("active") == STANDBY)
        report.figures.update({f"{STANDBY} after the failover (its Prometheus, the stack's SLIs over 2 s)": {
            m: f"{s['rate'] or 0:.1f} requests/s, {(s['errors'] or 0) * 100:.1f} % errors"
            for m, s in settled.items()}})
    if result is not None:
        report.objective("the run's journal is consistent", "every step started finished once, run finished",
                         "consistent" if report.journal.get("consistent") else
                         "; ".join(report.journal.get("problems", ["no run"])), bool(report.journal.get("consistent")))
    outage = users.between(report.events["injected"], report.events.get("mitigation_verified", time.time()))
    failed = sum(not o[3] for o in outage)
    assert drill.stack.failover is not None
    check = drill.stack.failover.health_check
    report.figures.update({
        "fault": f"{PRIMARY}: endpoints answer 503, Deployments 0 ready replicas, GPU nodes NotReady",
        "alert": f"{ALERT} (components/manifests/alert_rules.py serving_alerts), for: {args.alert_for:g}s in the drill "
                 f"(shortened; {drill.stack_alert_for} in the stack)",
        "alert expression (one rule per model)": drill.rules[PRIMARY][0]["expr"],
        "scrape interval": drill.scrape_interval, "rule evaluation interval": drill.rule_interval,
        "users' requests": f"{args.rate:g} requests/s per model",
        "requests failed before the fault": _percent(sum(not o[3] for o in baseline), len(baseline)),
        "requests failed from the fault to the mitigation verified": f"{_percent(failed, len(outage))} ({failed} of "
                                                                     f"{len(outage)})",
        "Route53 on its own": f"health checks every {check.interval_seconds} s, unhealthy after "
                              f"{check.failure_threshold} failures, TTL {drill.stack.failover.ttl_seconds} s: up to "
                              f"{check.interval_seconds * check.failure_threshold + drill.stack.failover.ttl_seconds} s "
                              "before resolvers follow the SECONDARY record (moto's checks do not probe)",
        "command": f"llmops runbook run failover --env {ENV} --from {PRIMARY} --to {STANDBY} --approve <plan hash>"})
    return finish(report, say, args.report_dir)
