"""The canary drill: the rollback drill's world (MLflow store, Kubernetes API, Prometheus, moto) with traffic split
between the stable release and a canary by the serving route's live weights, whose errors, first-token latency or
quality scores change at a chosen moment at a chosen rate -- and the release controller deciding on real
Prometheus. `llmops drill canary --scenario regression|healthy|no-traffic|quality-dip`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import yaml

from components.manifests.route import canary_backend, canary_weight, stable_backend
from llmops.drill.backends import QuietHTTPServer, free_port
from llmops.drill.rollback_drill import NAMESPACE, SERVICE, RollbackDrill

# Prometheus buckets as vLLM's TTFT histogram has them.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                80.0)


@dataclass(frozen=True)
class Behaviour:
    """How a track answers: error share, first-token latency (lognormal), and the judges' mean scores."""
    error_rate: float = 0.005
    ttft_median_seconds: float = 0.2
    ttft_sigma: float = 0.5
    groundedness: float = 0.9
    task_completion: float = 0.95
    toxicity: float = 0.001


HEALTHY = Behaviour()
SCENARIOS: dict[str, Behaviour | None] = {
    "regression": replace(HEALTHY, error_rate=0.10),  # 20x the errors
    "latency": replace(HEALTHY, ttft_median_seconds=0.2 * 1.5),  # p95 +50%
    "quality-dip": replace(HEALTHY, groundedness=0.5),
    "healthy": None,  # nothing changes
    "no-traffic": None,  # no requests at all
}
JUDGED_SHARE = 0.5  # the share of requests an evaluator samples and scores


class _Track:
    def __init__(self, service: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, Summary

        self.service, self.port, self.behaviour = service, free_port(), HEALTHY
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "Total number of requests by method, status and handler.",
                                ["handler", "method", "status"], registry=self.registry)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              ["model_name", "engine"], registry=self.registry, buckets=TTFT_BUCKETS)
        self.prompt = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", ["model_name"],
                              registry=self.registry)
        self.generated = Counter("vllm:generation_tokens", "Number of generation tokens processed.", ["model_name"],
                                 registry=self.registry)
        self.judge = Summary("llmops_judge_score", "Sampled judge scores of answers.", ["judge"], registry=self.registry)

    def serve(self, rng: random.Random, count: int) -> None:
        b = self.behaviour
        for _ in range(count):
            failed = rng.random() < b.error_rate
            self.requests.labels("/v1/chat/completions", "POST", "5xx" if failed else "2xx").inc()
            if failed:
                continue
            self.ttft.labels(SERVICE, "0").observe(b.ttft_median_seconds * math.exp(rng.gauss(0, b.ttft_sigma)))
            self.prompt.labels(SERVICE).inc(rng.randint(200, 800))
            self.generated.labels(SERVICE).inc(rng.randint(50, 400))
            if rng.random() < JUDGED_SHARE:
                self.judge.labels("groundedness").observe(1.0 if rng.random() < b.groundedness else 0.0)
                self.judge.labels("task_completion").observe(1.0 if rng.random() < b.task_completion else 0.0)
                self.judge.labels("toxicity").observe(1.0 if rng.random() < b.toxicity else 0.0)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class CanaryTraffic:
    """Requests at `rate` per second, split by the route's weights as the Kubernetes API holds them (read again
    whenever something writes to the route), each track exported for Prometheus as vLLM would."""

    def __init__(self, drill: RollbackDrill, rate: float, seed: int = 11) -> None:
        self.drill, self.rate, self.seed = drill, rate, seed
        self.stable, self.canary = _Track(stable_backend(SERVICE)), _Track(canary_backend(SERVICE))
        self.weight = 0
        self.zeroed_at: float | None = None  # when the traffic first saw the canary's weight go to 0
        self._seen = 0
        self._stop = threading.Event()
        self.served = {"stable": 0, "canary": 0}

    def targets(self) -> dict[str, tuple[int, dict[str, str]]]:
        return {track.service: (track.port, {"namespace": NAMESPACE, "service": track.service})
                for track in (self.stable, self.canary)}

    def _read_weight(self) -> None:
        seen, written = self.drill.k8s.writes_since(self._seen, f"/httproutes/{SERVICE}")
        if written or self._seen == 0:
            route = self.drill.k8s.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE,
                                                                       "httproutes", SERVICE)
            weight = canary_weight(route)
            if weight == 0 and self.weight > 0 and self.zeroed_at is None:
                self.zeroed_at = time.time()
            self.weight = weight
        self._seen = seen

    def _loop(self) -> None:
        rng = random.Random(self.seed)
        while not self._stop.wait(0.1):
            try:
                self._read_weight()
            except Exception:  # noqa: BLE001 - the API busy or the route being re-seeded: keep the last weight
                pass
            count = _poisson(rng, self.rate * 0.1)
            to_canary = sum(1 for _ in range(count) if rng.random() * 100 < self.weight)
            self.canary.serve(rng, to_canary)
            self.stable.serve(rng, count - to_canary)
            self.served["canary"] += to_canary
            self.served["stable"] += count - to_canary

    def start(self) -> CanaryTraffic:
        from http.server import BaseHTTPRequestHandler

        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.servers = []
        for track in (self.stable, self.canary):
            registry = track.registry

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self, registry: Any = registry) -> None:  # noqa: N802 - http.server's name
                    body = generate_latest(registry)
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args: Any) -> None:
                    return

            server = QuietHTTPServer(("127.0.0.1", track.port), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def inject(self, scenario: str) -> float:
        """The canary changes now (returns the moment); `no-traffic` stops all requests."""
        behaviour = SCENARIOS[scenario]
        if scenario == "no-traffic":
            self.rate = 0.0
        elif behaviour is not None:
            self.canary.behaviour = behaviour
        return time.time()

    def heal(self, rate: float) -> None:
        self.canary.behaviour, self.rate, self.zeroed_at = HEALTHY, rate, None

    def stop(self) -> None:
        self._stop.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


class CanaryDrill(RollbackDrill):
    """The rollback drill's world serving a healthy stable release and a canary at the route's weight, with a rollout
    policy short enough to watch (dwell and intervals of seconds; the staging file's steps and limits)."""

    def __init__(self, *args: Any, rate: float = 40.0, dwell_seconds: int = 8, interval_seconds: int = 2,
                 min_requests: int = 40, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rate, self.dwell_seconds, self.interval_seconds, self.min_requests = (rate, dwell_seconds,
                                                                                   interval_seconds, min_requests)

    def _scrape_targets(self) -> dict[str, tuple[int, dict[str, str]]]:
        self.traffic = CanaryTraffic(self, self.rate).start()
        self._started.append(self.traffic)
        return self.traffic.targets()  # the rollback drill's exporter is not scraped: these are the tracks

    def reset(self) -> None:
        super().reset()
        from components.release import PAUSED_TAG
        from llmops.drill.rollback_drill import REGISTERED_MODEL

        client = self.registry.client
        for version in client.search_model_versions(f"name='{REGISTERED_MODEL}'"):
            if PAUSED_TAG in version.tags:
                client.delete_model_version_tag(REGISTERED_MODEL, version.version, PAUSED_TAG)
        if hasattr(self, "traffic"):
            self.traffic.heal(self.rate)
        document = yaml.safe_load(self.stack_file.read_text())
        model = next(m for m in document["config"]["llmops:models"] if m["name"] == SERVICE)
        model["rollout"] = {**model["rollout"], "minDwellSeconds": self.dwell_seconds,
                            "intervalSeconds": self.interval_seconds, "minRequests": self.min_requests}
        self.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def wait_until_degraded(self, timeout: float = 30) -> None:
        """Until Prometheus has seen both tracks answer."""
        from llmops.drill.backends import wait_until

        wait_until(lambda: len(self.prometheus.query('sum by (service) (http_requests_total{namespace="serving"})')) == 2,
                   timeout, "both tracks on Prometheus")

    def canary_request_rate(self, window: str = "2s") -> float:
        found = self.prometheus.query(f'sum(rate(http_requests_total{{service="{canary_backend(SERVICE)}"}}[{window}]))')
        return float(found[0]["value"][1]) if found else 0.0
