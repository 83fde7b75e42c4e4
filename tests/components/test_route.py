"""The serving route's contract (components/manifests/route.py): the rendered routes follow it, and what a
runbook reads from or patches into a live route means the same thing as what the stack rendered."""

from __future__ import annotations

import copy

import jsonpatch  # what the Kubernetes API emulator applies JSON patches with (RFC 6902)
import pytest

from components import config
from components.manifests import route
from llmops.offline.project import load_stack
from llmops.offline.validate import validate_object
from tests.conftest import STACKS, objects_of


def serving_routes(plan):
    return [r for r in objects_of(plan, "HTTPRoute") if r["metadata"]["namespace"] == "serving"]


def rendered(plans, stack, name):
    return copy.deepcopy(next(r for r in serving_routes(plans[stack]) if r["metadata"]["name"] == name))


def test_backend_names():
    assert (route.stable_backend("chat"), route.canary_backend("chat")) == ("chat", "chat-canary")
    assert route.backend_name("chat", route.STABLE) == "chat"
    assert route.backend_name("chat", route.CANARY) == "chat-canary"
    assert route.backend_name("chat", route.SHADOW) == route.shadow_backend("chat") == "chat-shadow"
    with pytest.raises(ValueError, match="'mirror'.*stable, canary, shadow"):
        route.backend_name("chat", "mirror")


def test_stable_gets_the_remainder_and_weight_zero_means_no_canary():
    assert [route.stable_weight(w) for w in (0, 20, 100)] == [100, 80, 0]
    assert [route.canary_takes_traffic(w) for w in (0, 1, 100)] == [False, True, True]
    for bad in (-1, 101):
        with pytest.raises(ValueError, match=f"canary weight {bad}: expected 0 to 100"):
            route.stable_weight(bad)


def test_backend_refs_shape():
    assert route.backend_refs("m", 8000, None) == [{"name": "m", "port": 8000, "weight": 100}]
    assert route.backend_refs("m", 8000, 20) == [{"name": "m", "port": 8000, "weight": 80},
                                                 {"name": "m-canary", "port": 8000, "weight": 20}]
    # a canary still in the route at 0 (as a rollback leaves it) keeps its backend
    assert route.backend_refs("m", 8000, 0)[1] == {"name": "m-canary", "port": 8000, "weight": 0}


@pytest.mark.parametrize("stack", STACKS)
def test_every_rendered_route_follows_the_contract(plans, project, stack):
    cfg = config.parse(load_stack(project, stack).config, stack)
    services = {s["metadata"]["name"] for s in objects_of(plans[stack], "Service")}
    routes = serving_routes(plans[stack])
    assert {r["metadata"]["name"] for r in routes} == {m.name for m in cfg.models}
    for found in routes:
        model = next(m for m in cfg.models if m.name == found["metadata"]["name"])
        weights = route.route_weights(found)
        canary = model.active_canary
        expected = {route.stable_backend(model.name): route.stable_weight(canary.weight if canary else 0)}
        if canary:
            expected[route.canary_backend(model.name)] = canary.weight
        assert weights == expected
        assert list(weights) == list(expected)  # stable first
        mirrors = [f for rule in found["spec"]["rules"] for f in rule.get("filters", []) if f["type"] == "RequestMirror"]
        if model.shadow is None:
            assert mirrors == []
        else:  # every rule mirrors the same share to the shadow, by the standard channel's percent
            assert mirrors == [{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": route.shadow_backend(model.name), "port": 8000},
                "percent": model.shadow.sample_percent}}] * len(found["spec"]["rules"])
            assert route.shadow_backend(model.name) in services
        sticky = canary.sticky if canary else None
        assert route.sticky_header(found) == (sticky.header if sticky else None)
        if sticky:
            assignment = route.sticky_assignment(found)
            assert sorted(assignment) == list(range(route.BUCKETS))
            assert {b for b, name in assignment.items() if name == route.canary_backend(model.name)} == set(
                route.canary_buckets(canary.weight))
        assert route.canary_weight(found) == (canary.weight if canary else 0)
        assert sum(weights.values()) == route.TOTAL_WEIGHT
        assert set(weights) <= services  # every backend is a Service the stack renders


def test_reading_a_live_route(plans):
    staging = rendered(plans, "staging", "chat-small")
    assert route.route_weights(staging) == {"chat-small": 80, "chat-small-canary": 20}
    assert route.canary_weight(staging) == 20
    assert route.canary_weight(rendered(plans, "prod", "chat")) == 0
    del staging["spec"]["rules"][0]["backendRefs"][1]["weight"]  # Gateway API's default weight is 1
    assert route.route_weights(staging)["chat-small-canary"] == 1
    del staging["spec"]["rules"][0]["backendRefs"]
    assert route.route_weights(staging) == {}


def test_a_route_without_rules_is_refused_by_name(plans):
    foreign = rendered(plans, "staging", "chat-small")
    foreign["spec"]["rules"] = []
    with pytest.raises(route.RouteError, match=r"HTTPRoute serving/chat-small: no spec\.rules\[0\]"):
        route.route_weights(foreign)


def test_weights_with_the_canary_at_a_weight():
    live = {"chat-small": 80, "chat-small-canary": 20}
    assert route.weights_with_canary(live, "chat-small", 0) == {"chat-small": 100, "chat-small-canary": 0}
    assert route.weights_with_canary(live, "chat-small", 50) == {"chat-small": 50, "chat-small-canary": 50}
    # zero sends every other backend to 0, whatever put it there
    stray = {"chat-small": 70, "chat-small-canary": 20, "chat-small-old": 10}
    assert route.weights_with_canary(stray, "chat-small", 0) == {"chat-small": 100, "chat-small-canary": 0,
                                                                 "chat-small-old": 0}
    with pytest.raises(route.RouteError, match="no backend 'chat-small-canary'"):
        route.weights_with_canary({"chat-small": 100}, "chat-small", 10)
    with pytest.raises(route.RouteError, match="no stable backend 'chat'"):
        route.weights_with_canary(live, "chat", 0)


def test_weights_patch_applies_to_the_route_it_was_made_from(plans):
    live = rendered(plans, "staging", "chat-small")
    operations = route.weights_patch(live, {"chat-small": 100, "chat-small-canary": 0})
    assert route.route_weights(jsonpatch.apply_patch(live, operations)) == {"chat-small": 100, "chat-small-canary": 0}
    weighing = [op for op in operations if op["path"].startswith(route.BACKEND_REFS)]  # (the rest: sticky rules)
    for test, write in zip(weighing[::2], weighing[1::2], strict=True):  # every write guarded by its name
        assert test["op"] == "test" and test["path"].endswith("/name")
        assert write["path"] == test["path"].removesuffix("/name") + "/weight"


def test_weights_patch_fails_on_a_route_that_changed_since_it_was_read(plans):
    seen = rendered(plans, "staging", "chat-small")
    operations = route.weights_patch(seen, {"chat-small": 100, "chat-small-canary": 0})
    now = copy.deepcopy(seen)
    now["spec"]["rules"][0]["backendRefs"].reverse()  # someone reordered the backends in between
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(now, operations)


def test_weights_patch_adds_a_weight_the_route_left_to_its_default(plans):
    live = rendered(plans, "staging", "chat-small")
    del live["spec"]["rules"][0]["backendRefs"][1]["weight"]
    patched = jsonpatch.apply_patch(live, route.weights_patch(live, {"chat-small-canary": 0}))
    assert route.route_weights(patched) == {"chat-small": 80, "chat-small-canary": 0}


def test_weights_patch_refuses_what_it_cannot_do(plans):
    live = rendered(plans, "staging", "chat-small")
    refused = r"HTTPRoute serving/chat-small: no backend 'chat' \(backends: chat-small, chat-small-canary\)"
    with pytest.raises(route.RouteError, match=refused):
        route.weights_patch(live, {"chat": 100})
    with pytest.raises(route.RouteError, match="'chat-small-canary' weight -1: expected an integer from 0 to 1000000"):
        route.weights_patch(live, {"chat-small-canary": -1})
    with pytest.raises(route.RouteError, match="weight True"):
        route.weights_patch(live, {"chat-small-canary": True})
    twice = copy.deepcopy(live)
    twice["spec"]["rules"][0]["backendRefs"].append(dict(twice["spec"]["rules"][0]["backendRefs"][0]))
    with pytest.raises(route.RouteError, match="backend 'chat-small' appears 2 times"):
        route.weights_patch(twice, {"chat-small": 100})


# --- sticky canaries --------------------------------------------------------------------------------------------

def test_canary_buckets_are_the_first_weight_buckets():
    assert list(route.canary_buckets(0)) == []
    assert list(route.canary_buckets(5)) == [0, 1, 2, 3, 4]
    assert list(route.canary_buckets(100)) == list(range(100))
    for weight in range(100):  # raising the weight only adds buckets
        assert set(route.canary_buckets(weight)) < set(route.canary_buckets(weight + 1))
    with pytest.raises(ValueError, match="canary weight 101"):
        route.canary_buckets(101)


BASE_RULE = {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
             "backendRefs": route.backend_refs("m", 8000, 20), "timeouts": {"request": "600s"}}


@pytest.mark.parametrize("weight", [0, 1, 20, 63, 64, 65, 99, 100])
def test_sticky_rules_stay_within_gateway_api_limits(weight):
    rules = route.sticky_rules("m", 8000, weight, "x-llmops-bucket", BASE_RULE)
    assert len(rules) + 1 <= route.MAX_RULES
    assert all(len(rule["matches"]) <= route.MAX_MATCHES_PER_RULE for rule in rules)
    assert sum(len(rule["matches"]) for rule in rules) + 1 < 128  # the CRD's limit across a route's rules
    for rule in rules:
        assert rule["timeouts"] == BASE_RULE["timeouts"] and len(rule["backendRefs"]) == 1
        for match in rule["matches"]:
            assert match["path"] == {"type": "PathPrefix", "value": "/v1"}
            assert match["headers"][0]["type"] == "Exact" and match["headers"][0]["name"] == "x-llmops-bucket"


def test_the_staging_route_is_sticky_mirrored_and_valid_against_the_experimental_schema(plans):
    live = rendered(plans, "staging", "chat-small")
    assert route.sticky_header(live) == "x-llmops-bucket"
    assert [v for v in validate_object(live, "1.33")] == []  # strict: standard-channel fields only, within limits
    assert "sessionPersistence" not in str(live)
    # the weighted rule comes first and is unchanged: requests without the header are weighed as before
    assert "headers" not in str(live["spec"]["rules"][0]["matches"])
    assert route.route_weights(live) == {"chat-small": 80, "chat-small-canary": 20}


def test_a_broken_sticky_route_fails_schema_validation(plans):
    live = rendered(plans, "staging", "chat-small")
    live["spec"]["rules"][1]["matches"] *= 4  # beyond 64 matches in one rule
    assert validate_object(live, "1.33")


@pytest.mark.parametrize("new_weight", [0, 5, 25, 64, 100])
def test_weights_patch_keeps_the_sticky_rules_consistent_with_the_new_weight(plans, new_weight):
    live = rendered(plans, "staging", "chat-small")
    target = route.weights_with_canary(route.route_weights(live), "chat-small", new_weight)
    patched = jsonpatch.apply_patch(live, route.weights_patch(live, target))
    assert route.route_weights(patched) == target and route.canary_weight(patched) == new_weight
    assignment = route.sticky_assignment(patched)
    assert sorted(assignment) == list(range(route.BUCKETS))
    assert {b for b, name in assignment.items() if name == "chat-small-canary"} == set(route.canary_buckets(new_weight))
    # the patched route is the one the stack renders at the new weight, mirror filters included
    assert all(rule["filters"] == live["spec"]["rules"][0]["filters"] for rule in patched["spec"]["rules"])
    assert validate_object(patched, "1.33") == []


def test_weights_patch_on_a_sticky_route_fails_if_the_sticky_rules_changed_since_read(plans):
    seen = rendered(plans, "staging", "chat-small")
    operations = route.weights_patch(seen, {"chat-small": 100, "chat-small-canary": 0})
    now = copy.deepcopy(seen)
    now["spec"]["rules"][1]["backendRefs"][0]["name"] = "chat-small"  # someone re-pointed the canary's buckets
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(now, operations)


def test_sticky_buckets_follow_the_canarys_share_of_the_weights(plans):
    live = rendered(plans, "staging", "chat-small")
    patched = jsonpatch.apply_patch(live, route.weights_patch(live, {"chat-small": 60}))  # 60:20, a quarter canary
    canary = {b for b, name in route.sticky_assignment(patched).items() if name == "chat-small-canary"}
    assert canary == set(route.canary_buckets(25))
    with pytest.raises(route.RouteError, match="add up to 0"):
        route.weights_patch(live, {"chat-small": 0, "chat-small-canary": 0})


def test_a_route_without_sticky_rules_patches_as_before(plans):
    live = rendered(plans, "prod", "chat")
    assert route.sticky_header(live) is None and route.sticky_assignment(live) == {}
    operations = route.weights_patch(live, {"chat": 100})
    assert [op["op"] for op in operations] == ["test", "replace"]
