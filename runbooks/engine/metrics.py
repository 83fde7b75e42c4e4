"""Prometheus metrics for runs and steps, pushed to a Pushgateway when the targets name one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway


class RunMetrics:
    def __init__(self, runbook: str, environment: str) -> None:
        self.runbook, self.environment = runbook, environment
        self.registry = CollectorRegistry()
        labels = ["runbook", "environment"]
        self.runs = Counter("llmops_runbook_runs_total", "Runbook runs by outcome", [*labels, "outcome"],
                            registry=self.registry)
        self.steps = Counter("llmops_runbook_steps_total", "Runbook steps by outcome", [*labels, "step", "outcome"],
                             registry=self.registry)
        self.step_seconds = Histogram("llmops_runbook_step_duration_seconds", "Time spent in each step",
                                      [*labels, "step"], registry=self.registry,
                                      buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600))
        self.last_success = Gauge("llmops_runbook_last_success_timestamp_seconds", "When the runbook last succeeded",
                                  labels, registry=self.registry)

    def step(self, step: str, outcome: str, seconds: float) -> None:
        self.steps.labels(self.runbook, self.environment, step, outcome).inc()
        self.step_seconds.labels(self.runbook, self.environment, step).observe(seconds)

    def finished(self, outcome: str) -> None:
        self.runs.labels(self.runbook, self.environment, outcome).inc()
        if outcome == "succeeded":
            self.last_success.labels(self.runbook, self.environment).set_to_current_time()

    def push(self, gateway: str | None, run_id: str) -> None:
        if gateway:
            push_to_gateway(gateway, job="llmops_runbook", registry=self.registry,
                            grouping_key={"runbook": self.runbook, "environment": self.environment, "run_id": run_id},
                            timeout=10)
