"""The controller's own metrics, so it can be alerted on when it stops deciding (LlmopsReleaseControllerStalled)."""

from __future__ import annotations

from typing import Any


class ControllerMetrics:
    def __init__(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.decisions = Counter("llmops_release_decisions", "Decisions the release controller made, by action.",
                                 ["model", "action"], registry=self.registry)
        self.last = Gauge("llmops_release_last_decision_timestamp_seconds",
                          "When the release controller last decided for a model.", ["model"], registry=self.registry)
        start_http_server(port, registry=self.registry)

    def record(self, outcome: Any) -> None:
        self.decisions.labels(outcome.model, str(outcome.decision.get("action"))).inc()
        self.last.labels(outcome.model).set(outcome.at)
