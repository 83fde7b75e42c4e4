"""The engine's own services, as small protocols: a lock, a notifier, and stores for audit records and
evidence. Local implementations (files) live here; cloud ones (DynamoDB, SNS, S3) are adapters."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from runbooks.engine.model import LockHeld, RecordsUnavailable


class Lock(Protocol):
    def acquire(self, key: str, *, holder: str, run_id: str, ttl_seconds: int) -> None:
        """Take the lock, or raise LockHeld naming the holder. A run may re-take its own lock (resume)."""

    def refresh(self, key: str, *, run_id: str, ttl_seconds: int) -> None: ...

    def release(self, key: str, *, run_id: str) -> None: ...


class Notifier(Protocol):
    def publish(self, *, subject: str, message: Mapping[str, Any], dedup_id: str) -> None: ...


class RecordStore(Protocol):
    """Write-once documents by key: audit records, evidence bundles."""

    def put_once(self, key: str, document: Mapping[str, Any]) -> bool:
        """Store it unless the key exists; True if this call stored it."""

    def get(self, key: str) -> Mapping[str, Any] | None: ...

    def check_writable(self, probe: str) -> None:
        """Raise RecordsUnavailable unless documents can be written here (`probe`: a key this check may use)."""


def write_durably(path: Path, text: str) -> None:
    """Write and fsync a new file (and its directory entry), failing if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def append_durably(path: Path, line: str) -> None:
    """Append one line and fsync it. If the file ends in a torn line (a write cut short by a crash), start on a
    fresh line so the new record is never glued to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        prefix = b""
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            prefix = b"" if handle.read(1) == b"\n" else b"\n"
        handle.write(prefix + line.encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def check_directory_writable(directory: Path, what: str) -> None:
    """RecordsUnavailable unless a file can be created (and removed) in `directory`, created if missing."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=directory, prefix=".llmops-preflight-")
        os.close(descriptor)
        os.unlink(name)
    except OSError as error:
        raise RecordsUnavailable(f"{what} {directory} is not writable ({error.strerror or error}); "
                                 "nothing was changed") from None


class FileRecordStore:
    """One JSON file per key under a directory, created exclusively (never overwritten)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def put_once(self, key: str, document: Mapping[str, Any]) -> bool:
        try:
            write_durably(self._path(key), json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        except FileExistsError:
            return False
        return True

    def get(self, key: str) -> Mapping[str, Any] | None:
        path = self._path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def check_writable(self, probe: str) -> None:
        check_directory_writable(self.directory, "the record directory")


class FileLock:
    """A lock for a single machine (dev): an exclusively created file naming its holder, with an expiry."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def _path(self, key: str) -> Path:
        return self.directory / (key.replace("/", "__") + ".lock")

    def acquire(self, key: str, *, holder: str, run_id: str, ttl_seconds: int) -> None:
        path = self._path(key)
        record = {"holder": holder, "run_id": run_id, "expires_at": time.time() + ttl_seconds}
        try:
            for _ in range(2):
                try:
                    write_durably(path, json.dumps(record))
                    return
                except FileExistsError:
                    current = _read_lock(path)
                if current.get("run_id") == run_id or float(current.get("expires_at", 0)) < time.time():
                    path.unlink(missing_ok=True)
                    continue
                raise LockHeld(held_message(key, current))
        except OSError as error:
            raise RecordsUnavailable(f"cannot take the lock {key} in {self.directory} ({error.strerror or error}); "
                                     "nothing was changed") from None
        raise LockHeld(f"{key}: could not take the lock")

    def refresh(self, key: str, *, run_id: str, ttl_seconds: int) -> None:
        path = self._path(key)
        current = _read_lock(path)
        if current.get("run_id") != run_id:
            raise LockHeld(held_message(key, current))
        current["expires_at"] = time.time() + ttl_seconds
        scratch = path.with_name(path.name + ".tmp")
        scratch.write_text(json.dumps(current))
        os.replace(scratch, path)

    def release(self, key: str, *, run_id: str) -> None:
        path = self._path(key)
        if path.exists() and _read_lock(path).get("run_id") == run_id:
            path.unlink()


def _read_lock(path: Path) -> dict[str, Any]:
    """A lock file's record; an empty or damaged one (a crash while writing it) reads as expired."""
    try:
        found = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except ValueError:
        return {"expires_at": 0}
    return found if isinstance(found, dict) else {"expires_at": 0}


def held_message(key: str, record: Mapping[str, Any]) -> str:
    """What a refused run is told: who holds the target, which run, for how long, and how to resume it."""
    left = max(0, int(float(record.get("expires_at", 0)) - time.time()))
    return (f"{key} is locked by {record.get('holder')} (run {record.get('run_id')}, expires in {left}s); "
            f"wait for it, or resume that run with --resume {record.get('run_id')}")


class PrintNotifier:
    """Where no topic is configured: notifications go to stderr."""

    def publish(self, *, subject: str, message: Mapping[str, Any], dedup_id: str) -> None:
        import sys

        print(f"notify: {subject}", file=sys.stderr)
