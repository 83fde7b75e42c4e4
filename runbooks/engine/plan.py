"""The plan: every step and exactly what it would change, and the hash an approval is bound to."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runbooks.engine.model import Change


@dataclass(frozen=True)
class PlannedStep:
    name: str
    description: str
    change: Change | None  # None: nothing to do
    needs_approval: bool

    def to_dict(self) -> dict[str, Any]:
        change = None if self.change is None else {"summary": self.change.summary, "before": self.change.before,
                                                   "after": self.change.after}
        return {"name": self.name, "description": self.description, "change": change,
                "needs_approval": self.needs_approval}


@dataclass(frozen=True)
class Plan:
    runbook: str
    environment: str
    params: Mapping[str, Any]  # as recorded (sensitive values hashed)
    steps: Sequence[PlannedStep]

    def to_dict(self) -> dict[str, Any]:
        return {"runbook": self.runbook, "environment": self.environment, "params": dict(self.params),
                "steps": [s.to_dict() for s in self.steps]}

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


    def render(self) -> str:
        lines = [f"Plan {self.hash} for {self.runbook} in {self.environment}:"]
        for number, step in enumerate(self.steps, 1):
            marker = "change" if step.change else "no-op "
            summary = step.change.summary if step.change else "nothing to do"
            lines.append(f"  {number}. [{marker}] {step.name}: {summary}")
            if step.change and (step.change.before is not None or step.change.after is not None):
                lines.append(f"       before: {_short(step.change.before)}")
                lines.append(f"       after:  {_short(step.change.after)}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."
