"""`llmops drift watch`: the monitor behind HTTP.

    POST /v1/samples   JSON lines (request-log records; Fluent Bit's http output, Format json_lines)
    GET  /metrics      Prometheus exposition
    GET  /v1/state     what the monitor holds: numbers and vectors, never a prompt
    GET  /healthz      alive
    GET  /readyz       the references were read (models without one are listed; they are judged once it exists)

A thread judges the windows every second and another follows the reference versions. A body larger than the
settings' limit is refused (413) unread; a line that is not a record is counted and dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmops.drift.monitor import Monitor
from llmops.drift.reference import ReferenceStore
from llmops.drift.settings import MonitorSettings
from llmops.retrieval.embed import Embedder, embedder_for

log = logging.getLogger("llmops.drift")


def embedders_for(settings: MonitorSettings) -> dict[str, Embedder]:
    embedders: dict[str, Embedder] = {}
    for model, watched in settings.models.items():
        if watched.drift.embedding is None or watched.embedding_model is None:
            continue
        e = settings.embeddings
        embedders[model] = embedder_for(watched.embedding_model, url=e.url if e else None,
                                        dimension=e.dimension if e else None, api_key_env=e.api_key_env if e else None)
    return embedders


def store_for(settings: MonitorSettings) -> ReferenceStore:
    def s3() -> Any:
        import boto3

        aws = settings.aws
        return boto3.client("s3", region_name=aws.region if aws else settings.region,
                            endpoint_url=aws.endpoint_url if aws else None)
    return ReferenceStore(settings.references, s3)


class MonitorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], monitor: Monitor) -> None:
        super().__init__(address, _Handler)
        self.monitor = monitor
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is not worth a traceback on stderr: one line in the log."""
        import sys

        log.warning("a request from %s failed: %s", client_address[0] if client_address else "?",
                    sys.exc_info()[1].__class__.__name__)

    def run_background(self, clock: Callable[[], float] = time.time) -> list[threading.Thread]:
        """The judging and reference-following loops, as daemon threads."""
        threads = [threading.Thread(target=self._judge, args=(clock,), name="drift-judge", daemon=True),
                   threading.Thread(target=self._follow, name="drift-references", daemon=True)]
        for thread in threads:
            thread.start()
        return threads

    def _judge(self, clock: Callable[[], float]) -> None:
        while not self.stopping.is_set():
            now = clock()
            with self.lock:
                self.monitor.tick(now)
            self.stopping.wait(1.0 - (clock() % 1.0))  # on the second: each judgement ends a whole second

    def _follow(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.lock:
                    changed = self.monitor.load_references()
                for change in changed:
                    log.info("judging against reference %s", change)
            except Exception as error:  # noqa: BLE001 - a store briefly unreachable: keep the references loaded
                log.warning("reading the drift references failed: %s", error)
            self.stopping.wait(self.monitor.settings.reference_poll_seconds)

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()


class _Handler(BaseHTTPRequestHandler):
    server: MonitorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return  # no access log: a path or query could carry anything

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._reply(status, json.dumps(data).encode())

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        monitor = self.server.monitor
        if self.path == "/metrics":
            with self.server.lock:
                body = generate_latest(monitor.registry)
            self._reply(200, body, CONTENT_TYPE_LATEST)
        elif self.path == "/v1/state":
            with self.server.lock:
                state = monitor.state()
            self._json(200, state)
        elif self.path == "/healthz":
            self._json(200, {"status": "ok"})
        elif self.path == "/readyz":
            ready = monitor.ready
            self._json(200 if ready else 503, {"ready": ready, "waiting_for_reference":
                                               sorted(set(monitor.settings.models) - set(monitor.windows))})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        if self.path != "/v1/samples":
            self._json(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._json(411, {"error": "a Content-Length is required"})
            return
        limit = self.server.monitor.settings.max_body_bytes
        if length < 0 or length > limit:
            self.close_connection = True
            self._json(413, {"error": f"body of {length} bytes; at most {limit}"})
            return
        body = self.rfile.read(length)
        batch = self.server.monitor.read(body.splitlines())
        accepted, rejected = batch.accepted, dict(batch.rejected)
        with self.server.lock:
            self.server.monitor.add(batch)
        self._json(200, {"accepted": accepted, "rejected": rejected})


def serve(settings: MonitorSettings, host: str, port: int, ready: Callable[[MonitorServer], None] | None = None) -> None:
    monitor = Monitor(settings, store_for(settings), embedders_for(settings))
    server = MonitorServer((host, port), monitor)
    try:
        monitor.load_references()
    except Exception as error:  # noqa: BLE001 - not ready until the store answers; the follower keeps trying
        log.warning("reading the drift references failed: %s", error)
    server.run_background()
    if ready is not None:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.stopping.set()
        server.server_close()
