"""The serving route's contract, in one place: what a model's stable, canary and shadow backends are called, how
`spec.rules[0].backendRefs` is shaped and weighed, which buckets a sticky canary takes, and how to read or patch the
weights of a live route. The manifests render by it, the config reasons by it, and the runbooks and drills read and
patch by it.

Sticky canaries (standard channel only, no sessionPersistence): the application sends `bucket(key)` of a stable key
(user or session id) in a header; besides rules[0] (weighted, for requests without the header) the route has rules
with Exact header matches, buckets `canary_buckets(weight)` to the canary and the rest to the stable backend. Those
rules follow from the canary weight alone, so `weights_patch` rewrites them whenever it changes the weights."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

STABLE, CANARY, SHADOW = "stable", "canary", "shadow"  # the tracks of a model; the shadow gets mirrored requests only
TRACKS = (STABLE, CANARY, SHADOW)
TOTAL_WEIGHT = 100  # the rendered weights are percent of requests: the stable backend gets what the canary does not
MAX_BACKEND_WEIGHT = 1_000_000  # Gateway API's bound on one backendRef's weight
DEFAULT_BACKEND_WEIGHT = 1  # Gateway API's weight for a backendRef that states none
RULE = 0  # the serving route has one rule; its backends are the model's tracks
BACKEND_REFS = f"/spec/rules/{RULE}/backendRefs"  # JSON pointer
BUCKETS = 100  # sticky buckets: bucket(key) = hash(key) mod BUCKETS; the canary takes `weight` of them
MAX_MATCHES_PER_RULE = 64  # Gateway API: matches per rule (and 16 rules, fewer than 128 matches, per route)
MAX_RULES = 16
STICKY_ANNOTATION = "llmops.io/sticky-header"  # on a route with sticky rules: the header they match


class RouteError(ValueError):
    """A route (or the weights asked of it) does not fit the contract; the message names the route and backend."""


def backend_name(model: str, track: str) -> str:
    """The Service (and Deployment) a track of `model` runs as, which is the name its backendRef carries."""
    if track == STABLE:
        return model
    if track in (CANARY, SHADOW):
        return f"{model}-{track}"
    raise ValueError(f"track {track!r}: expected one of {', '.join(TRACKS)}")


def stable_backend(model: str) -> str:
    return backend_name(model, STABLE)


def canary_backend(model: str) -> str:
    return backend_name(model, CANARY)


def shadow_backend(model: str) -> str:
    return backend_name(model, SHADOW)


def canary_takes_traffic(weight: int) -> bool:
    """Weight 0 means no canary: the stack renders no canary objects for it."""
    return weight > 0


def stable_weight(canary_weight: int) -> int:
    """The stable backend's weight beside a canary at `canary_weight`: the remainder of TOTAL_WEIGHT."""
    if not 0 <= canary_weight <= TOTAL_WEIGHT:
        raise ValueError(f"canary weight {canary_weight}: expected 0 to {TOTAL_WEIGHT} (percent of requests)")
    return TOTAL_WEIGHT - canary_weight


def backend_refs(model: str, port: int, canary_weight: int | None) -> list[dict[str, Any]]:
    """`spec.rules[0].backendRefs` of `model`'s route: stable first, then the canary unless there is none (None)."""
    refs = [{"name": stable_backend(model), "port": port, "weight": stable_weight(canary_weight or 0)}]
    if canary_weight is not None:
        refs.append({"name": canary_backend(model), "port": port, "weight": canary_weight})
    return refs


def canary_buckets(weight: int) -> range:
    """The sticky buckets a canary at `weight` takes: 0 .. weight-1. The single definition: the route renders by
    it, `llmops.release.sticky.track` answers by it. Raising the weight only adds buckets to the canary."""
    stable_weight(weight)  # checks the range
    return range(weight * BUCKETS // TOTAL_WEIGHT)


def mirror_filter(model: str, port: int, percent: int) -> dict[str, Any]:
    """A RequestMirror filter sending `percent` of the rule's requests to the shadow (Gateway API v1.3, standard
    channel). The gateway discards the mirror's answers: users only ever see the stable's or the canary's."""
    if not 1 <= percent <= TOTAL_WEIGHT:
        raise ValueError(f"mirror percent {percent}: expected 1 to {TOTAL_WEIGHT}")
    return {"type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": shadow_backend(model), "port": port}, "percent": percent}}


def _chunks(buckets: list[int]) -> list[list[int]]:
    return [buckets[i:i + MAX_MATCHES_PER_RULE] for i in range(0, len(buckets), MAX_MATCHES_PER_RULE)]


def sticky_rules(model: str, port: int, canary_weight: int, header: str, base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rules after rules[0] of a sticky route: each bucket, as an Exact match of `header`, to the canary (its
    `canary_buckets`) or to the stable backend. `base` is rules[0]: its path matches, filters and timeouts are
    repeated, so a sticky request is mirrored and timed like any other."""
    canary = set(canary_buckets(canary_weight))
    paths = [match.get("path") for match in base.get("matches") or [{}]]
    extra = {key: value for key, value in base.items() if key not in ("matches", "backendRefs")}
    rules = []
    for track, buckets in ((CANARY, sorted(canary)), (STABLE, [b for b in range(BUCKETS) if b not in canary])):
        for chunk in _chunks(buckets):
            matches = []
            for bucket in chunk:
                for path in paths:
                    match: dict[str, Any] = {"path": dict(path)} if path else {}
                    match["headers"] = [{"type": "Exact", "name": header, "value": str(bucket)}]
                    matches.append(match)
            rules.append({"matches": matches, "backendRefs": [{"name": backend_name(model, track), "port": port}],
                          **extra})
    if len(rules) + 1 > MAX_RULES or any(len(rule["matches"]) > MAX_MATCHES_PER_RULE for rule in rules):
        raise RouteError(f"route {model}: sticky rules exceed Gateway API's limits (16 rules, 64 matches per rule)")
    return rules


def sticky_header(route: Mapping[str, Any]) -> str | None:
    """The header a route's sticky rules match, or None for a route without them."""
    return ((route.get("metadata") or {}).get("annotations") or {}).get(STICKY_ANNOTATION)


def sticky_assignment(route: Mapping[str, Any]) -> dict[int, str]:
    """Bucket -> the backend a sticky request of that bucket reaches, as the route's rules say."""
    header = sticky_header(route)
    assignment: dict[int, str] = {}
    for rule in ((route.get("spec") or {}).get("rules") or [])[RULE + 1:]:
        backends = rule.get("backendRefs") or []
        for match in rule.get("matches") or []:
            for condition in match.get("headers") or []:
                if condition.get("name") == header and condition.get("type", "Exact") == "Exact" and len(backends) == 1:
                    assignment[int(condition["value"])] = str(backends[0]["name"])
    return assignment


def _where(route: Mapping[str, Any]) -> str:
    metadata = route.get("metadata") or {}
    return f"HTTPRoute {metadata.get('namespace', '?')}/{metadata.get('name', '?')}"


def _backends(route: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = (route.get("spec") or {}).get("rules") or []
    if len(rules) <= RULE:
        raise RouteError(f"{_where(route)}: no spec.rules[{RULE}]; expected the serving route this stack renders")
    return list(rules[RULE].get("backendRefs") or [])


def route_model(route: Mapping[str, Any]) -> str:
    """The model a serving route belongs to: the route is named after it, as is its stable backend."""
    return str(route["metadata"]["name"])


def route_weights(route: Mapping[str, Any]) -> dict[str, int]:
    """Backend name -> weight, in the route's order (a backendRef without a weight has Gateway API's default)."""
    return {b["name"]: b.get("weight", DEFAULT_BACKEND_WEIGHT) for b in _backends(route)}


def canary_weight(route: Mapping[str, Any]) -> int:
    """The weight the route gives to anything but the model's stable backend (percent, for a route we render)."""
    stable = stable_backend(route_model(route))
    return sum(weight for name, weight in route_weights(route).items() if name != stable)


def weights_with_canary(weights: Mapping[str, int], model: str, canary_weight: int) -> dict[str, int]:
    """The weights `weights` (a route's, as route_weights reads them) should have with the canary at
    `canary_weight`: the stable backend the remainder, the canary its weight, and any other backend 0."""
    stable, canary = stable_backend(model), canary_backend(model)
    if stable not in weights:
        raise RouteError(f"no stable backend {stable!r} among the route's backends ({', '.join(weights) or 'none'})")
    if canary_takes_traffic(canary_weight) and canary not in weights:
        raise RouteError(f"no backend {canary!r} to give weight {canary_weight} (backends: {', '.join(weights)}); "
                         "a canary is added by the stack, not by a patch")
    target = {name: 0 for name in weights}
    target[stable] = stable_weight(canary_weight)
    if canary in target:
        target[canary] = canary_weight
    return target


def weights_patch(route: Mapping[str, Any], weights: Mapping[str, int]) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) that sets the named backends' weights on the route as it was read: each write is
    guarded by a `test` of the backend's name at its index, so the patch fails whole if the backends moved since.
    On a sticky route the sticky rules are replaced by those of the new canary weight, guarded by a `test` of each
    rule as it was read: whatever the weights, the buckets stay consistent with them."""
    operations = _weight_operations(route, weights)
    header = sticky_header(route)
    if header is None:
        return operations
    rules = list((route.get("spec") or {}).get("rules") or [])
    old = rules[RULE + 1:]
    target = {**route_weights(route), **weights}
    model = route_model(route)
    stable = stable_backend(model)
    total = sum(target.values())
    if total <= 0:
        raise RouteError(f"{_where(route)}: sticky route weights {target} add up to 0; expected some weight, so the "
                         "canary's share of the buckets follows from it")
    # The canary's share of the weighted requests, in percent (the weights are percent on a route the stack renders).
    new_weight = round(TOTAL_WEIGHT * sum(w for name, w in target.items() if name != stable) / total)
    port = _backends(route)[0].get("port")
    guards = [{"op": "test", "path": f"/spec/rules/{RULE + 1 + i}", "value": rule} for i, rule in enumerate(old)]
    removals = [{"op": "remove", "path": f"/spec/rules/{RULE + 1 + i}"} for i in reversed(range(len(old)))]
    additions = [{"op": "add", "path": "/spec/rules/-", "value": rule}
                 for rule in sticky_rules(model, int(port or 0), new_weight, header, rules[RULE])]
    return guards + operations + removals + additions


def _weight_operations(route: Mapping[str, Any], weights: Mapping[str, int]) -> list[dict[str, Any]]:
    backends = _backends(route)
    names = [str(b.get("name")) for b in backends]
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    operations: list[dict[str, Any]] = []
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_BACKEND_WEIGHT:
            raise RouteError(f"{_where(route)}: backend {name!r} weight {weight!r}: expected an integer from 0 to "
                             f"{MAX_BACKEND_WEIGHT}")
        if name not in names:
            raise RouteError(f"{_where(route)}: no backend {name!r} (backends: {', '.join(map(str, names)) or 'none'})")
        if name in twice:
            raise RouteError(f"{_where(route)}: backend {name!r} appears {names.count(name)} times; which one to "
                             "weigh is ambiguous")
        index = names.index(name)
        path = f"{BACKEND_REFS}/{index}"
        # `replace` needs the member to exist; a backendRef left at the default weight has none, so it is added
        write = "replace" if "weight" in backends[index] else "add"
        operations += [{"op": "test", "path": f"{path}/name", "value": name},
                       {"op": write, "path": f"{path}/weight", "value": weight}]
    return operations
