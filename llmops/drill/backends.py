"""Real local backends for drills and tests, started on 127.0.0.1 and stopped by whoever starts them.

- a Kubernetes API (kmock's emulator, used through the official client), with a tiny stand-in
  for the Deployment controller that reports a rollout complete once the template changes;
- a prometheus_client exporter that behaves like a vLLM server: healthy or degraded depending on
  which model version the Deployment currently serves;
- Debian's Prometheus scraping it every half second (with a page-level alert rule);
- an MLflow model registry in a SQLite store (MLflow's own client and store).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


def _prctl() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # resolved here, not in the forked child: a child of a threaded process must not import


def die_with_parent() -> None:
    """For a server process we start: on Linux, the kernel sends it SIGTERM when we die, even by SIGKILL, so a
    crashed drill or test leaves no server listening. Elsewhere (no prctl), `stop` is the only way."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 10 s; always reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class QuietHTTPServer(ThreadingHTTPServer):
    """A drill's HTTP server: a client that went away mid-answer costs no traceback on stderr (the tests' and the
    operator's output stay readable); daemon threads, so stopping never waits for a slow client."""
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


def stop_all(started: list[Any]) -> None:
    """Stop every server in `started`, last first, emptying the list (also after a start that failed half way): one
    that will not stop does not keep the rest running. Idempotent."""
    while started:
        thing = started.pop()
        try:
            thing.stop()
        except Exception:  # noqa: BLE001 - stop the rest regardless
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ready(url: str) -> bool:
    """True once a server's readiness endpoint answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class MotoServer:
    """moto's server (AWS APIs over HTTP) in a process of its own. Not moto's in-process thread: its Flask apps are
    built on a service's first request, and Werkzeug builds their routes through the `ast` module, whose depth
    counter CPython 3.11 shares between threads (python/cpython#106905): a test parsing source at that moment failed
    with "AST constructor recursion depth mismatch". A process of its own also keeps its CPU off the caller's."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            wait_until(lambda: self.process.poll() is not None or http_ready(f"{self.url}/moto-api/"), 60,
                       "moto's server to answer")
        except TimeoutError:
            stop_process(self.process)
            raise RuntimeError("moto's server did not answer within 60 s") from None
        if self.process.poll() is not None:
            raise RuntimeError(f"moto's server exited with {self.process.returncode} (pip install 'moto[server]')")
        return self

    def stop(self) -> None:
        stop_process(self.process)


class KubernetesApi:
    """kmock's Kubernetes emulator on a real HTTP port, run in a thread with its own event loop."""

    def __init__(self) -> None:
        import kmock

        self._kmock = kmock
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.url = ""
        self.handler: Any = None
        # kmock matches every request against its whole request log, so a long-lived emulator slows down as the log
        # grows (quadratic over a test session); `forget_requests` empties it, request numbers stay absolute.
        self._forgotten = 0
        self._log_lock = threading.Lock()

    def _serve(self) -> None:
        async def main() -> None:
            async with self._kmock.KubernetesEmulator() as handler, self._kmock.Server(handler) as server:
                self.handler, self.url = handler, str(server.url).rstrip("/")
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(main())

    def start(self) -> KubernetesApi:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("kmock did not start")
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        self.api = client.ApiClient(configuration)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def patches(self, path_fragment: str) -> int:
        """How many PATCH requests reached objects whose URL contains the fragment (not /status)."""
        return sum(1 for request in list(self.handler)
                   if request.method.name == "PATCH" and path_fragment in str(request.url)
                   and not str(request.url).split("?")[0].endswith("/status"))

    def writes_since(self, seen: int, path_fragment: str) -> tuple[int, bool]:
        """How many requests the emulator has had, and whether any since the first `seen` wrote to an object whose URL
        contains the fragment: watchers poll this (in memory) instead of reading the object many times a second."""
        with self._log_lock:
            start = max(0, seen - self._forgotten)
            new = self.handler._requests[start:]  # kmock's log of every request, in order
            return self._forgotten + start + len(new), any(r.method.name != "GET" and path_fragment in str(r.url)
                                                           for r in new)

    def forget_requests(self) -> None:
        """Empty the emulator's request log (between tests: `patches` counts from zero again)."""
        async def clear() -> int:
            count = len(self.handler._requests)
            self.handler._requests.clear()
            return count

        with self._log_lock:
            self._forgotten += asyncio.run_coroutine_threadsafe(clear(), self._loop).result(timeout=10)

    def seed(self, deployment: dict[str, Any], route: dict[str, Any] | None) -> None:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        from kubernetes.client.exceptions import ApiException

        for delete in (lambda: self.apps.delete_namespaced_deployment(name, namespace),
                       lambda: self.custom.delete_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace,
                                                                           "httproutes", name)):
            try:
                delete()
            except ApiException:
                pass
        self.apps.create_namespaced_deployment(namespace, deployment)
        replicas = deployment["spec"].get("replicas", 1)
        self.apps.patch_namespaced_deployment_status(name, namespace, {"status": {
            "replicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas}})
        if route is not None:
            self.custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)

    def seed_node(self, name: str, labels: dict[str, str], *, ready: bool = True) -> None:
        """A Node with these labels (created if it does not exist), its Ready condition as given. kmock serves what is
        declared or created: Nodes are declared first, so they can be listed before any exists."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        self.handler.resources["v1/nodes"] = self.handler.ResourceInfo(namespaced=False, kind="Node", singular="node")
        core = client.CoreV1Api(self.api)
        try:
            core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
        except ApiException:
            pass  # there already
        core.patch_node_status(name, {"status": {"conditions": [{"type": "Ready",
                                                                 "status": "True" if ready else "False"}]}})


class RolloutController:
    """Stands in for the Deployment controller kmock lacks: when a Deployment's template changes, it
    reports the rollout in progress, then complete after `delay` seconds (status subresource)."""

    def __init__(self, k8s: KubernetesApi, namespace: str, name: str, delay: float = 0.3) -> None:
        self.k8s, self.namespace, self.name, self.delay = k8s, namespace, name, delay
        self._stop = threading.Event()
        self._held = False
        self._seen: str | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _template_key(self) -> str | None:
        deployment = self.k8s.apps.read_namespaced_deployment(self.name, self.namespace)
        return json.dumps(self.k8s.api.sanitize_for_serialization(deployment.spec.template), sort_keys=True)

    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException

        seen, fresh = 0, 0
        while not self._stop.wait(0.05):
            seen, written = self.k8s.writes_since(seen, f"/deployments/{self.name}")
            # A write is logged before the emulator applies it: look again for a quarter of a second after it.
            fresh = 5 if written else max(0, fresh - 1)
            if not fresh and self._seen is not None:
                continue  # nothing wrote to the Deployment: its template cannot have changed
            try:
                key = self._template_key()
                if self._seen is None:
                    self._seen = key
                elif key != self._seen:
                    self._seen = key
                    self.k8s.apps.patch_namespaced_deployment_status(self.name, self.namespace,
                                                                     {"status": {"updatedReplicas": 0}})
                    until = time.monotonic() + self.delay
                    while (self._held or time.monotonic() < until) and not self._stop.wait(0.02):
                        pass
                    deployment = self.k8s.apps.read_namespaced_deployment(self.name, self.namespace)
                    replicas = deployment.spec.replicas or 1
                    self.k8s.apps.patch_namespaced_deployment_status(self.name, self.namespace, {"status": {
                        "replicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas}})
            except ApiException:
                continue

    def start(self) -> RolloutController:
        self._thread.start()
        return self

    def reset(self) -> None:
        self._seen = None
        self._held = False

    def hold(self) -> None:
        """Rollouts that start from now on stay in progress until `release` (a stuck rollout, on demand)."""
        self._held = True

    def release(self) -> None:
        self._held = False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class SimulatedVllm:
    """A prometheus_client exporter with vLLM's series, fed 40 requests a second. Versions listed as
    bad fail 20% of requests and answer slowly; what version runs is read from the Deployment."""

    def __init__(self, model: str, version_of: Any, bad_versions: set[str]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.model, self.version_of, self.bad_versions = model, version_of, bad_versions
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "Total number of requests by method, status and handler.",
                                ["handler", "method", "status"], registry=self.registry)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              ["model_name", "engine"], registry=self.registry,
                              buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0))
        self.serving: str | None = None
        self._stop = threading.Event()
        self.port = free_port()

    def _tick(self, rng: random.Random, refresh: bool = True) -> None:
        if refresh:
            try:
                self.serving = self.version_of()
            except Exception:  # noqa: BLE001 - keep serving the last known version while the API is busy
                pass
        bad = self.serving in self.bad_versions
        for _ in range(4):
            failed = bad and rng.random() < 0.2
            self.requests.labels("/v1/chat/completions", "POST", "5xx" if failed else "2xx").inc()
            self.ttft.labels(self.model, "0").observe(rng.uniform(1.5, 4.0) if bad else rng.uniform(0.05, 0.4))

    def _loop(self) -> None:
        rng = random.Random(7)
        ticks = 0
        while not self._stop.wait(0.1):
            self._tick(rng, refresh=ticks % 5 == 0)  # which version runs: read twice a second
            ticks += 1

    def start(self) -> SimulatedVllm:
        # Always the text format: prometheus_client answers a Prometheus asking for OpenMetrics 1.0 with
        # names escaped (`vllm:` becomes `vllm_`), which would hide vLLM's real metric names.
        from http.server import BaseHTTPRequestHandler

        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's method name
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


class PrometheusServer:
    """Debian's Prometheus scraping the exporter every half second (or at `interval`), with the rules it is given."""

    def __init__(self, workdir: Path, targets: dict[str, tuple[int, dict[str, str]]], rules: list[dict], *,
                 interval: str = "500ms", evaluation_interval: str = "500ms") -> None:
        self.binary = shutil.which("prometheus")
        if self.binary is None:
            raise RuntimeError("Debian's prometheus is missing (apt-get install --no-install-recommends prometheus); "
                               "scripts/dev.sh installs it")
        self.workdir, self.port = workdir, free_port()
        # Every half second: a drill sees a release change (and its alert clear) within a couple of seconds.
        (workdir / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "test", "interval": evaluation_interval,
                                                                       "rules": rules}]}))
        config = {"global": {"scrape_interval": interval, "evaluation_interval": evaluation_interval},
                  "rule_files": ["rules.yml"],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": labels}]}
                                     for job, (port, labels) in targets.items()]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self.process = subprocess.Popen(
            [str(self.binary), f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir, preexec_fn=die_with_parent)
        wait_until(lambda: http_ready(f"{self.url}/-/ready"), 30, "Prometheus to be ready")
        return self

    def query(self, expr: str) -> list[dict]:
        import urllib.parse

        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=5) as r:
            return json.load(r)["data"]["result"]

    def stop(self) -> None:
        stop_process(self.process)


class ModelRegistryStore:
    """MLflow's own client on a SQLite store, with a trigger that counts every alias write."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "mlflow.db"
        self.uri = f"sqlite:///{self.path}"
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.client.search_registered_models()  # creates the schema
        with sqlite3.connect(self.path) as db:
            db.executescript("""
                CREATE TABLE IF NOT EXISTS alias_writes (n INTEGER);
                CREATE TRIGGER IF NOT EXISTS count_alias_insert AFTER INSERT ON registered_model_aliases
                    BEGIN INSERT INTO alias_writes VALUES (1); END;
                CREATE TRIGGER IF NOT EXISTS count_alias_update AFTER UPDATE ON registered_model_aliases
                    BEGIN INSERT INTO alias_writes VALUES (1); END;
            """)

    def register(self, model: str, versions: dict[str, dict[str, str]]) -> None:
        self.client.create_registered_model(model)
        for version, tags in versions.items():
            artifacts = self.directory / "artifacts" / model / version
            artifacts.mkdir(parents=True)
            (artifacts / "config.json").write_text("{}")
            created = self.client.create_model_version(model, artifacts.as_uri(), tags=tags)
            assert str(created.version) == version

    def alias_writes(self) -> int:
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT COUNT(*) FROM alias_writes").fetchone()[0]

    def reset_alias_writes(self) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute("DELETE FROM alias_writes")


class PushgatewayServer:
    """Debian's Prometheus Pushgateway, where runbook metrics are pushed."""

    def __init__(self) -> None:
        self.binary = shutil.which("prometheus-pushgateway")
        if self.binary is None:
            raise RuntimeError("Debian's prometheus-pushgateway is missing "
                               "(apt-get install --no-install-recommends prometheus-pushgateway); scripts/dev.sh installs it")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> PushgatewayServer:
        # Debian's build persists to /var/lib/prometheus by default: every instance would share (and keep) one
        # store. In memory only, each drill and test starts empty.
        self.process = subprocess.Popen([str(self.binary), f"--web.listen-address=127.0.0.1:{self.port}", "--persistence.file="],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        wait_until(lambda: http_ready(f"{self.url}/-/ready"), 30, "the Pushgateway to be ready")
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return response.read().decode()

    def stop(self) -> None:
        stop_process(self.process)
