"""Run a runbook: plan, approve, lock, journal, execute steps exactly once, audit, evidence, notify.

A fresh run prepares (read-only), plans and asks for approval bound to the plan's hash; under the
lock it prepares and plans again and refuses if the hash moved. Each step is journaled before and
after; a resumed run (`--resume RUN_ID`) takes its parameters and facts from the journal, skips
steps whose postcondition still holds, and runs a half-done step's action only if its `check`
says the effect is not already in place -- so every side effect happens once.

A gated step (a destructive one, such as deleting originals) needs a second approval of exactly what
it will do, computed when the run reaches it; without one the run pauses there (exit 3) and is
resumed with `--resume RUN_ID --approve GATE_HASH`.

SIGINT and SIGTERM stop a run where it is: the step in progress is abandoned (its action is re-checked on
resume, as after a crash), the interruption is journaled, the lock is kept for `--resume` (it expires after
the targets' `lock.ttl_seconds`), and the run exits 130 or 143 with the exact resume command.

Before any step acts, the state, audit and evidence locations must be writable and the lock held.

`LLMOPS_CRASH_AT=<step>:<start|acted|done>` kills the process with SIGKILL at that boundary, and
runbooks may name points inside a step (`crash_point(step, "item-3")`): fault injection for tests
and game days.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic

from runbooks.engine.journal import Journal
from runbooks.engine.metrics import RunMetrics
from runbooks.engine.model import (
    ApprovalRequired,
    AwaitingApproval,
    B,
    Change,
    F,
    InputError,
    Interrupted,
    JournalCorrupt,
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
    facts_from_journal,
    facts_to_journal,
)
from runbooks.engine.plan import Plan, PlannedStep
from runbooks.engine.records import AuditLog, keyed_hash, operator, recorded_params
from runbooks.engine.services import Lock, Notifier, RecordStore, check_directory_writable

CRASH_AT = "LLMOPS_CRASH_AT"
RUN_ID_PATTERN = r"[a-z][a-z0-9-]{0,40}-\d{8}T\d{6}Z-[0-9a-f]{6}"


@dataclass
class Services:
    lock: Lock
    notifier: Notifier
    audit: AuditLog
    evidence: RecordStore
    state_dir: Path
    lock_ttl_seconds: int = 900
    pushgateway: str | None = None


@dataclass
class RunOptions:
    dry_run: bool = False
    yes: bool = False
    approve: str | None = None  # a plan hash approved earlier (e.g. from a dry run reviewed by a second person)
    resume: str | None = None
    ask: Callable[[str], str] | None = None  # interactive confirmation; None when there is no terminal
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr)


@dataclass
class RunResult:
    run_id: str | None
    status: str  # planned | succeeded | failed | paused (at a gate, resumable) | interrupted (resumable)
    plan: Plan
    steps: list[dict[str, Any]] = field(default_factory=list)
    evidence_key: str | None = None
    error: str | None = None
    exit_code: int = 0
    resume_command: str | None = None  # for a run that stopped and can be resumed

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "plan_hash": self.plan.hash, "plan": self.plan.to_dict(),
                "steps": self.steps, "evidence": self.evidence_key, "error": self.error,
                "resume_command": self.resume_command}


def new_run_id(runbook: str) -> str:
    return f"{runbook}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def run_id(value: str) -> str:
    """A run id as `new_run_id` makes them: a name, never a path (`--resume ../../x` is refused)."""
    if not re.fullmatch(RUN_ID_PATTERN, value):
        raise ValueError("expected a run id such as rollback-20261122T031500Z-a1b2c3 (printed when the run started)")
    return value


def resume_command(runbook: str, environment: str, run: str) -> str:
    return f"llmops runbook run {runbook} --env {environment} --resume {run}"


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into Interrupted in the main thread (once: a second signal while the run stops
    itself is ignored, so the journal and lock are left consistent). Elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def handler(number: int, frame: Any) -> None:
        if stopping:
            return
        stopping.append(number)
        raise Interrupted(number, signal.Signals(number).name)

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def build_plan(runbook: Runbook[F, B], ctx: RunContext[F, B], recorded: Mapping[str, Any]) -> Plan:
    steps = [PlannedStep(step.name, step.description, step.plan(ctx), step.needs_approval) for step in runbook.steps]
    return Plan(runbook.name, ctx.environment, recorded, steps)


def crash_point(step: str, phase: str) -> None:
    if os.environ.get(CRASH_AT) == f"{step}:{phase}":
        os.kill(os.getpid(), signal.SIGKILL)




def gate_hash(step: str, change: Change) -> str:
    canonical = json.dumps({"step": step, "summary": change.summary, "before": change.before, "after": change.after},
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Run(Generic[F, B]):
    def __init__(self, runbook: Runbook[F, B], invocation: Preparing[B], services: Services,
                 options: RunOptions) -> None:
        self.runbook, self.invocation, self.services, self.options = runbook, invocation, services, options
        self.environment = invocation.environment
        self.metrics = RunMetrics(runbook.name, invocation.environment)
        self._ctx: RunContext[F, B] | None = None
        self.journal: Journal | None = None
        self._current_step: str | None = None
        self.run_id: str | None = None
        self.lock_key: str | None = None
        self._last_progress = 0.0

    @property
    def ctx(self) -> RunContext[F, B]:
        assert self._ctx is not None, "the run's context exists once prepare has found the facts"
        return self._ctx

    def _prepared(self, facts: F | None = None) -> RunContext[F, B]:
        """A context with the facts prepare finds now (or those given: a resumed run's, from its journal)."""
        i = self.invocation
        found = self.runbook.prepare(i) if facts is None else facts
        return RunContext(runbook=i.runbook, environment=i.environment, params=i.params, backends=i.backends,
                          facts=found, progress=i.progress)

    # --- entry points -------------------------------------------------------------------------------

    def start(self) -> RunResult:
        self._ctx = self._prepared()
        recorded = self._recorded_params(key=self.environment)
        plan = build_plan(self.runbook, self.ctx, recorded)
        if self.options.dry_run:
            return RunResult(None, "planned", plan)
        approval = self._approve(plan)
        self.run_id = new_run_id(self.runbook.name)
        self.lock_key = f"{self.environment}/{self.runbook.lock_target(self.ctx)}"
        self.services.lock.acquire(self.lock_key, holder=operator(), run_id=self.run_id,
                                   ttl_seconds=self.services.lock_ttl_seconds)
        keep_lock = False
        try:
            # Under the lock, look again: what was approved must still be what would be done.
            self._ctx = self._prepared()
            self.ctx.run_id = self.run_id
            now = build_plan(self.runbook, self.ctx, recorded)
            if now.hash != plan.hash:
                raise WorldChanged(f"the world changed since the plan was approved ({plan.hash} -> {now.hash}); "
                                   "nothing was changed. Review the new plan and approve it.")
            self._preflight()
            self.journal = Journal.create(self.services.state_dir, self.run_id)
            self.journal.append("run_started", runbook=self.runbook.name, environment=self.environment,
                                params=self._journal_params(), recorded_params=recorded,
                                facts=facts_to_journal(self.ctx.facts),
                                plan=plan.to_dict(), plan_hash=plan.hash, approval=approval, operator=operator(),
                                lock_key=self.lock_key)
            self.options.progress(f"run {self.run_id} started; if it stops, resume it with: "
                                  f"{resume_command(self.runbook.name, self.environment, self.run_id)}")
            result = self._execute(plan, approval)
            keep_lock = result.status == "interrupted"
            return result
        finally:
            if not keep_lock:
                self.services.lock.release(self.lock_key, run_id=self.run_id)

    def resume(self, run_id: str) -> RunResult:
        self.journal = Journal.open(self.services.state_dir, run_id)  # RunFinished if its marker says so
        if self.services.evidence.get(f"evidence/{run_id}") is not None:
            raise RunFinished(f"run {run_id} already finished (its evidence is written); there is nothing to resume")
        events = list(self.journal.events())  # JournalCorrupt before anything is done
        if any(e["event"] == "run_finished" for e in events):
            raise RunFinished(f"run {run_id} already finished; there is nothing to resume")
        started = next((e for e in events if e["event"] == "run_started"), None)
        if started is None:
            raise JournalCorrupt(f"{self.journal.path}: no run_started record; the run cannot be resumed from it. "
                                 "Nothing was changed.")
        if started["runbook"] != self.runbook.name or started["environment"] != self.environment:
            raise InputError(f"run {run_id} is not a {self.runbook.name} run in {self.environment}")
        self.run_id, self.lock_key = run_id, started["lock_key"]
        self.invocation.params.update(started["params"])
        # The facts found when the plan was approved, not re-derived.
        self._ctx = self._prepared(facts_from_journal(self.runbook.facts_type, started["facts"]))
        self.ctx.run_id = run_id
        plan = Plan(self.runbook.name, self.environment, started["recorded_params"],
                    [PlannedStep(s["name"], s["description"], None, s["needs_approval"]) for s in started["plan"]["steps"]])
        self.services.lock.acquire(self.lock_key, holder=operator(), run_id=run_id,
                                   ttl_seconds=self.services.lock_ttl_seconds)
        keep_lock = False
        try:
            self._preflight()
            self.journal.append("run_resumed", operator=operator())
            self.options.progress(f"run {run_id} resumed")
            self.ctx.outputs.update(self.journal.step_outputs())
            result = self._execute(plan, started["approval"], original_hash=started["plan_hash"],
                                   plan_dict=started["plan"])
            keep_lock = result.status == "interrupted"
            return result
        finally:
            if not keep_lock:
                self.services.lock.release(self.lock_key, run_id=run_id)

    # --- the run ------------------------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Before any step acts: every place the run must write to takes writes (RecordsUnavailable if not)."""
        assert self.run_id is not None
        check_directory_writable(self.services.state_dir, "the state directory (state_dir)")
        self.services.audit.check_writable(self.run_id)
        self.services.evidence.check_writable(self.run_id)

    def _execute(self, plan: Plan, approval: Mapping[str, Any], *, original_hash: str | None = None,
                 plan_dict: Mapping[str, Any] | None = None) -> RunResult:
        assert self.journal is not None and self.run_id is not None
        try:
            return self._execute_steps(plan, approval, original_hash=original_hash, plan_dict=plan_dict)
        except Interrupted as stop:
            return self._interrupted(plan, stop)

    def _interrupted(self, plan: Plan, stop: Interrupted) -> RunResult:
        """Journal where the run stopped; the lock stays with the run, for --resume."""
        assert self.journal is not None and self.run_id is not None
        step = self._current_step
        self.journal.append("run_interrupted", signal=stop.name, step=step)
        if step is not None:
            self._audit(f"{step}/interrupted/{int(time.time())}", step, None, None, "interrupted", stop.name)
        command = resume_command(self.runbook.name, self.environment, self.run_id)
        where = f"during step {step}" if step else "between steps"
        message = (f"interrupted by {stop.name} {where}; the run is journaled and keeps the lock "
                   f"{self.lock_key} until it is resumed (or the lock expires). Resume it with: {command}")
        return RunResult(self.run_id, "interrupted", plan, self._step_summaries(), None, message, stop.exit_code,
                         resume_command=command)

    def _execute_steps(self, plan: Plan, approval: Mapping[str, Any], *, original_hash: str | None,
                       plan_dict: Mapping[str, Any] | None) -> RunResult:
        assert self.journal is not None and self.run_id is not None
        plan_hash = original_hash or plan.hash
        if not self.journal.has("signals", phase="before"):
            self.journal.append("signals", phase="before", values=dict(self.runbook.signals(self.ctx)))
        self._notify_once("started", {"plan_hash": plan_hash})
        results: list[dict[str, Any]] = []
        outcome, error, exit_code = "succeeded", None, 0
        try:
            for step in self.runbook.steps:
                self._current_step = step.name
                results.append(self._run_step(step))
            self._current_step = None
        except AwaitingApproval as pause:
            self._notify_once("awaiting-approval", {"reason": str(pause)})
            self.options.progress(f"paused: {pause}")
            return RunResult(self.run_id, "paused", plan, self._step_summaries(), None, str(pause), pause.exit_code,
                             resume_command=resume_command(self.runbook.name, self.environment, self.run_id)
                             + " --approve GATE_HASH")
        except RecordsUnavailable:
            raise  # nothing to finish with: the run stays resumable once the location is fixed
        except RunbookError as failure:
            outcome, error, exit_code = "failed", str(failure), failure.exit_code
            self.journal.append("run_failed", error=error)
        self._current_step = None
        self.journal.append("signals", phase="after", values=dict(self.runbook.signals(self.ctx)))
        evidence_key = self._evidence(plan_dict or plan.to_dict(), plan_hash, approval, outcome, error)
        self._notify_once("finished", {"outcome": outcome, "error": error, "evidence": evidence_key})
        self.journal.finish(outcome)
        self.metrics.finished(outcome)
        try:
            self.metrics.push(self.services.pushgateway, self.run_id)
        except OSError as failure:  # metrics must not fail an otherwise finished run
            self.options.progress(f"warning: could not push metrics: {failure}")
        return RunResult(self.run_id, outcome, plan, self._step_summaries(), evidence_key, error, exit_code)

    def _run_step(self, step: Step[F, B]) -> dict[str, Any]:
        assert self.journal is not None
        state = self.journal.step_state(step.name)
        self.ctx.deadline = time.monotonic() + step.timeout_seconds
        if state == "done":
            if not step.verify(self.ctx):
                raise WorldChanged(f"step {step.name} was completed by this run but its effect no longer holds; "
                                   "someone changed it since. Nothing more was done.")
            done = next(e for e in self.journal.events() if e["event"] == "step_done" and e["step"] == step.name)
            # The audit record may be missing if its write failed after the step (append_once: written once).
            self._audit(step.name, step.name, done.get("before"), done.get("after"), done.get("outcome", "changed"))
            return {"step": step.name, "outcome": "done-earlier"}
        change = step.plan(self.ctx)
        gated = step.gate(self.ctx) if callable(step.gate) else step.gate
        if gated and change is not None and not step.check(self.ctx):
            self._open_gate(step, change)
        self.journal.append("step_started", step=step.name)
        crash_point(step.name, "start")
        began = time.monotonic()
        before = None if change is None else change.before
        try:
            if step.check(self.ctx):
                outcome, outputs = "already-in-place", dict(self.ctx.outputs.get(step.name) or {})
            else:
                # A step that needs no approval changes nothing (it waits or verifies).
                outputs, outcome = self._act(step), "changed" if step.needs_approval else "completed"
            crash_point(step.name, "acted")
            if not step.verify(self.ctx):
                raise StepFailed(f"step {step.name}: its postcondition does not hold after the action")
            if time.monotonic() > self.ctx.deadline:
                raise StepFailed(f"step {step.name} took longer than its {step.timeout_seconds:g}s timeout")
        except Exception as raised:  # noqa: BLE001 - an adapter's unexpected error fails the step, on the record
            failure = raised if isinstance(raised, RunbookError) else \
                StepFailed(f"step {step.name}: unexpected {type(raised).__name__}: {raised}")
            seconds = time.monotonic() - began
            self.journal.append("step_failed", step=step.name, error=str(failure))
            self._audit(f"{step.name}/failed/{int(time.time())}", step.name, before, None, "failed", str(failure))
            self.metrics.step(step.name, "failed", seconds)
            if failure is raised:
                raise
            raise failure from raised
        seconds = time.monotonic() - began
        after = None if change is None else change.after
        self.ctx.outputs[step.name] = outputs
        self.journal.append("step_done", step=step.name, outcome=outcome, outputs=outputs, before=before, after=after,
                            seconds=seconds)
        self._audit(step.name, step.name, before, after, outcome)
        self.metrics.step(step.name, outcome, seconds)
        crash_point(step.name, "done")
        self._refresh_lock()
        return {"step": step.name, "outcome": outcome, "seconds": round(seconds, 3)}

    def _act(self, step: Step[F, B]) -> dict[str, Any]:
        for attempt in range(step.retries + 1):
            try:
                return dict(step.action(self.ctx) or {})
            except TransientError as failure:
                if attempt == step.retries or time.monotonic() > self.ctx.deadline:
                    raise StepFailed(f"step {step.name} failed after {attempt + 1} attempt(s): {failure}") from None
                delay = step.backoff_seconds * (2 ** attempt)
                self.options.progress(f"  {step.name}: {failure}; retrying in {delay:g}s")
                time.sleep(delay)
                self._refresh_lock()
        raise AssertionError("unreachable")

    def _refresh_lock(self) -> None:
        assert self.lock_key is not None and self.run_id is not None  # held since the run was journaled
        self.services.lock.refresh(self.lock_key, run_id=self.run_id, ttl_seconds=self.services.lock_ttl_seconds)

    def _open_gate(self, step: Step[F, B], change: Change) -> None:
        """Pass only with an approval of exactly this change; else journal the wait and pause the run."""
        assert self.journal is not None
        wanted = gate_hash(step.name, change)
        if self.journal.has("gate_approved", step=step.name, gate_hash=wanted):
            return
        how = None
        if self.options.approve == wanted:
            how = "approved-hash"
        elif self.options.ask is not None:
            answer = self.options.ask(f"{step.name}: {change.summary}\nType {wanted} to approve this step: ").strip()
            how = "interactive" if answer == wanted else None
        if how is not None:
            self.journal.append("gate_approved", step=step.name, gate_hash=wanted, how=how, by=operator())
            self._audit(f"{step.name}/approved", step.name, change.before, change.after, "approved")
            return
        if not self.journal.has("awaiting_approval", step=step.name, gate_hash=wanted):
            self.journal.append("awaiting_approval", step=step.name, gate_hash=wanted, summary=change.summary)
        raise AwaitingApproval(f"run {self.run_id} stopped before {step.name}, which needs its own approval: "
                               f"{change.summary}. Review it, then: --resume {self.run_id} --approve {wanted}")

    # --- approval, records ------------------------------------------------------------------------------

    def _approve(self, plan: Plan) -> dict[str, Any]:
        who = operator()
        if self.options.approve is not None:
            if self.options.approve != plan.hash:
                raise WorldChanged(f"approved plan {self.options.approve} is not the current plan {plan.hash}; "
                                   "the world changed since it was reviewed. Nothing was changed.")
            return {"how": "approved-hash", "by": who, "plan_hash": plan.hash, "at": time.time()}
        if self.options.yes:
            return {"how": "--yes", "by": who, "plan_hash": plan.hash, "at": time.time()}
        if self.options.ask is None:
            raise ApprovalRequired(f"approval needed for plan {plan.hash}: run again with --yes, or with "
                                   f"--approve {plan.hash} after reviewing it (nothing was changed)")
        answer = self.options.ask(f"Apply plan {plan.hash}? Type the plan hash to approve: ").strip()
        if answer != plan.hash:
            raise ApprovalRequired("not approved; nothing was changed")
        return {"how": "interactive", "by": who, "plan_hash": plan.hash, "at": time.time()}

    def _recorded_params(self, key: str) -> dict[str, Any]:
        return recorded_params(self.invocation.params, self.runbook.params, key)

    def _journal_params(self) -> dict[str, Any]:
        sensitive = {p.name for p in self.runbook.params if p.sensitive}
        return {k: v for k, v in self.invocation.params.items() if k not in sensitive}

    def _audit(self, key: str, step: str, before: Any, after: Any, outcome: str, error: str | None = None) -> None:
        try:
            self.services.audit.append_once(f"{self.run_id}/{key}", {
                "run_id": self.run_id, "runbook": self.runbook.name, "environment": self.environment,
                "operator": operator(), "params": self._recorded_params(self.environment), "step": step,
                "before": before, "after": after, "outcome": outcome, "error": error})
        except (OSError, TransientError, PreconditionFailed) as failure:
            raise RecordsUnavailable(
                f"the audit record of step {step} could not be written ({failure}); what the step did is journaled. "
                f"Fix the audit location, then: {resume_command(self.runbook.name, self.environment, str(self.run_id))}"
            ) from None

    def _notify_once(self, kind: str, details: Mapping[str, Any]) -> None:
        assert self.journal is not None
        if self.journal.has("notified", kind=kind):
            return
        subject = f"[{self.environment}] runbook {self.runbook.name} {kind}"
        message = {"run_id": self.run_id, "runbook": self.runbook.name, "environment": self.environment,
                   "event": kind, "operator": operator(), **details}
        self.services.notifier.publish(subject=subject, message=message, dedup_id=f"{self.run_id}-{kind}")
        self.journal.append("notified", kind=kind)

    def _step_summaries(self) -> list[dict[str, Any]]:
        assert self.journal is not None
        done = {}
        for event in self.journal.events():
            if event["event"] == "step_done":
                done[event["step"]] = {"step": event["step"], "outcome": event["outcome"], "before": event.get("before"),
                                       "after": event.get("after"), "outputs": event.get("outputs"),
                                       "seconds": event.get("seconds")}
            elif event["event"] == "step_failed":
                done.setdefault(event["step"], {"step": event["step"], "outcome": "failed", "error": event.get("error")})
        return [done[s.name] for s in self.runbook.steps if s.name in done]

    def _evidence(self, plan: Mapping[str, Any], plan_hash: str, approval: Mapping[str, Any], outcome: str,
                  error: str | None) -> str:
        assert self.journal is not None
        events = list(self.journal.events())
        signals = {e["phase"]: e["values"] for e in events if e["event"] == "signals"}
        started = self.journal.first("run_started") or {}
        bundle = {
            "run_id": self.run_id, "runbook": self.runbook.name, "environment": self.environment,
            "operator": started.get("operator"), "inputs": started.get("recorded_params"),
            "plan": plan, "plan_hash": plan_hash, "approval": approval, "steps": self._step_summaries(),
            "signals": signals, "outcome": outcome, "error": error,
            "started_at": started.get("ts"), "finished_at": time.time(),
            "resumed": sum(1 for e in events if e["event"] == "run_resumed"),
        }
        key = f"evidence/{self.run_id}"
        try:
            self.services.evidence.put_once(key, bundle)
        except (OSError, TransientError, PreconditionFailed) as failure:
            raise RecordsUnavailable(
                f"the evidence of run {self.run_id} could not be written ({failure}); every step's outcome is "
                f"journaled. Fix the evidence location, then: "
                f"{resume_command(self.runbook.name, self.environment, str(self.run_id))}") from None
        return key


def run(runbook: Runbook[F, B], invocation: Preparing[B], services: Services, options: RunOptions) -> RunResult:
    """Plan, approve and execute (or resume) a runbook; errors are RunbookErrors with exit codes. SIGINT or
    SIGTERM before the run is journaled raises Interrupted (nothing was changed); after, the result is
    `interrupted`, resumable."""
    runner = Run(runbook, invocation, services, options)
    with signals_interrupt():
        if options.resume:
            return runner.resume(options.resume)
        return runner.start()


__all__ = ["CRASH_AT", "RunOptions", "RunResult", "Services", "build_plan", "crash_point", "gate_hash", "keyed_hash",
           "resume_command", "run", "run_id", "signals_interrupt"]
