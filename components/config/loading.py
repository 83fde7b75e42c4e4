"""Reading the stack config: from the running Pulumi engine (`load`), from a stack file (`load_file`, for the
runbooks and tools), or from the engine's flat key/value form (`parse`) -- and turning every validation error
into one line that names the file, the key, the value and what is expected."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from components.config.base import NAMESPACE, STACK_CONFIG_DIR, ConfigError
from components.config.stack import StackConfig


def parse(flat: Mapping[str, Any], source: str) -> StackConfig:
    """Validate the engine's flat config (`llmops:key` -> string, objects as JSON) into a StackConfig."""
    prefix = NAMESPACE + ":"
    data: dict[str, Any] = {}
    for key, raw in flat.items():
        if not key.startswith(prefix):
            continue  # other namespaces (aws:, kubernetes:) belong to providers
        name = key[len(prefix):]
        data[name] = _decode(raw)
    try:
        return StackConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(source, e) for e in error.errors(include_url=False))) from None


def load() -> StackConfig:
    """Read the running stack's config (from the Pulumi engine) and validate it."""
    import pulumi
    import pulumi.runtime.config as runtime_config

    # The CLI hands config over in PULUMI_CONFIG; set_all_config (tests, our offline harness)
    # fills the context variable. Read both, so unknown keys can be reported too.
    flat = {**pulumi.runtime.get_config_env(), **runtime_config.CONFIG.get()}
    return parse(flat, f"{STACK_CONFIG_DIR}/Pulumi.{pulumi.get_stack()}.yaml")


def load_file(path: str | Path) -> StackConfig:
    """Read a stack file directly (for tools that run outside Pulumi, such as the runbooks), with the same
    loader and the same refusals as `llmops preview` (components/config/files.py)."""
    from components.config.files import ConfigFileError, load_stack_config

    try:
        flat = load_stack_config(path, NAMESPACE)
    except ConfigFileError as error:
        raise ConfigError(str(error)) from None
    return parse(flat, str(path))


def stack_file_config(stack: StackConfig) -> dict[str, Any]:
    """The inverse of `load_file`: the `config:` of a stack file that parses to `stack` (`llmops:<key>` -> value,
    camelCase keys, defaults spelt out). For a copy of the deployed config where the stack file is not (the
    release controller's pod). The config holds no secrets; a `secure:` key would need masking first."""
    data = stack.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {f"{NAMESPACE}:{key}": value for key, value in data.items()}


def _decode(raw: Any) -> Any:
    """Objects and lists reach the program as JSON text (as the CLI passes them); scalars stay text."""
    if not isinstance(raw, str):
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, (dict, list)) else raw


_EXPECTED = {
    "int_type": "expected an integer", "float_type": "expected a number", "string_type": "expected a string",
    "bool_type": "expected true or false", "list_type": "expected a list", "dict_type": "expected a mapping",
    "model_type": "expected a mapping", "model_attributes_type": "expected a mapping", "missing": "required key is missing",
}


def _describe(source: str, error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    path = [str(part) for part in error["loc"]]
    if error["type"] == "llmops":
        if ctx.get("key"):
            path.append(ctx["key"])
        value, expected = ctx.get("value"), ctx["expected"]
    else:
        value, expected = error.get("input"), _expected(error)
    key = NAMESPACE + ":" + re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", ".".join(path))
    if error["type"] == "missing":
        return f"{source}: {key}: {expected}"
    return f"{source}: {key} = {_show(value)}: {expected}"


def _expected(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        return "expected one of " + ctx["expected"].replace("'", '"')
    bounds = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"expected a value {bounds[kind]} {limit}"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} item(s)"
    if kind == "too_long":
        return f"expected at most {ctx['max_length']} item(s)"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx['pattern']}"
    return error["msg"]


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
