"""The drift drill: the dev stack's drift policy for its chat model, a real drift monitor (`MonitorServer`, HTTP),
Debian's Prometheus scraping it at the stack's interval and evaluating the stack's own drift rules at theirs, and
request samples posted to the monitor at a steady rate as the log shipper would. A reference is built first from the
same traffic; at a chosen moment a new topic takes a share of the requests (or prompt tokens grow); the drill records
when the monitor judged drift, when Prometheus saw it, and when the `Drift` alert fired -- then runs the drift-review
runbook (`--decision accept`, approved by the drill) and records when the alert resolved.

`llmops drill drift [--scenario topic|tokens] [--share 0.3] [--rate 10]`.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components import config as stack_config
from components.manifests.alert_rules import RuleContext, drift_alerts
from components.manifests.drift_monitor import NAME as MONITOR_JOB
from components.manifests.drift_monitor import NAMESPACE as MONITOR_NAMESPACE
from components.paths import PROJECT_ROOT
from llmops.drift import traffic
from llmops.drift.monitor import Monitor
from llmops.drift.reference import ReferenceStore, build_reference, model_policy
from llmops.drift.server import MonitorServer, embedders_for
from llmops.drift.settings import MonitorSettings
from llmops.drill.backends import PrometheusServer, wait_until

ENV = "drill"
EMBEDDING_MODEL = "local:hashing-256"  # the local embedder stands in for the index's embedding endpoint
SCENARIOS = ("topic", "tokens")


@dataclass
class Timeline:
    """Epoch seconds of what happened, in order."""
    events: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, at: float | None = None) -> float:
        self.events.setdefault(name, time.time() if at is None else at)
        return self.events[name]

    def since(self, name: str, start: str = "injected") -> float | None:
        if name not in self.events or start not in self.events:
            return None
        return round(self.events[name] - self.events[start], 2)


class DriftDrill:
    def __init__(self, workdir: Path, *, rate: float = 10.0, seed: int = 7) -> None:
        self.workdir, self.rate, self.rng = workdir, rate, random.Random(seed)
        self.shifted: traffic.Shape | None = None  # what the injected fault sends, for `share` of the requests
        self.share = 0.0
        self._stop = threading.Event()
        self.server: MonitorServer | None = None
        self.prometheus: PrometheusServer | None = None
        self.posted = 0
        self._log_lock = threading.Lock()

    # --- the world ----------------------------------------------------------------------------------------------

    def _stack(self) -> Path:
        """The dev stack with its index on the local embedder (no embeddings endpoint runs here)."""
        stack = yaml.safe_load((PROJECT_ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
        stack["config"]["llmops:retrieval"]["indexes"][0]["embeddingModel"] = EMBEDDING_MODEL
        stack["config"]["llmops:driftMonitor"].pop("embeddings", None)
        path = self.workdir / "Pulumi.dev.yaml"
        path.write_text(yaml.safe_dump(stack, sort_keys=False))
        return path

    def start(self) -> DriftDrill:
        self.stack_file = self._stack()
        self.config = stack_config.load_file(self.stack_file)
        model = next(m for m in self.config.models if m.drift is not None)
        self.model = model.name
        self.policy = model_policy(self.config, self.model)
        monitor_settings = self.config.drift_monitor
        assert monitor_settings is not None and self.policy.drift is not None
        self.scrape_seconds = monitor_settings.scrape_interval_seconds
        self.rule_seconds = monitor_settings.rule_interval_seconds
        self.references = self.workdir / "references"
        self.log = self.workdir / "logs" / "requests.jsonl"
        self.log.parent.mkdir(parents=True)
        # The reference: what this model's requests looked like over a window of logs (10 minutes at the rate).
        history = traffic.log_lines(self.rng, max(2000, int(self.rate * 600)), model=self.model,
                                    start=time.time() - 7200, rate=self.rate)
        reference = build_reference(history, model=self.model, drift=self.policy.drift,
                                    embedder=embedders_for(self._settings())[self.model], release=self.policy.release,
                                    reason="initial", created_by="drill")
        ReferenceStore(str(self.references)).put(reference)
        settings = self._settings()
        self.server = MonitorServer(("127.0.0.1", 0), Monitor(settings, ReferenceStore(str(self.references)),
                                                             embedders_for(settings)))
        self.server.monitor.load_references()
        self.server.run_background()
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.monitor_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        context = RuleContext(runbook_base_url=self.config.alerting.runbook_base_url, environment=ENV,
                              region=self.config.regions.primary)
        from components.drift_monitor import drift_rules

        rules = drift_rules(self.config)
        assert rules is not None
        (self.workdir / "prometheus").mkdir()
        # The stack's own drift rules, at the stack's scrape and evaluation intervals.
        self.prometheus = PrometheusServer(
            self.workdir / "prometheus", {MONITOR_JOB: (self.server.server_address[1], {"namespace": MONITOR_NAMESPACE})},
            [r for r in drift_alerts(rules, context) if r["alert"] in ("Drift", "DriftWatch", "DriftSchemaChanged")],
            interval=f"{self.scrape_seconds}s", evaluation_interval=f"{self.rule_seconds}s").start()
        self._write_targets()
        self.started_at = time.time()
        self._sender = threading.Thread(target=self._send, name="drift-drill-traffic", daemon=True)
        self._sender.start()
        return self

    def _settings(self) -> MonitorSettings:
        return MonitorSettings.model_validate({
            "environment": ENV, "region": self.config.regions.primary, "references": str(self.references),
            "referencePollSeconds": 1.0,
            "models": {self.model: {"drift": self.policy.drift.model_dump(by_alias=True, mode="json"),
                                    "embeddingModel": self.policy.embedding_model}}})

    def _write_targets(self) -> None:
        self.targets_dir = self.workdir / "targets"
        self.targets_dir.mkdir()
        (self.targets_dir / f"{ENV}.yaml").write_text(yaml.safe_dump({
            "environment": ENV, "stack_file": str(self.stack_file), "aws": {"region": "us-east-1"},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"),
            "drift": {"references": str(self.references), "monitor_url": self.monitor_url,
                      "logs": str(self.log.parent)}}))

    def environment(self) -> dict[str, str]:
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "drill",
                "AWS_SECRET_ACCESS_KEY": "drill", "AWS_DEFAULT_REGION": "us-east-1"}

    def _send(self) -> None:
        """Requests at `rate` per second (Poisson), posted as JSON lines every half second -- as the shipper flushes --
        and written to the request log the drift-review runbook reads."""
        next_at = time.time()
        while not self._stop.is_set():
            end = next_at + 0.5
            records = [traffic.record(self.rng, self.shifted if self.shifted and self.rng.random() < self.share
                                      else traffic.BASE, ts=ts, model=self.model)
                       for ts in traffic.arrivals(self.rng, self.rate, next_at, end)]
            self._stop.wait(max(0.0, end - time.time()))
            if records:
                body = "".join(json.dumps(r) + "\n" for r in records).encode()
                request = urllib.request.Request(f"{self.monitor_url}/v1/samples", data=body, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=10):
                        self.posted += len(records)
                except OSError:
                    pass  # the monitor stopping at the end of the drill
                with self._log_lock, self.log.open("a", encoding="utf-8") as out:
                    out.write(body.decode())
            next_at = end

    def stop(self) -> None:
        """Stop what was started (also after a start that failed half way); idempotent."""
        self._stop.set()
        if self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus = None
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # --- the fault and what is seen -----------------------------------------------------------------------------

    def inject(self, scenario: str, share: float) -> float:
        self.share = share
        self.shifted = traffic.Shape(topics=("health",)) if scenario == "topic" else traffic.Shape(prompt_scale=1.5)
        return time.time()

    def monitor_status(self) -> tuple[int, dict[str, Any]]:
        assert self.server is not None
        with self.server.lock:
            judgement = self.server.monitor.last.get(self.model)
        if judgement is None:
            return 0, {}
        return judgement.status, {s.name: round(s.value, 4) for s in judgement.signals}

    def prometheus_status(self) -> float:
        assert self.prometheus is not None
        found = self.prometheus.query(f'max(llmops_drift_status{{model="{self.model}"}})')
        return float(found[0]["value"][1]) if found else 0.0

    def prometheus_reference_version(self) -> int | None:
        assert self.prometheus is not None
        found = self.prometheus.query(f'max(llmops_drift_reference_version{{model="{self.model}"}})')
        return int(float(found[0]["value"][1])) if found else None

    def alert(self, state: str = "firing") -> bool:
        assert self.prometheus is not None
        return bool(self.prometheus.query(f'ALERTS{{alertname="Drift",alertstate="{state}",model="{self.model}"}}'))

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        return wait_until(predicate, timeout, what, interval=0.2)
