"""The checks run on each stack's plan where it was computed: schema validation of its Kubernetes objects and the
policy pack. `llmops preview` and `llmops policy check` hand a `PlanChecks` to the worker, which calls it in each
stack's own process right after the plan is sent -- so stacks are checked in parallel, and a plan is never computed
twice to be both validated and checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmops.offline import validate
from llmops.offline.plan import Plan
from llmops.policy import runner


@dataclass(frozen=True)
class CheckResults:
    kubernetes_objects: int
    schema_violations: list[validate.Violation] | None = None  # None: not validated
    policy_violations: list[runner.Violation] | None = None  # None: the pack was not run
    policy_error: str | None = None  # the pack config was refused (exit 2), with the message


@dataclass(frozen=True)
class PlanChecks:
    """Picklable: the worker receives it before it forks, so what the checks import is loaded once."""
    validate: bool = False
    # stack name -> (the pack config in the CLI's format, where it came from); empty: the pack is not run
    pack_configs: Mapping[str, tuple[dict[str, Any], str]] = field(default_factory=dict)

    def __call__(self, plan: Plan) -> CheckResults:
        schema = validate.validate_plan(plan) if self.validate else None
        violations, error = None, None
        if plan.stack in self.pack_configs:
            pack_config, source = self.pack_configs[plan.stack]
            try:
                violations = runner.check_plan(plan, pack_config, source)
            except runner.PolicyConfigError as refused:
                error = str(refused)
        return CheckResults(len(plan.kubernetes_objects()), schema, violations, error)
