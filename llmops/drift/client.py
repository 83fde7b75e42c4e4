"""Reading a drift monitor over HTTP (`GET /v1/state`): for `llmops drift status`, the drift-review runbook and
drills."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class MonitorUnavailable(ConnectionError):
    """The monitor did not answer, or not with its state; the message names the URL."""


def monitor_state(url: str, timeout: float = 10) -> dict[str, Any]:
    address = url.rstrip("/") + "/v1/state"
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            state = json.load(response)
    except urllib.error.HTTPError as error:
        raise MonitorUnavailable(f"{address}: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise MonitorUnavailable(f"{address}: {getattr(error, 'reason', None) or error}") from None
    except ValueError:
        raise MonitorUnavailable(f"{address}: not JSON") from None
    if not isinstance(state, dict) or not isinstance(state.get("models"), dict):
        raise MonitorUnavailable(f"{address}: not a drift monitor's state")
    return state
