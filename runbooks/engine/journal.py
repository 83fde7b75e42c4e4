"""The durable journal of one run: an append-only, fsynced JSON-lines file per run.

Every event is on disk before the engine moves on, so a run killed at any point can be resumed
with `--resume RUN_ID`: the journal says which steps started and finished, with their outputs,
and which notifications went out.

Each record carries a checksum of its own content (`sum`), so a record that was altered or damaged
is detected instead of silently replayed. A crash mid-write leaves a *torn* last line (no newline):
readers ignore it as an unfinished write, and the next writer starts on a fresh line after noting
the torn line (`torn_record`), so it is never mistaken for corruption later. A damaged record
anywhere else stops the reader with the file and line (`JournalCorrupt`). A finished run also
leaves `finished.json` beside the journal, so it stays finished whatever happens to the journal.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from runbooks.engine.model import InputError, JournalCorrupt, RunbookError, RunFinished
from runbooks.engine.services import write_durably

FINISHED = "finished.json"


def _checksum(record: Mapping[str, Any]) -> str:
    body = json.dumps({k: v for k, v in record.items() if k != "sum"}, sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def encode(event: str, data: Mapping[str, Any]) -> str:
    """One journal line (without its newline): the record and its checksum."""
    record = json.loads(json.dumps({"ts": time.time(), "event": event, **data}, default=str))
    record["sum"] = _checksum(record)
    return json.dumps(record, sort_keys=True)


class Journal:
    def __init__(self, directory: Path, run_id: str) -> None:
        self.run_id = run_id
        self.directory = directory / run_id
        self.path = self.directory / "journal.jsonl"
        self.finished_path = self.directory / FINISHED

    @classmethod
    def create(cls, directory: str | Path, run_id: str) -> Journal:
        journal = cls(Path(directory).expanduser(), run_id)
        journal.directory.mkdir(parents=True, exist_ok=False)
        return journal

    @classmethod
    def open(cls, directory: str | Path, run_id: str) -> Journal:
        """The journal of a run to resume: it must exist and not be finished (RunFinished, exit 2)."""
        journal = cls(Path(directory).expanduser(), run_id)
        if journal.finished_path.exists():
            outcome = _read_outcome(journal.finished_path)
            raise RunFinished(f"run {run_id} already finished ({outcome}); there is nothing to resume")
        if not journal.path.exists():
            raise InputError(f"no journal for run {run_id} in {journal.directory.parent}; "
                             "check --resume and the environment's state_dir")
        return journal

    # --- writing ----------------------------------------------------------------------------------------

    def append(self, event: str, **data: Any) -> None:
        line = encode(event, data) + "\n"
        torn = self._torn_tail()
        if torn is not None:  # start on a fresh line, and say which line was an unfinished write
            line = "\n" + encode("torn_record", {"line": torn}) + "\n" + line
        with open(self.path, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def _torn_tail(self) -> int | None:
        """The number of the last line if it has no newline (a write cut short), else None."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return None
            handle.seek(0)
            return handle.read().count(b"\n") + 1

    def finish(self, outcome: str) -> None:
        """The run is over: journal it, and leave a marker that keeps it finished whatever happens to the journal."""
        self.append("run_finished", outcome=outcome)
        try:
            write_durably(self.finished_path, json.dumps({"run_id": self.run_id, "outcome": outcome,
                                                          "at": time.time()}) + "\n")
        except FileExistsError:
            pass

    # --- reading ----------------------------------------------------------------------------------------

    def events(self) -> Iterator[Mapping[str, Any]]:
        """Every intact record in order. A torn last line is skipped; a damaged record elsewhere raises."""
        with open(self.path, "rb") as handle:
            raw = handle.read()
        lines = raw.split(b"\n")
        complete = raw.endswith(b"\n") or not raw
        if complete:
            lines = lines[:-1]
        bad: int | None = None  # a damaged line, acceptable only if the next record names it as torn
        for number, line in enumerate(lines, 1):
            last = number == len(lines)
            if last and not complete:
                if bad is not None:
                    raise self._corrupt(bad, "damaged record")
                return  # a torn last line: an unfinished write, nothing after it counts yet
            record, problem = _decode(line)
            if problem is not None:
                if bad is not None:
                    raise self._corrupt(bad, "damaged record")
                bad = number
                bad_problem = problem
                continue
            assert record is not None
            if bad is not None:
                if record.get("event") != "torn_record" or record.get("line") != bad:
                    raise self._corrupt(bad, bad_problem)
                bad = None
                continue
            if record.get("event") == "torn_record":
                continue
            yield record
        if bad is not None:
            raise self._corrupt(bad, bad_problem)

    def _corrupt(self, line: int, problem: str) -> JournalCorrupt:
        return JournalCorrupt(f"{self.path}: line {line}: {problem}; the journal cannot be trusted, so the run is not "
                              "resumed from it. Nothing was changed. Compare the world with the run's evidence and "
                              "audit records, or plan a fresh run (--dry-run) to see what is still to do")

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


def _decode(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A record and None, or None and what is wrong with the line."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "not a JSON record (damaged)"
    if not isinstance(record, dict) or "event" not in record:
        return None, "not a journal record"
    if "sum" not in record:
        return None, "a record without a checksum (altered, or written by an older llmops)"
    if record["sum"] != _checksum(record):
        return None, "checksum mismatch (the record was altered or damaged)"
    return record, None


def _read_outcome(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("outcome", "finished"))
    except (OSError, ValueError, AttributeError):
        return "finished"


def unfinished_runs(state_dir: str | Path, runbook: str, operator: str | None = None, **params: Any) -> list[str]:
    """Run ids of `runbook` that started and never finished (crashed, interrupted, or paused at a gate), whose
    parameters include `params` (and started by `operator`, if given), oldest first: what an automatic caller
    resumes before it starts anything new."""
    found = []
    for path in sorted(Path(state_dir).expanduser().glob("*/journal.jsonl")):
        journal = Journal(path.parent.parent, path.parent.name)
        if journal.finished_path.exists():
            continue
        try:
            started = journal.first("run_started")
        except RunbookError:
            continue  # a damaged journal is for a person (resume names the line); never resumed automatically
        if started and started.get("runbook") == runbook and operator in (None, started.get("operator")) and all(
                (started.get("params") or {}).get(k) == v for k, v in params.items()):
            found.append(journal.run_id)
    return found
