"""The durable journal of one run: an append-only, fsynced JSON-lines file per run.

Every event is on disk before the engine moves on, so a run killed at any point can be resumed
with `--resume RUN_ID`: the journal says which steps started and finished, with their outputs,
and which notifications went out.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from runbooks.engine.model import InputError


class Journal:
    def __init__(self, directory: Path, run_id: str) -> None:
        self.run_id = run_id
        self.directory = directory / run_id
        self.path = self.directory / "journal.jsonl"

    @classmethod
    def create(cls, directory: str | Path, run_id: str) -> Journal:
        journal = cls(Path(directory).expanduser(), run_id)
        journal.directory.mkdir(parents=True, exist_ok=False)
        return journal

    @classmethod
    def open(cls, directory: str | Path, run_id: str) -> Journal:
        journal = cls(Path(directory).expanduser(), run_id)
        if not journal.path.exists():
            raise InputError(f"no journal for run {run_id} in {journal.directory.parent}; "
                             "check --resume and the environment's state_dir")
        return journal

    def append(self, event: str, **data: Any) -> None:
        line = json.dumps({"ts": time.time(), "event": event, **data}, sort_keys=True, default=str)
        with open(self.path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> Iterator[Mapping[str, Any]]:
        with open(self.path) as handle:
            for line in handle:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        return  # a torn last line from a crash mid-write: everything before it counts

    def first(self, event: str) -> Mapping[str, Any] | None:
        return next((e for e in self.events() if e["event"] == event), None)

    def has(self, event: str, **match: Any) -> bool:
        return any(e["event"] == event and all(e.get(k) == v for k, v in match.items()) for e in self.events())

    def step_state(self, step: str) -> str:
        """'done', 'started' or 'pending'."""
        state = "pending"
        for event in self.events():
            if event.get("step") == step:
                if event["event"] == "step_done":
                    state = "done"
                elif event["event"] == "step_started" and state != "done":
                    state = "started"
        return state

    def step_outputs(self) -> dict[str, Mapping[str, Any]]:
        return {e["step"]: e.get("outputs") or {} for e in self.events() if e["event"] == "step_done"}
