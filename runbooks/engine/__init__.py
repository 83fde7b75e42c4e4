"""The runbook engine: steps, plans and approvals, a durable journal, a lock, audit, evidence, metrics.

It imports no cloud, Kubernetes or registry library: runbooks reach their backends through
adapters behind interfaces the runbooks declare, and the engine reaches its own services
(lock, audit, evidence, notifications) through the small protocols in `services.py`.
"""

from runbooks.engine.model import (
    ApprovalRequired,
    AwaitingApproval,
    Change,
    InputError,
    Interrupted,
    JournalCorrupt,
    LockHeld,
    Param,
    PreconditionFailed,
    Preparing,
    RecordsUnavailable,
    Runbook,
    RunbookError,
    RunContext,
    RunFinished,
    Step,
    StepFailed,
    TransientError,
    WorldChanged,
    always_run,
)

__all__ = ["ApprovalRequired", "AwaitingApproval", "Change", "InputError", "Interrupted", "JournalCorrupt", "LockHeld",
           "Param", "PreconditionFailed", "Preparing", "RecordsUnavailable", "Runbook", "RunbookError", "RunContext",
           "RunFinished", "Step", "StepFailed", "TransientError", "WorldChanged", "always_run"]
