"""The serving route's contract, in one place: what a model's stable and canary backends are called, how
`spec.rules[0].backendRefs` is shaped and weighed, and how to read or patch the weights of a live route.
The manifests render by it, the config reasons by it, and the runbooks and drills read and patch by it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

STABLE, CANARY = "stable", "canary"  # the tracks of a model
TOTAL_WEIGHT = 100  # the rendered weights are percent of requests: the stable backend gets what the canary does not
MAX_BACKEND_WEIGHT = 1_000_000  # Gateway API's bound on one backendRef's weight
DEFAULT_BACKEND_WEIGHT = 1  # Gateway API's weight for a backendRef that states none
RULE = 0  # the serving route has one rule; its backends are the model's tracks
BACKEND_REFS = f"/spec/rules/{RULE}/backendRefs"  # JSON pointer


class RouteError(ValueError):
    """A route (or the weights asked of it) does not fit the contract; the message names the route and backend."""


def backend_name(model: str, track: str) -> str:
    """The Service (and Deployment) a track of `model` runs as, which is the name its backendRef carries."""
    if track == STABLE:
        return model
    if track == CANARY:
        return f"{model}-{CANARY}"
    raise ValueError(f"track {track!r}: expected one of {STABLE}, {CANARY}")


def stable_backend(model: str) -> str:
    return backend_name(model, STABLE)


def canary_backend(model: str) -> str:
    return backend_name(model, CANARY)


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
    guarded by a `test` of the backend's name at its index, so the patch fails whole if the backends moved since."""
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
