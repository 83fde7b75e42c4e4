"""One release controller per environment and region: every interval, for each model with a rollout policy and a
canary taking traffic, read canary and stable over the same window, let the analysis decide, and act.

Actions go through the runbook engine, with actor `release-controller` (LLMOPS_OPERATOR): a rollback is the
`rollback-canary` runbook, a promotion step the `promote` runbook (`--expect-weight` the weight the decision saw,
so two controllers, or a controller racing a person, cannot both promote; both take the same lock as rollback).
Only actions the policy marks automatic run with `--yes`; anything else is planned (a dry run) and the plan hash is
sent to people to approve. `pause_for_review` tags the canary's version `llmops.release.paused` and notifies;
the controller holds the step until a person removes the tag (`llmops release resume`) or acts.

Every decision -- hold and continue too -- is an audit record with its evidence (counts, rates, the statistic,
the limit). The analysis state is saved after each decision, so a restarted controller continues the step it
was in rather than starting the dwell over.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import config as stack_config
from components.manifests.route import canary_backend, canary_weight
from components.manifests.vllm import RELEASE_ANNOTATION
from components.release import PAUSED_TAG
from llmops.controller.signals import Signals, Track, read_shadow_verdict, read_window
from llmops.release.analysis import Analysis, Decision
from llmops.release.observation import Observation, Traffic
from runbooks.engine import LockHeld, RunbookError, WorldChanged
from runbooks.engine.journal import unfinished_runs
from runbooks.engine.runner import RunOptions, RunResult
from runbooks.launch import launch
from runbooks.targets import Targets
from runbooks.wiring import services_for

ACTOR = "release-controller"


@dataclass
class Outcome:
    """What one analysis of one model decided and did."""
    model: str
    decision: dict[str, Any]
    acted: str  # none | rolled-back | promoted | paused | awaiting-approval | held-by-another | failed
    run_id: str | None = None
    detail: str = ""
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "decision": self.decision, "acted": self.acted, "run_id": self.run_id,
                "detail": self.detail, "at": self.at}


def observation(at: float, canary: Track, stable: Track) -> Observation:
    quality = dict(canary.scores)
    if canary.requests > 0 and canary.tokens > 0:
        quality["tokens_per_request"] = (canary.tokens, canary.requests)
    return Observation(time=at, canary=Traffic(canary.requests, canary.errors, canary.ttft_buckets),
                       stable=Traffic(stable.requests, stable.errors, stable.ttft_buckets), quality=quality)


def step_of(steps: list[int], weight: int) -> int:
    """The policy step a route weight is at: the highest step not above it (a weight set by hand between steps
    counts as the step below, so the next promotion is the step above it)."""
    below = [index for index, step in enumerate(steps) if step <= weight]
    return below[-1] if below else 0


class Controller:
    def __init__(self, environment: str, targets: Targets, prometheus: Signals, registry: Any, cluster: Any,
                 progress: Callable[[str], None] = print) -> None:
        self.environment, self.targets = environment, targets
        self.prometheus, self.registry, self.cluster = prometheus, registry, cluster
        self.progress = progress
        self.services = services_for(targets)
        self.state_dir = Path(targets.state_dir).expanduser() / "release-controller"
        self.analyses: dict[str, Analysis] = {}
        self._versions: dict[str, str] = {}  # model -> the canary version its analysis is about
        self.decisions = 0

    # --- what is under analysis ------------------------------------------------------------------------------

    def models(self, only: str | None = None) -> list[stack_config.Model]:
        stack = stack_config.load_file(self.targets.stack_path())
        found = [m for m in stack.models if m.rollout is not None and (only is None or m.name == only)]
        if only is not None and not found:
            names = ", ".join(m.name for m in stack.models if m.rollout is not None) or "none"
            raise stack_config.ConfigError(f"--model {only!r}: no model with a rollout policy in "
                                           f"{self.targets.stack_path().name}; models with one: {names}")
        return found

    def _namespace(self) -> str:
        assert self.targets.kubernetes is not None
        return self.targets.kubernetes.namespace

    def _analysis(self, model: stack_config.Model, weight: int) -> Analysis:
        """The canary's analysis: one per canary version, kept across intervals and steps, saved to disk after every
        decision (a restarted controller carries on), started afresh for a new canary or a step it did not see
        coming (a person moved the weight by more than one step)."""
        assert model.rollout is not None and model.canary is not None
        version, step = model.canary.release.version, step_of(model.rollout.steps, weight)
        threshold = model.slo.time_to_first_token.threshold_seconds
        current = self.analyses.get(model.name)
        if current is None:
            saved = self.state_dir / f"{model.name}.json"
            if saved.exists():
                try:
                    state = json.loads(saved.read_text())
                    if state.get("canary_version") == version:
                        current = Analysis.from_dict(model.rollout, state["analysis"])
                except (ValueError, KeyError, TypeError):
                    current = None  # a damaged state file: the step's analysis starts again (its dwell too)
        if current is not None and self._versions.get(model.name, version) == version:
            if current.step == step:
                self.analyses[model.name] = current
                return current
            if step == current.step + 1 and current.phase == "running":
                current.advance(at=time.time())
                self.analyses[model.name] = current
                return current
        fresh = Analysis(model.rollout, started_at=time.time(), step=step, ttft_threshold=threshold)
        self.analyses[model.name] = fresh
        self._versions[model.name] = version
        return fresh

    def _save(self, model: str, version: str, analysis: Analysis) -> None:
        """Whole or not at all: a scratch file of this writer's own (two controllers may share a state directory),
        then a rename."""
        import tempfile

        self.state_dir.mkdir(parents=True, exist_ok=True)
        document = json.dumps({"canary_version": version, "analysis": analysis.to_dict()}, sort_keys=True)
        with tempfile.NamedTemporaryFile("w", dir=self.state_dir, prefix=f".{model}.", suffix=".tmp",
                                         delete=False) as scratch:
            scratch.write(document)
        os.replace(scratch.name, self.state_dir / f"{model}.json")

    # --- one analysis ----------------------------------------------------------------------------------------

    def analyze(self, model: stack_config.Model, act: bool = True) -> Outcome:
        assert model.rollout is not None
        if act:
            for runbook in ("rollback-canary", "promote"):  # an action a crash cut short is finished first
                for run in unfinished_runs(self.services.state_dir, runbook, operator=ACTOR, service=model.name):
                    return self._resume_run(model.name, runbook, run)
        route = self.cluster.route(self._namespace(), model.name)
        weight = canary_weight(route) if route is not None else 0
        if model.canary is None or weight == 0:
            return self._record(model.name, {"action": "idle", "reason": "no canary takes traffic"}, "none")
        paused = self._paused(model)
        analysis = self._analysis(model, weight)
        if paused is None and analysis.phase == "paused":
            analysis.resume()  # a person removed the pause (llmops release resume): the paused checks start afresh
        canary, stable = read_window(self.prometheus, model.name, self._namespace(), model.rollout.interval_seconds)
        decision = analysis.observe(observation(time.time(), canary, stable))
        self._save(model.name, model.canary.release.version, analysis)
        summary = {**decision.to_dict(), "decided_at": time.time(), "weight_seen": weight}
        if paused is not None and decision.action != "rollback":
            return self._record(model.name, {**summary, "paused": paused}, "none",
                                detail=f"paused for review since {paused.get('at')}: {paused.get('reason')}")
        if not act:
            return self._record(model.name, summary, "none", detail="analysis only (--no-act)")
        if decision.action == "rollback":
            route = self.cluster.route(self._namespace(), model.name)
            if route is not None and canary_weight(route) == 0:  # another controller or a person got there first
                return self._record(model.name, summary, "held-by-another", detail="the canary takes no traffic now")
            return self._run(model.name, summary, "rollback-canary", {"service": model.name, "reason": decision.reason[:300]},
                             decision.automatic, "rolled-back")
        if decision.action == "promote":
            assert decision.target_weight is not None
            held = self._shadow_gate(model)
            if held is not None:  # the shadow comparison of this release refused it (or, if required, none exists)
                return self._record(model.name, {**summary, "action": "hold", "reason": held,
                                                 "target_weight": None}, "none", detail=held)
            outcome = self._run(model.name, summary, "promote", {"service": model.name,
                                                                 "weight": str(decision.target_weight),
                                                                 "expect_weight": str(weight)},
                                decision.automatic, "promoted")
            if outcome.acted == "promoted" and decision.target_weight < 100:
                analysis.advance(at=time.time())
                self.analyses[model.name] = analysis
                self._save(model.name, model.canary.release.version, analysis)
            return outcome
        if decision.action == "pause_for_review":
            self._pause(model, decision)
            return self._record(model.name, summary, "paused", detail=decision.reason)
        return self._record(model.name, summary, "none")

    def _run(self, model: str, summary: dict[str, Any], runbook: str, params: dict[str, str | None],
             automatic: bool, done: str) -> Outcome:
        os.environ["LLMOPS_OPERATOR"] = ACTOR
        options = RunOptions(yes=automatic, dry_run=not automatic, progress=self.progress)
        try:
            result: RunResult = launch(runbook, self.environment, params, options, self.progress)
        except (LockHeld, WorldChanged) as error:  # another controller or a person is acting on this model
            return self._record(model, summary, "held-by-another", detail=str(error))
        except RunbookError as error:
            route = self.cluster.route(self._namespace(), model)
            if route is not None and canary_weight(route) != summary.get("weight_seen"):
                # refused because another controller or a person changed the weight since the decision
                return self._record(model, summary, "held-by-another", detail=str(error))
            return self._record(model, summary, "failed", detail=str(error))
        if result.status == "planned":
            self.services.notifier.publish(
                subject=f"[llmops] {self.environment}: {model}: {summary['action']} needs approval",
                message={"model": model, "decision": summary, "runbook": runbook, "plan_hash": result.plan.hash,
                         "approve": f"llmops runbook run {runbook} --env {self.environment} "
                                    + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.items() if v)
                                    + f" --approve {result.plan.hash}"},
                dedup_id=f"{model}-{runbook}-{result.plan.hash}")
            return self._record(model, summary, "awaiting-approval", detail=f"plan {result.plan.hash}")
        if result.status != "succeeded":
            return self._record(model, summary, "failed", run_id=result.run_id, detail=result.error or result.status)
        if not any(step.get("outcome") == "changed" for step in result.steps):
            # Every change was already in place when the run took the lock: another controller (or a person) acted
            # between this decision and the run. The runbook is idempotent, so nothing happened twice; say who acted.
            self.analyses.pop(model, None)
            return self._record(model, summary, "held-by-another", run_id=result.run_id,
                                detail="every change was already in place: another controller or a person acted first")
        if done == "rolled-back" or params.get("weight") == "100":
            self.analyses.pop(model, None)  # this canary's promotion is over
        return self._record(model, summary, done, run_id=result.run_id)

    def _resume_run(self, model: str, runbook: str, run: str) -> Outcome:
        os.environ["LLMOPS_OPERATOR"] = ACTOR
        summary = {"action": "resume", "reason": f"{runbook} run {run} did not finish; resuming it"}
        try:
            result = launch(runbook, self.environment, {}, RunOptions(resume=run, yes=True, progress=self.progress),
                            self.progress)
        except (LockHeld, WorldChanged) as error:
            return self._record(model, summary, "held-by-another", run_id=run, detail=str(error))
        except RunbookError as error:
            return self._record(model, summary, "failed", run_id=run, detail=str(error))
        self.analyses.pop(model, None)
        acted = {"rollback-canary": "rolled-back", "promote": "promoted"}[runbook] if result.status == "succeeded" \
            else "failed"
        return self._record(model, summary, acted, run_id=run, detail=result.error or "")

    # --- the shadow comparison's gate -------------------------------------------------------------------------

    def _shadow_gate(self, model: stack_config.Model) -> str | None:
        """Why the canary may not be promoted on the shadow comparison's account, or None. The canary's release id is
        read from its Deployment (the id its request-log records and the comparison's `shadow_release` carry)."""
        assert model.rollout is not None
        gates = model.rollout.shadow or stack_config.ShadowGates()  # unset: the defaults
        if not gates.gate_canary:
            return None
        deployment = self.cluster.deployment(self._namespace(), canary_backend(model.name)) or {}
        release = ((deployment.get("metadata") or {}).get("annotations") or {}).get(RELEASE_ANNOTATION)
        if not release:
            return None  # not a Deployment this stack rendered: nothing to match a comparison with
        verdict = read_shadow_verdict(self.prometheus, model.name, release)
        if verdict is not None and time.time() - verdict.at > gates.verdict_max_age_seconds:
            verdict = None  # too old to speak for this release now
        if verdict is None:
            return (f"no shadow comparison of release {release} within {gates.verdict_max_age_seconds} s "
                    "(rollout.shadow.requireComparison): run llmops release compare") if gates.require_comparison \
                else None
        if verdict.promotable:
            return None
        return (f"the shadow comparison of release {release} refused promotion (failed gates: "
                f"{', '.join(verdict.failed_gates) or 'unknown'}); llmops release compare --model {model.name} says why")

    # --- pause for review ------------------------------------------------------------------------------------

    def _paused(self, model: stack_config.Model) -> dict[str, Any] | None:
        assert model.canary is not None
        found = self.registry.version(model.registry.model, model.canary.release.version)
        raw = (found or {}).get("tags", {}).get(PAUSED_TAG)
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            value = {"reason": "damaged marker"}
        return value if isinstance(value, dict) else None

    def _pause(self, model: stack_config.Model, decision: Decision) -> None:
        assert model.canary is not None
        marker = {"reason": decision.reason[:300], "at": time.time(), "by": ACTOR}
        if self._paused(model) is not None:
            return
        self.registry.set_version_tag(model.registry.model, model.canary.release.version, PAUSED_TAG,
                                      json.dumps(marker, sort_keys=True))
        self.services.notifier.publish(
            subject=f"[llmops] {self.environment}: {model.name}: canary paused for review",
            message={"model": model.name, "version": model.canary.release.version, "decision": decision.to_dict(),
                     "resume": f"llmops release resume --env {self.environment} --model {model.name}"},
            dedup_id=f"{model.name}-pause-{model.canary.release.version}")

    def resume(self, model: stack_config.Model) -> bool:
        """A person reviewed the pause: remove the marker; True if there was one."""
        assert model.canary is not None
        if self._paused(model) is None:
            return False
        self.registry.delete_version_tag(model.registry.model, model.canary.release.version, PAUSED_TAG)
        return True

    # --- records ---------------------------------------------------------------------------------------------

    def _record(self, model: str, decision: dict[str, Any], acted: str, run_id: str | None = None,
                detail: str = "") -> Outcome:
        outcome = Outcome(model=model, decision=decision, acted=acted, run_id=run_id, detail=detail)
        self.decisions += 1
        key = f"release-controller/{self.environment}/{model}/{outcome.at:.6f}"
        self.services.audit.append_once(key, {"operator": ACTOR, "environment": self.environment,
                                                **outcome.to_dict()})
        return outcome


def watch(controller: Controller, only: str | None, stop: Callable[[], bool], on_outcome: Callable[[Outcome], None],
          interval: float | None = None) -> None:
    """Analyze every model each interval (the smallest policy interval) until `stop()`."""
    while not stop():
        began = time.monotonic()
        models = controller.models(only)
        for model in models:
            on_outcome(controller.analyze(model))
        period = interval or min((m.rollout.interval_seconds for m in models if m.rollout), default=5)
        while not stop() and time.monotonic() - began < period:
            time.sleep(min(0.2, period))
