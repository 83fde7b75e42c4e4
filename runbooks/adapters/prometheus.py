"""Prometheus's HTTP API, for the signals runbooks verify against (no client library needed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from runbooks.engine import PreconditionFailed, TransientError


class Prometheus:
    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def vector(self, query: str) -> list[dict[str, Any]]:
        request = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the target's URL
                body = json.load(response)
        except urllib.error.HTTPError as error:
            raise PreconditionFailed(f"Prometheus at {self.url} rejected the query ({error.code}): {query}") from None
        except (urllib.error.URLError, OSError) as error:
            raise TransientError(f"Prometheus at {self.url} unreachable: {getattr(error, 'reason', error)}") from None
        if body.get("status") != "success":
            raise PreconditionFailed(f"Prometheus query failed: {body.get('error')}: {query}")
        return body["data"]["result"]

    def scalar(self, query: str) -> float | None:
        """The value of a query expected to return at most one series (None: no data)."""
        result = self.vector(query)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if value != value else value  # NaN (no traffic) reads as no data
