"""What the shadow comparison tests share: an environment whose stack has chat-small with rollout.shadow gates, the
recorded log fixtures, and a local OpenAI-compatible judge (stdlib http.server in a thread) with fixed answers."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "shadow"
LABELLED = ROOT / "llmops" / "release" / "judges" / "pairwise-v1.labelled.jsonl"
END = "2026-01-01T00:00:00Z"  # the fixtures' window is the hour before: ts 1767222000 .. 1767225600
TEXT_FIELDS = ("prompt", "answer")


def environment(tmp_path: Path, stack_yaml: dict, shadow: dict[str, Any] | None = None) -> Path:
    """A targets directory for env `shadowtest`: the dev stack with chat-small's rollout.shadow set."""
    model = next(m for m in stack_yaml["config"]["llmops:models"] if m["name"] == "chat-small")
    model["rollout"] = {"shadow": {"minPairs": 5, **(shadow or {})}}
    stack_yaml["config"]["llmops:releaseController"] = {  # a rollout policy needs the controller that applies it
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/llmops/llmops:0.1.0@sha256:" + "0" * 64}
    stack = tmp_path / "Pulumi.shadowtest.yaml"
    stack.write_text(yaml.safe_dump(stack_yaml))
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "shadowtest.yaml").write_text(yaml.safe_dump({
        "environment": "shadowtest", "stack_file": str(stack), "aws": {"region": "us-east-1"},
        "audit": {"uri": str(tmp_path / "audit")}, "evidence": {"uri": str(tmp_path / "evidence")},
        "drift": {"references": str(tmp_path / "references"), "logs": str(FIXTURES)}}))
    return targets


def fixture_texts() -> list[str]:
    """Every prompt and answer in the fixtures: none may reach an output."""
    texts = []
    for path in FIXTURES.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            record = json.loads(record["log"]) if "log" in record else record
            texts += [record[f] for f in TEXT_FIELDS if isinstance(record.get(f), str) and len(record[f]) > 4]
    return texts


def labelled_verdicts() -> dict[tuple[str, str], str]:
    items = [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]
    return {(i["answer_a"], i["answer_b"]): i["human"] for i in items}


ANSWERS = re.compile(r"\[Answer A\]\n(.*)\n\n\[Answer B\]\n(.*)\n\nWhich answer", re.DOTALL)


class Judge:
    """mode: `oracle` answers people's verdict on a labelled pair and, otherwise, names the longer answer (TIE when
    as long); `always-a` answers A. `failures`: HTTP statuses to answer first, one per request."""

    def __init__(self, mode: str = "oracle", failures: list[int] | None = None, model: str = "judge-8b") -> None:
        self.mode, self.failures, self.model = mode, list(failures or []), model
        self.requests: list[dict[str, Any]] = []
        self.known = labelled_verdicts()

    def reply(self, body: dict[str, Any]) -> str:
        found = ANSWERS.search(body["messages"][-1]["content"])
        assert found, "the judge's template changed: the stub cannot find the answers"
        a, b = found.group(1), found.group(2)
        if self.mode == "always-a":
            return "A"
        if (a, b) in self.known:
            return {"a": "A", "b": "B", "tie": "TIE"}[self.known[(a, b)]]
        return "A" if len(a) > len(b) else "B" if len(b) > len(a) else "TIE"


@contextmanager
def judge_server(judge: Judge) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            judge.requests.append(body)
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": "not found"})
            elif judge.failures:
                status = judge.failures.pop(0)
                # a body that echoes the request, as some servers do: it must never reach an error message
                self._send(status, {"error": body["messages"][-1]["content"]}, {"Retry-After": "0"})
            else:
                self._send(200, {"id": "x", "object": "chat.completion", "model": judge.model,
                                 "choices": [{"index": 0, "message": {"role": "assistant",
                                                                      "content": judge.reply(body)},
                                              "finish_reason": "stop"}]})

        def _send(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
