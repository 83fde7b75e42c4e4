"""The canary drill's world made to fill the dashboards: real Prometheus with stable and canary traffic, the stack's own
rule groups (the SLO recording rules the service overview reads), the Pushgateway scraped as kube-prometheus-stack
scrapes it (honor_labels), the release controller's own metrics endpoint, a real rollback run (the runbook engine
pushes its run), and the project's own exporters' pushes where this world has them.

What this world does not run is pushed to its Pushgateway as the real exporter would expose it, and said so
(`SIMULATED`): kube-state-metrics' `kube_deployment_labels` (from the Deployments the Kubernetes API holds) and the
drift monitor's `llmops_drift_status` (normally scraped from the monitor). The PII scan and index freshness are
pushed by the project's own push functions (llmops.pii.metrics, llmops.retrieval.freshness), as their jobs push.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
import urllib.request
from typing import Any

import yaml

from components.manifests.alert_rules import RuleContext, rule_groups
from components.manifests.drift_monitor import NAMESPACE as DRIFT_NAMESPACE
from components.manifests.route import canary_backend, stable_backend
from llmops.drill.backends import free_port, wait_until
from llmops.drill.canary_drill import CanaryDrill
from llmops.drill.rollback_drill import ENVIRONMENT, NAMESPACE, SERVICE

SIMULATED = {
    "kube_deployment_labels": "kube-state-metrics is not running here: the Deployments' labels (read from the "
                              "Kubernetes API) are pushed as kube-state-metrics exposes them",
    "llmops_drift_status": "the drift monitor is not running here: one stable status is pushed as it exposes it",
}
PII_SOURCE, INDEX = "inference-logs", "docs"


class DashboardWorld(CanaryDrill):
    """`start()`, then `populate()`: after it, every service and operations panel has data to show."""

    def start(self) -> DashboardWorld:
        super().start()
        try:
            self._reconfigure_prometheus()
        except BaseException:
            self.stop()
            raise
        return self

    def rule_context(self) -> RuleContext:
        return RuleContext(runbook_base_url="https://example.org/runbooks/pages", environment=ENVIRONMENT,
                           region="us-east-1", serving_namespace=NAMESPACE)

    def stack_groups(self) -> list[dict[str, Any]]:
        from components import config as stack_config
        from components.alert_rules import slo_spec

        stack = stack_config.load_file(self.stack_source)
        return rule_groups([slo_spec(m) for m in stack.models], self.rule_context())

    def _reconfigure_prometheus(self) -> None:
        """The stack's rule groups and two more scrape jobs, then SIGHUP: Prometheus reloads its files in place."""
        from llmops.controller.metrics import ControllerMetrics

        self.controller_port = free_port()
        self.controller_metrics = ControllerMetrics(self.controller_port)  # the controller's own :9109 endpoint
        workdir = self.prometheus.workdir
        rules = yaml.safe_load((workdir / "rules.yml").read_text())
        groups = [{**group, "interval": "1s"} for group in self.stack_groups()]
        (workdir / "rules.yml").write_text(yaml.safe_dump({"groups": rules["groups"] + groups}))
        config = yaml.safe_load((workdir / "prometheus.yml").read_text())
        config["scrape_configs"] += [
            {"job_name": "pushgateway", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{self.pushgateway.port}"]}]},
            {"job_name": "release-controller",
             "static_configs": [{"targets": [f"127.0.0.1:{self.controller_port}"], "labels": {"namespace": NAMESPACE}}]},
        ]
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        os.kill(self.prometheus.process.pid, signal.SIGHUP)
        wait_until(lambda: self.prometheus.query('up{job="pushgateway"} == 1')
                   and self.prometheus.query('up{job="release-controller"} == 1')
                   and self.prometheus.query("llmops:slo_errors:ratio_rate3d"), 60,
                   "Prometheus to reload with the stack's rules, the Pushgateway and the controller's endpoint")

    # --- what fills the panels ---------------------------------------------------------------------------------

    def populate(self) -> None:
        self.run_rollback()
        self.one_controller_decision()
        self.push_exporters()

    def run_rollback(self) -> Any:
        """A real rollback run in this world: the engine pushes llmops_runbook_* to the Pushgateway."""
        from runbooks.engine.runner import RunOptions
        from runbooks.launch import launch

        saved = {key: os.environ.get(key) for key in self.environment()}
        os.environ.update(self.environment())
        try:
            result = launch("rollback", ENVIRONMENT, {"service": SERVICE, "to": None, "force": None},
                            RunOptions(yes=True), lambda message: None)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self.rollback_result = result
        return result

    def one_controller_decision(self) -> Any:
        """The release controller's own loop until it has decided once, its decision recorded on its endpoint."""
        from llmops.controller.controller import Controller, watch
        from runbooks.adapters.kubernetes_cluster import KubernetesCluster
        from runbooks.adapters.mlflow_registry import MlflowRegistry
        from runbooks.adapters.prometheus import Prometheus
        from runbooks.targets import load_targets

        saved = os.environ.get("LLMOPS_TARGETS_DIR")
        os.environ["LLMOPS_TARGETS_DIR"] = str(self.targets_dir)
        try:
            targets = load_targets(ENVIRONMENT)
        finally:
            if saved is None:
                os.environ.pop("LLMOPS_TARGETS_DIR", None)
            else:
                os.environ["LLMOPS_TARGETS_DIR"] = saved
        assert targets.registry and targets.kubernetes and targets.prometheus
        controller = Controller(ENVIRONMENT, targets, Prometheus(targets.prometheus.url),
                                MlflowRegistry(targets.registry.tracking_uri),
                                KubernetesCluster(host=targets.kubernetes.host), progress=lambda message: None)
        seen: list[Any] = []

        def record(outcome: Any) -> None:
            seen.append(outcome)
            self.controller_metrics.record(outcome)

        watch(controller, SERVICE, lambda: bool(seen), record)
        return seen[0]

    def push_exporters(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

        from llmops.pii.metrics import push_scan
        from llmops.retrieval.freshness import push as push_freshness

        push_scan(self.pushgateway.url, PII_SOURCE, {}, 1024)
        push_freshness(self.pushgateway.url, INDEX, {"age_seconds": 3600.0, "corpus_newer_objects": 0.0,
                                                     "stale_fraction": 0.0, "config_mismatch": 0.0})
        registry = CollectorRegistry()  # SIMULATED: see the module's docstring
        labels = Gauge("kube_deployment_labels", "Kubernetes labels converted to Prometheus labels.",
                       ["namespace", "deployment", "label_llmops_io_release", "label_llmops_io_track"],
                       registry=registry)
        for name in (stable_backend(SERVICE), canary_backend(SERVICE)):
            try:
                deployment = self.k8s.apps.read_namespaced_deployment(name, NAMESPACE)
            except Exception:  # noqa: BLE001 - a track this world does not hold as a Deployment
                continue
            found = deployment.metadata.labels or {}
            labels.labels(NAMESPACE, name, found.get("llmops.io/release", ""), found.get("llmops.io/track", "")).set(1)
        Gauge("llmops_drift_status", "0 stable (or too few samples), 1 watch, 2 drift.", ["namespace", "model", "signal"],
              registry=registry).labels(DRIFT_NAMESPACE, SERVICE, "embedding").set(0)
        push_to_gateway(self.pushgateway.url, job="dashboard-world", registry=registry, timeout=10)

    # --- reading ----------------------------------------------------------------------------------------------

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        with urllib.request.urlopen(f"{self.prometheus.url}/api/v1/query_range?{query}", timeout=10) as response:
            return list(json.load(response)["data"]["result"])
