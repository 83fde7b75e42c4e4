"""A rollback drill on real local backends: a bad release of the staging stack's `chat-small` is live,
and the rollback runbook brings it back -- the same runbook code on-call runs, against MLflow's own
store, a Kubernetes API (kmock), Debian's Prometheus scraping a vLLM-like exporter, and moto's
DynamoDB/SNS/SQS server. Tests and the rollback benchmark use this same world.

The world, from the staging stack's rendered objects: registry versions 1-4 of the model, 1-3
validated, `production` on 3, which fails 20% of requests and answers slowly (so does 4, the
canary at 20%); version 2 carries a release manifest with an older prompt.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.manifests.alert_rules import availability_error_ratio
from components.manifests.route import route_weights
from components.paths import PROJECT_ROOT, STACKS_DIR
from components.release import RELEASE_TAG, VALIDATED_TAG, VALIDATED_VALUE, ReleaseParts
from llmops.drill.backends import (
    KubernetesApi,
    ModelRegistryStore,
    MotoServer,
    PrometheusServer,
    PushgatewayServer,
    RolloutController,
    SimulatedVllm,
    stop_all,
    wait_until,
)

STACK, SERVICE, NAMESPACE = "staging", "chat-small", "serving"
REGISTERED_MODEL = "llama-3-1-8b-instruct"
BAD_VERSIONS = {"3", "4"}
LOCK_TABLE, ENVIRONMENT = "llmops-drill-runbook-locks", "drill"


@dataclass
class DrillSettings:
    verification_window_seconds: int = 5
    verification_timeout_seconds: int = 60
    rollout_delay_seconds: float = 0.3


def serving_objects(stack_file: Path | None = None, services: tuple[str, ...] = (SERVICE,),
                    ) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each service's Deployment and HTTPRoute exactly as the staging stack (or the given stack file) renders them:
    one evaluation of the program for all of them."""
    from llmops.offline.engine import run_program
    from llmops.offline.project import load_project, load_stack, load_stack_file

    project = load_project(PROJECT_ROOT)
    settings = (load_stack(project, STACK) if stack_file is None
                else load_stack_file(project, stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml"), stack_file))
    plan = run_program(project, settings)
    found = {(r.inputs["kind"], r.inputs["metadata"]["name"]): r.inputs for r in plan.kubernetes_objects()}
    return {service: (copy.deepcopy(found[("Deployment", service)]), copy.deepcopy(found[("HTTPRoute", service)]))
            for service in services}


def staging_objects(stack_file: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chat-small Deployment and HTTPRoute exactly as the staging stack (or the given stack file) renders them."""
    return serving_objects(stack_file)[SERVICE]


class RollbackDrill:
    def __init__(self, workdir: Path, settings: DrillSettings | None = None,
                 objects: tuple[dict[str, Any], dict[str, Any]] | None = None, stack_source: Path | None = None) -> None:
        """`stack_source`: the stack file the runbooks read and the objects are rendered from (default staging's)."""
        self.workdir, self.settings = workdir, settings or DrillSettings()
        self.stack_source = stack_source or STACKS_DIR / f"Pulumi.{STACK}.yaml"
        self.deployment, self.route = objects or staging_objects(stack_source)
        self._started: list[Any] = []
        self._version_seen: tuple[int, str | None] = (0, None)
        self._version_fresh = 0
        self._clients: dict[str, Any] = {}

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> RollbackDrill:
        self.moto = MotoServer().start()
        self._started.append(self.moto)
        self.aws_endpoint = self.moto.url
        self.k8s = KubernetesApi().start()
        self._started.append(self.k8s)
        self.k8s.seed(self.deployment, self.route)
        self.registry = ModelRegistryStore(self._fresh_dir("registry"))
        self._register_versions()
        self.vllm = SimulatedVllm(SERVICE, self._serving_version_when_written, BAD_VERSIONS).start()
        self._started.append(self.vllm)
        page_rule = {"alert": "DrillChatSmallErrors", "for": "0s", "labels": {"severity": "page", "model": SERVICE},
                     "expr": f"{availability_error_ratio(SERVICE, NAMESPACE, '2s')} > 0.05",
                     "annotations": {"summary": "drill", "description": "drill", "runbook_url": "drill"}}
        self.prometheus = PrometheusServer(self._fresh_dir("prometheus"), self._scrape_targets(), [page_rule]).start()
        self._started.append(self.prometheus)
        wait_until(lambda: self.prometheus.query("http_requests_total"), 30, "the first scrape of the exporter")
        self.pushgateway = PushgatewayServer().start()
        self._started.append(self.pushgateway)
        self.controller = RolloutController(self.k8s, NAMESPACE, SERVICE, self.settings.rollout_delay_seconds).start()
        self._started.append(self.controller)
        self._aws_resources()
        self.reset()
        return self

    def _scrape_targets(self) -> dict[str, tuple[int, dict[str, str]]]:
        """What Prometheus scrapes: the exporter, labelled as the stable Service (a subclass adds or replaces)."""
        return {"vllm": (self.vllm.port, {"namespace": NAMESPACE, "service": SERVICE})}

    def stop(self) -> None:
        """Stop everything started so far, last first (also after a start that failed half way); idempotent."""
        stop_all(self._started)

    def describe(self) -> str:
        """What runs where, for the operator (and for a test that checks it is all gone afterwards)."""
        return (f"Prometheus {self.prometheus.url} (pid {self.prometheus.process.pid}), Pushgateway "
                f"{self.pushgateway.url} (pid {self.pushgateway.process.pid}), Kubernetes API {self.k8s.url}, "
                f"moto {self.aws_endpoint}, MLflow store {self.registry.uri}; directory {self.workdir}")

    def __enter__(self) -> RollbackDrill:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _fresh_dir(self, name: str) -> Path:
        path = self.workdir / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    # --- the world --------------------------------------------------------------------------------------------

    def _register_versions(self) -> None:
        stable = json.loads(self.deployment["metadata"]["annotations"]["llmops.io/release"])
        manifest = {**stable, "model_version": "2", "prompt_version": "chat-2026-10-01"}
        validated = {VALIDATED_TAG: VALIDATED_VALUE}
        self.registry.register(REGISTERED_MODEL, {
            "1": dict(validated), "2": {**validated, RELEASE_TAG: json.dumps(manifest)}, "3": dict(validated), "4": {}})

    def _aws(self, service: str) -> Any:
        import boto3

        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name="us-east-1", endpoint_url=self.aws_endpoint,
                                                  aws_access_key_id="drill", aws_secret_access_key="drill")
        return self._clients[service]

    def _aws_resources(self) -> None:
        self._aws("dynamodb").create_table(
            TableName=LOCK_TABLE, KeySchema=[{"AttributeName": "lock_key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "lock_key", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        sns, sqs = self._aws("sns"), self._aws("sqs")
        self.topic_arn = sns.create_topic(Name="llmops-drill-runbooks")["TopicArn"]
        self.queue_url = sqs.create_queue(QueueName="llmops-drill-notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn,
                      Attributes={"RawMessageDelivery": "true"})

    def reset(self) -> None:
        """The bad release live again, and fresh files: a run starts from the same world every time."""
        self.controller.reset()
        self.vllm.bad_versions = set(BAD_VERSIONS)
        self.k8s.forget_requests()
        self.k8s.seed(copy.deepcopy(self.deployment), copy.deepcopy(self.route))
        client = self.registry.client
        client.set_registered_model_alias(REGISTERED_MODEL, "production", "3")
        try:
            client.delete_registered_model_alias(REGISTERED_MODEL, "last-known-good")
        except Exception:  # noqa: BLE001 - absent is what we want
            pass
        for version in client.search_model_versions(f"name='{REGISTERED_MODEL}'"):
            if "llmops.rolled_back" in version.tags:  # a rollback's marker: the next run starts unmarked
                client.delete_model_version_tag(REGISTERED_MODEL, version.version, "llmops.rolled_back")
        self.registry.reset_alias_writes()
        self.notifications()  # drain (moto delivers SNS to SQS synchronously)
        self.clear_locks()
        self.k8s_patch_baseline = self.k8s.patches(f"/deployments/{SERVICE}")
        self.route_patch_baseline = self.k8s.patches(f"/httproutes/{SERVICE}")
        stacks = self._fresh_dir("stacks")
        shutil.copy(self.stack_source, stacks / self.stack_source.name)
        self.stack_file = stacks / self.stack_source.name
        for name in ("state", "audit", "evidence"):
            self._fresh_dir(name)
        self.targets_dir = self._fresh_dir("targets")
        self.write_targets()

    def serve_healthy_canary(self) -> None:
        """The canary's release (version 4) answers well until the next reset: promoting it brings the stable release
        within its SLOs, as a canary that earned its promotion would."""
        self.vllm.bad_versions = BAD_VERSIONS - {"4"}

    def slo_objective(self) -> float:
        """The availability objective (percent) of the drilled service, as the stack file gives it."""
        from components import config as stack_config

        stack = stack_config.load_file(self.stack_file)
        return next(m for m in stack.models if m.name == SERVICE).slo.availability.objective

    def wait_until_degraded(self, timeout: float = 30) -> None:
        """Until Prometheus sees the bad release: errors over the window, and the page alert firing."""
        wait_until(lambda: self.prometheus.query(f'ALERTS{{alertstate="firing",model="{SERVICE}"}}'), timeout,
                   "the bad release to show on Prometheus")

    def write_targets(self, **overrides: Any) -> Path:
        targets = {
            "environment": ENVIRONMENT, "stack_file": str(self.stack_file),
            "registry": {"tracking_uri": self.registry.uri},
            "kubernetes": {"host": self.k8s.url, "namespace": NAMESPACE},
            "prometheus": {"url": self.prometheus.url},
            "aws": {"region": "us-east-1", "endpoint_url": self.aws_endpoint},
            "lock": {"table": LOCK_TABLE, "ttl_seconds": 300},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"), "notifications": {"topic_arn": self.topic_arn},
            "pushgateway": self.pushgateway.url,
            "verification": {"window_seconds": self.settings.verification_window_seconds,
                             "timeout_seconds": self.settings.verification_timeout_seconds, "poll_seconds": 0.5},
            "rollout": {"timeout_seconds": 60, "poll_seconds": 0.1},
        }
        for key, value in overrides.items():
            targets[key] = value
        path = self.targets_dir / f"{ENVIRONMENT}.yaml"
        path.write_text(yaml.safe_dump(targets, sort_keys=False))
        return path

    def environment(self) -> dict[str, str]:
        """Environment variables for a runbook process that should use this world."""
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "drill",
                "AWS_SECRET_ACCESS_KEY": "drill", "AWS_DEFAULT_REGION": "us-east-1"}

    # --- observations ----------------------------------------------------------------------------------------

    def _serving_version_when_written(self) -> str:
        """The version the Deployment runs, read again only after something wrote to it (the exporter asks twice a
        second; reading the object each time cost a third of a core)."""
        seen, written = self.k8s.writes_since(self._version_seen[0], f"/deployments/{SERVICE}")
        # A write is logged before the emulator applies it: read on the poll of the write and the next one.
        self._version_fresh = 2 if written else max(0, self._version_fresh - 1)
        version = self._version_seen[1]
        if self._version_fresh or version is None:
            version = self.serving_version()
        self._version_seen = (seen, version)
        return version

    def serving_version(self) -> str:
        deployment = self.k8s.apps.read_namespaced_deployment(SERVICE, NAMESPACE)
        vllm = next(c for c in deployment.spec.template.spec.containers if c.name == "vllm")
        return vllm.args[0].rsplit("/", 1)[-1]

    def production_alias(self) -> str:
        return str(self.registry.client.get_model_version_by_alias(REGISTERED_MODEL, "production").version)

    def deployment_patches(self) -> int:
        return self.k8s.patches(f"/deployments/{SERVICE}") - self.k8s_patch_baseline

    def route_patches(self) -> int:
        return self.k8s.patches(f"/httproutes/{SERVICE}") - self.route_patch_baseline

    def route_weights(self) -> dict[str, int]:
        route = self.k8s.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", SERVICE)
        return route_weights(route)

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification published since the last call (they are consumed)."""
        sqs, found = self._aws("sqs"), list[dict[str, Any]]()
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def clear_locks(self) -> None:
        """Every lock gone, as when a crashed run's lock expires."""
        ddb = self._aws("dynamodb")
        for item in ddb.scan(TableName=LOCK_TABLE).get("Items", []):
            ddb.delete_item(TableName=LOCK_TABLE, Key={"lock_key": item["lock_key"]})

    def lock_items(self) -> list[dict[str, Any]]:
        return self._aws("dynamodb").scan(TableName=LOCK_TABLE).get("Items", [])

    def audit_records(self, run_id: str) -> list[dict[str, Any]]:
        path = self.workdir / "audit" / "audit.jsonl"
        if not path.exists():
            return []
        return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
                if r.get("run_id") == run_id]

    def evidence(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.workdir / "evidence" / "evidence" / f"{run_id}.json").read_text())

    def run_ids(self) -> list[str]:
        state = self.workdir / "state"
        return sorted(p.name for p in state.iterdir() if p.is_dir() and p.name != "locks") if state.exists() else []

    def expected_release_id(self, version: str = "2", prompt: str = "chat-2026-10-01") -> str:
        stable = json.loads(self.deployment["metadata"]["annotations"]["llmops.io/release"])
        args = list(stable["serving_args"])
        args[0] = f"/models/{REGISTERED_MODEL}/{version}"
        return ReleaseParts(**{**stable, "model_version": version, "prompt_version": prompt,
                               "serving_args": tuple(args)}).release_id


def scratch_drill(settings: DrillSettings | None = None) -> RollbackDrill:
    return RollbackDrill(Path(tempfile.mkdtemp(prefix="llmops-drill-")), settings)
