"""The release controller's shadow gate in the canary drill world: the canary's Deployment as staging renders it (its
release id annotation), Prometheus scraping the world's Pushgateway, and comparisons pushed there as `llmops release
compare` pushes them. A healthy canary whose release the latest comparison refused is held instead of promoted; a
promotable verdict, a verdict of another release, or one older than verdictMaxAgeSeconds does not hold it; with
requireComparison a canary never compared is held."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from llmops.controller.controller import Controller, Outcome, watch
from llmops.drill.backends import wait_until
from llmops.drill.rollback_drill import SERVICE
from llmops.drill.shadow_drill import (
    canary_objects,
    forget_verdicts,
    prometheus_verdict,
    push_verdict,
    release_id,
    remove_deployment,
    scrape_pushgateway,
    seed_deployment,
)
from runbooks.adapters.kubernetes_cluster import KubernetesCluster
from runbooks.adapters.mlflow_registry import MlflowRegistry
from runbooks.adapters.prometheus import Prometheus
from runbooks.targets import load_targets

CANARY = f"{SERVICE}-canary"
SHADOW_HOLD = "the shadow comparison of release"


@pytest.fixture(scope="module")
def releases(canary_world, plans) -> Iterator[dict[str, str]]:
    """The canary's Deployment in the world and the Pushgateway scraped, for this module; the world as found after."""
    objects = canary_objects(plans["staging"].kubernetes_objects())
    seed_deployment(canary_world, objects[f"Deployment/{CANARY}"])
    scrape_pushgateway(canary_world)
    yield {track: release_id(objects[f"Deployment/{name}"])
           for track, name in (("stable", SERVICE), ("canary", CANARY), ("shadow", f"{SERVICE}-shadow"))}
    forget_verdicts(canary_world.pushgateway.url)
    verdicts_gone(canary_world)  # marked stale by a scrape, before the scraping stops
    scrape_pushgateway(canary_world, scraped=False)
    remove_deployment(canary_world, CANARY)


def verdicts_gone(world: Any) -> None:
    wait_until(lambda: not world.prometheus.query(f'llmops_shadow_verdict{{model="{SERVICE}"}}'), 30,
               "Prometheus to drop the last verdict pushed")


@pytest.fixture
def gated(canary, releases) -> Any:
    """No comparison pushed, and Prometheus no longer holding one."""
    forget_verdicts(canary.pushgateway.url)
    verdicts_gone(canary)
    return canary


def controller() -> Controller:
    targets = load_targets("drill")
    assert targets.registry and targets.kubernetes and targets.prometheus
    return Controller("drill", targets, Prometheus(targets.prometheus.url), MlflowRegistry(targets.registry.tracking_uri),
                      KubernetesCluster(host=targets.kubernetes.host), progress=lambda message: None)


def shadow_holds(seen: list[Outcome]) -> list[Outcome]:
    return [o for o in seen if o.decision.get("action") == "hold" and "shadow comparison" in o.decision.get("reason", "")]


def watch_until(ctl: Controller, done: Any, timeout: float = 90) -> list[Outcome]:
    """The controller's own loop until `done(seen)` or the deadline (a failure naming what was seen)."""
    seen: list[Outcome] = []
    deadline = time.monotonic() + timeout
    watch(ctl, SERVICE, lambda: bool(seen and done(seen)) or time.monotonic() > deadline, seen.append)
    assert seen and done(seen), f"not reached within {timeout}s: {[(o.decision.get('action'), o.acted) for o in seen]}"
    return seen


def decided(seen: list[Outcome]) -> bool:
    return seen[-1].acted != "none" or bool(shadow_holds(seen))


def push(world: Any, *, primary: str, shadow: str, promotable: bool, at: float | None = None) -> None:
    assert push_verdict(world.pushgateway.url, primary_release=primary, shadow_release=shadow, promotable=promotable,
                        at=at) is promotable
    wait_until(lambda: prometheus_verdict(world, shadow) == (1.0 if promotable else 0.0), 30,
               "Prometheus to scrape the pushed verdict")


def shadow_gates(world: Any, **gates: Any) -> None:
    document = yaml.safe_load(world.stack_file.read_text())
    model = next(m for m in document["config"]["llmops:models"] if m["name"] == SERVICE)
    model["rollout"]["shadow"] = gates
    world.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def test_a_refused_comparison_of_the_canarys_release_holds_it_instead_of_promoting(gated, releases):
    push(gated, primary=releases["stable"], shadow=releases["canary"], promotable=False)
    seen = watch_until(controller(), lambda s: len(shadow_holds(s)) >= 3 or s[-1].acted != "none")
    holds = shadow_holds(seen)
    assert len(holds) == 3 and all(o.acted == "none" for o in seen), [(o.decision.get("action"), o.acted) for o in seen]
    reason = holds[0].decision["reason"]
    assert reason.startswith(f"{SHADOW_HOLD} {releases['canary']} refused promotion (failed gates: latency, refusals, "
                             "tokens)"), reason
    assert holds[0].decision["target_weight"] is None and holds[0].detail == reason
    # held on the comparison's account alone: the canary's own checks fail nothing
    assert not [e for o in holds for e in o.decision["evidence"] if e["verdict"] == "fail"]
    assert gated.route_weights() == {SERVICE: 80, CANARY: 20} and gated.route_patches() == 0


def test_a_promotable_comparison_of_the_canarys_release_lets_it_be_promoted(gated, releases):
    push(gated, primary=releases["stable"], shadow=releases["canary"], promotable=True)
    seen = watch_until(controller(), decided)
    assert seen[-1].acted == "promoted" and not shadow_holds(seen), seen[-1].detail
    assert gated.route_weights() == {SERVICE: 75, CANARY: 25}


def test_a_refused_comparison_of_another_release_does_not_hold_the_canary(gated, releases):
    push(gated, primary=releases["stable"], shadow=releases["shadow"], promotable=False)
    seen = watch_until(controller(), decided)
    assert seen[-1].acted == "promoted" and not shadow_holds(seen), seen[-1].detail
    assert prometheus_verdict(gated, releases["shadow"]) == 0.0  # still there, about another release


def test_a_refusal_older_than_verdict_max_age_is_ignored(gated, releases):
    shadow_gates(gated, verdictMaxAgeSeconds=3600)
    push(gated, primary=releases["stable"], shadow=releases["canary"], promotable=False, at=time.time() - 7200)
    seen = watch_until(controller(), decided)
    assert seen[-1].acted == "promoted" and not shadow_holds(seen), seen[-1].detail


def test_require_comparison_holds_a_canary_never_compared(gated, releases):
    shadow_gates(gated, requireComparison=True)
    seen = watch_until(controller(), lambda s: s[-1].acted != "none" or "no shadow comparison" in
                       s[-1].decision.get("reason", ""))
    last = seen[-1]
    assert last.acted == "none" and last.decision["action"] == "hold", (last.acted, last.detail)
    assert last.decision["reason"].startswith(f"no shadow comparison of release {releases['canary']} within "
                                              "604800 s (rollout.shadow.requireComparison)"), last.decision["reason"]
    assert gated.route_weights() == {SERVICE: 80, CANARY: 20} and gated.route_patches() == 0
