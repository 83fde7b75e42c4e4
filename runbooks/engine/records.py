"""The audit trail and the evidence bundle: what was done, by whom, with what before and after.

Parameters marked sensitive never enter either: they are recorded as a keyed hash. Every
record is written exactly once (keyed), so a resumed run does not duplicate the trail.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runbooks.engine.model import Param, RecordsUnavailable
from runbooks.engine.services import RecordStore, append_durably, check_directory_writable


def operator() -> str:
    """Who is running this: LLMOPS_OPERATOR if set (CI, a bot), else user@host."""
    return os.environ.get("LLMOPS_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def keyed_hash(value: Any, key: str) -> str:
    return "hmac-sha256:" + hmac.new(key.encode(), str(value).encode(), hashlib.sha256).hexdigest()[:16]


def recorded_params(params: Mapping[str, Any], declared: tuple[Param, ...], key: str) -> dict[str, Any]:
    sensitive = {p.name for p in declared if p.sensitive}
    return {name: keyed_hash(value, key) if name in sensitive and value is not None else value
            for name, value in params.items()}


class AuditLog:
    """Append-only JSON lines in a local file, or one object per record in a RecordStore (S3)."""

    def __init__(self, *, path: str | Path | None = None, store: RecordStore | None = None) -> None:
        self.path = Path(path).expanduser() if path else None
        self.store = store

    def _keys(self) -> set[str]:
        if self.path is None or not self.path.exists():
            return set()
        keys = set()
        for line in self.path.read_text().splitlines():
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):
                continue
        return keys

    def append_once(self, key: str, record: Mapping[str, Any]) -> bool:
        document = {"key": key, "ts": time.time(), **record}
        if self.store is not None:
            return self.store.put_once(f"audit/{key}", document)
        assert self.path is not None
        if key in self._keys():
            return False
        append_durably(self.path, json.dumps(document, sort_keys=True, default=str))
        return True

    def check_writable(self, probe: str) -> None:
        """RecordsUnavailable unless records can be appended (checked before a run changes anything)."""
        if self.store is not None:
            self.store.check_writable(f"audit/{probe}")
            return
        assert self.path is not None
        check_directory_writable(self.path.parent, "the audit directory")
        try:
            with open(self.path, "a"):
                pass
        except OSError as error:
            raise RecordsUnavailable(f"the audit log {self.path} is not writable ({error.strerror or error}); "
                                     "nothing was changed") from None

    def records(self, run_id: str | None = None) -> list[Mapping[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line (a write cut short): it recorded nothing
        return [r for r in found if run_id is None or r.get("run_id") == run_id]
