"""What a runbook is made of: typed parameters and ordered steps, each with a plan, a check, an action
and a verification; and the errors that tell the caller what to do (with their exit codes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Generic, TypeVar


class RunbookError(Exception):
    """A run could not complete; the message says why and what to do. Exit code 1 unless stated."""
    exit_code = 1


class InputError(RunbookError):
    """Bad parameters or targets (unknown environment or service, no such version). Nothing was changed."""
    exit_code = 2


class PreconditionFailed(RunbookError):
    """The world is not in a state the runbook can act on (a backend unreachable, nothing to roll back to)."""


class TransientError(RunbookError):
    """Worth retrying: a timeout, a throttle, a 5xx."""


class StepFailed(RunbookError):
    """A step's action or verification failed after its retries; the run stopped there."""


class WorldChanged(RunbookError):
    """What the approval covered is no longer what would be done; re-plan and approve again."""


class LockHeld(RunbookError):
    """Another run holds the target."""


class ApprovalRequired(RunbookError):
    """No approval was given (no terminal to ask, and no --yes or --approve)."""


class RunFinished(InputError):
    """`--resume` of a run that already finished: there is nothing to resume (exit 2)."""


class JournalCorrupt(RunbookError):
    """A run's journal has a damaged record (not a torn last line): it cannot be trusted to resume from."""


class RecordsUnavailable(RunbookError):
    """The state, audit or evidence location cannot be written: refused before any step acts, or (if it
    fails mid-run) the run stops, journaled, to be resumed once the location is fixed."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the run stops where it is (journaled, resumable). A BaseException, like
    KeyboardInterrupt, so that no step's error handling mistakes it for the step failing. Exit 128 + signal."""

    def __init__(self, signal_number: int, name: str) -> None:
        super().__init__(name)
        self.signal_number, self.name = signal_number, name
        self.exit_code = 128 + signal_number


class AwaitingApproval(RunbookError):
    """The run reached a gated step and stopped there, resumable: a second approval of exactly what that
    step will do (shown once the earlier steps have run) is needed. Exit code 3."""
    exit_code = 3


@dataclass(frozen=True)
class Param:
    """A typed parameter: parsed by `parse`, never passed through a shell. Sensitive values are
    kept out of the audit log and evidence (only a keyed hash of them is recorded)."""
    name: str
    help: str
    parse: Callable[[str], Any] = str
    required: bool = True
    default: Any = None
    sensitive: bool = False
    flag: str | None = None  # the CLI spelling, default --<name with dashes>
    switch: bool = False  # an on/off option without a value (`--failback`); parsed from True when given

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Change:
    """What one step would change, shown in the plan and bound into the plan hash."""
    summary: str
    before: Any = None
    after: Any = None


F = TypeVar("F")  # a runbook's facts: what prepare found, a dataclass of JSON values (journaled, restored on resume)
B = TypeVar("B")  # a runbook's backends: its targets and the ports its steps reach the world through


@dataclass(frozen=True)
class Step(Generic[F, B]):
    """One step. `plan` says what it would change (None: nothing to do); `check` says whether its effect is
    already in place (a resumed run skips it then); `action` does it; `verify` proves the postcondition."""
    name: str
    description: str
    plan: Callable[[RunContext[F, B]], Change | None]
    check: Callable[[RunContext[F, B]], bool]
    action: Callable[[RunContext[F, B]], Mapping[str, Any] | None]
    verify: Callable[[RunContext[F, B]], bool]
    timeout_seconds: float = 300
    retries: int = 3
    backoff_seconds: float = 1.0
    needs_approval: bool = True
    # A gate: the run's approval is not enough; what this step will do (its plan, computed when it is reached)
    # must be approved on its own -- interactively, or with `--resume RUN_ID --approve GATE_HASH`. `--yes`
    # never opens a gate.
    gate: bool | Callable[[RunContext[F, B]], bool] = False


def always_run(ctx: RunContext[Any, Any]) -> bool:
    """A step's check for steps that always run (they change nothing: a scan, a verification)."""
    return False


def no_signals(ctx: RunContext[Any, Any]) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Runbook(Generic[F, B]):
    name: str
    title: str
    summary: str
    params: tuple[Param, ...]
    steps: tuple[Step[F, B], ...]
    # The facts' type: prepare returns one; a resumed run rebuilds it from the journal (`facts_type(**journaled)`).
    facts_type: type[F]
    # Resolve and validate inputs against the world (read-only) into facts; raise InputError / PreconditionFailed.
    prepare: Callable[[Preparing[B]], F]
    # The lock key, e.g. "prod/serving/chat": one run per environment and target.
    lock_target: Callable[[RunContext[F, B]], str]
    # targets -> the backends the steps use (the targets type is the runbook's own: runbooks/targets.py).
    connect: Callable[[Any], B]
    # Signals recorded before and after (SLO readings, ...), for the evidence.
    signals: Callable[[RunContext[F, B]], Mapping[str, Any]] = no_signals
    lock_scope: str = "<env>/<target>"  # how the lock key reads, for the page


@dataclass
class Preparing(Generic[B]):
    """What `prepare` sees: the parameters, the environment and the backends -- to read, never to change."""
    runbook: str
    environment: str
    params: dict[str, Any]
    backends: B
    progress: Callable[[str], None] = lambda message: None


@dataclass
class RunContext(Generic[F, B]):
    """What steps see: parameters, backends (with the environment's targets), and the facts prepare found."""
    runbook: str
    environment: str
    params: dict[str, Any]
    backends: B
    facts: F
    outputs: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # step name -> its action's outputs
    deadline: float = 0.0  # monotonic time by which the current step must finish
    run_id: str | None = None  # set once the run is approved and journaled
    progress: Callable[[str], None] = lambda message: None


def facts_to_journal(facts: Any) -> dict[str, Any]:
    """Facts as JSON values for the journal (a dataclass of JSON values, or a plain mapping)."""
    if is_dataclass(facts) and not isinstance(facts, type):
        return asdict(facts)
    return dict(facts)


def facts_from_journal(facts_type: type[F], journaled: Mapping[str, Any]) -> F:
    return facts_type(**journaled)
