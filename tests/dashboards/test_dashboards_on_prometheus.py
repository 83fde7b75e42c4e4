"""In a drill world -- real Prometheus scraping stable and canary traffic, the stack's own recording rules, a real
rollback run pushed by the runbook engine, the release controller's endpoint -- every panel query of the service
overview and operations dashboards returns data. What the world does not run is pushed to its Pushgateway as the
real exporter would expose it (llmops/drill/dashboard_world.py: SIMULATED)."""

from __future__ import annotations

import pytest

from components.manifests.alert_rules import SloSpec
from components.manifests.dashboards import DashboardContext, dashboards, panel_queries
from llmops.drill.backends import wait_until
from llmops.drill.dashboard_world import DashboardWorld
from llmops.drill.rollback_drill import SERVICE, DrillSettings, staging_objects


@pytest.fixture(scope="module")
def world(tmp_path_factory, plans):
    drill = DashboardWorld(tmp_path_factory.mktemp("dashboards"),
                           DrillSettings(verification_window_seconds=2, verification_timeout_seconds=30),
                           objects=staging_objects(), rate=40.0)
    try:
        drill.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        drill.wait_until_degraded()
        drill.populate()
        yield drill
    finally:
        drill.stop()


def boards(world):
    stack_models = {g["name"].removeprefix("llmops-slo-") for g in world.stack_groups() if g["name"].startswith("llmops-slo-")}
    assert SERVICE in stack_models
    from components import config as stack_config
    from components.alert_rules import slo_spec

    specs: tuple[SloSpec, ...] = tuple(slo_spec(m) for m in stack_config.load_file(world.stack_source).models
                                       if m.name == SERVICE)
    return {b.name: b for b in dashboards(DashboardContext(world.rule_context(), specs))}


@pytest.mark.parametrize("name", [f"service-{SERVICE}", "operations"])
def test_every_panel_query_returns_data_from_real_prometheus(world, name):
    assert world.rollback_result.status == "succeeded", world.rollback_result.error
    board = boards(world)[name]
    queries = [q for q in panel_queries(board.model) if not q.panel.startswith("annotation ")]
    assert queries
    empty: list[str] = []

    def all_answer() -> bool:
        empty[:] = [f"panel {q.panel!r}: {q.expr}" for q in queries if not world.prometheus.query(q.expr)]
        return not empty

    try:
        wait_until(all_answer, 60, f"every panel of {board.title} to have data", interval=0.5)
    except TimeoutError:
        pytest.fail(f"{board.title}: no data from Prometheus for\n  " + "\n  ".join(empty))


def test_the_rollback_run_and_the_releases_are_marked_by_annotations(world):
    board = boards(world)[f"service-{SERVICE}"]
    annotations = {q.panel: q.expr for q in panel_queries(board.model) if q.panel.startswith("annotation ")}
    runs = annotations["annotation Runbook runs"]
    found = wait_until(lambda: world.prometheus.query(f"max_over_time(({runs})[5m:1s])"), 30,
                       "the rollback run's pushed series on Prometheus")
    assert {(s["metric"]["runbook"], s["metric"]["outcome"]) for s in found} == {("rollback", "succeeded")}
    wait_until(lambda: world.prometheus.query(f"max_over_time(({annotations['annotation Releases']})[5m:1s])"), 30,
               "the Deployments' release ids on Prometheus")
    # The controller finds no canary to judge after the rollback (idle): nothing to mark.
    assert not world.prometheus.query(f"({annotations['annotation Release-controller actions']})")
