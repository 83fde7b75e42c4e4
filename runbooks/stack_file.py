"""Runbooks that pin a decision (a known-good release, a canary's weight, the active region) edit the environment's
stack file: comments and quoting kept, the result validated as a stack config, then moved into place atomically --
a change ready to commit, never a half-written file. The typed edits take their keys from the config schema."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from components import config as stack_config
from components.config import Canary, Failover, Model, Release, StackConfig

# Edits a stack document as ruamel's round-trip loader reads it: mappings and lists that are dicts and lists
# carrying their comments (`.ca`). ruamel itself is imported only when a file is edited.
Edit = Callable[[Any], None]


class StackFileError(stack_config.ConfigError):
    """An edit does not fit the stack file (no such model, no such section); the file was left unchanged."""


def _key(section: type[BaseModel], field: str) -> str:
    """The YAML key of a schema field, as the config's alias generator spells it (never hand-written here)."""
    return section.model_fields[field].alias or field


def _config_key(field: str) -> str:
    return f"{stack_config.NAMESPACE}:{_key(StackConfig, field)}"


MODELS, FAILOVER = _config_key("models"), _config_key("failover")


def edit_stack_file(path: Path, *changes: Edit) -> None:
    """Load `path` round-trip, apply `changes` to the document in order, validate the result as a stack config, and
    replace the file with it in one atomic move. Any refusal leaves the file as it was."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes, yaml.width = True, 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load(path.read_text())
    try:
        for change in changes:
            change(document)
    except StackFileError as error:
        raise StackFileError(f"{path}: {error}; the file is unchanged") from None
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    scratch = Path(tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")[1])
    try:
        scratch.write_text(buffer.getvalue())
        try:
            stack_config.load_file(scratch)  # the result must still be a valid stack config
        except stack_config.ConfigError as error:
            # the message names the scratch copy it validated; the engineer needs the file they asked to change
            raise stack_config.ConfigError(f"{path}: the stack config after the change is invalid; the file is "
                                           f"unchanged:\n{str(error).replace(str(scratch), str(path))}") from None
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


# --- typed edits --------------------------------------------------------------------------------------------------

def release_edit(model_name: str, version: str, prompt_version: str | None = None,
                 feature_view: str | None = None, retrieval_index: str | None = None) -> Edit:
    """Pin `model_name`'s stable release to `version` (and the prompt version, feature view and retrieval index, when
    given)."""
    def edit(document: Any) -> None:
        release = _model(document, model_name)[_key(Model, "release")]
        _put(release, Release, "version", version)
        for field, value in (("prompt_version", prompt_version), ("feature_view", feature_view),
                             ("retrieval_index", retrieval_index)):
            if value is not None:
                _put(release, Release, field, value)
    return edit


def canary_weight_edit(model_name: str, weight: int) -> Edit:
    """Set `model_name`'s canary weight. 0 on a model without a canary is nothing to do: no canary takes traffic."""
    def edit(document: Any) -> None:
        model = _model(document, model_name)
        canary = model.get(_key(Model, "canary"))
        if canary is None:
            if weight == 0:
                return
            raise StackFileError(f"{MODELS}: model {model_name!r} has no canary to give weight {weight}; "
                                 f"add its {_key(Model, 'canary')} section (release, weight) instead")
        _put(canary, Canary, "weight", weight)
    return edit


def canary_removal_edit(model_name: str) -> Edit:
    """Remove `model_name`'s canary section: its release became the stable one (a canary may not equal the stable
    release). A model without a canary is nothing to do."""
    def edit(document: Any) -> None:
        model = _model(document, model_name)
        if _key(Model, "canary") in model:
            _remove(model, _key(Model, "canary"))
    return edit


def active_region_edit(region: str | None) -> Edit:
    """Pin where failover routing sends traffic; None removes the pin (traffic goes to regions.primary)."""
    def edit(document: Any) -> None:
        failover = _config(document).get(FAILOVER)
        key = _key(Failover, "active_region")
        if region is None:
            if failover is not None and key in failover:
                _remove(failover, key)
            return
        if failover is None:
            raise StackFileError(f"{FAILOVER}: no such section; a stack with one region has nowhere to fail over to")
        _put(failover, Failover, "active_region", region)
    return edit


def pin_release(path: Path, model_name: str, version: str, prompt_version: str | None = None,
                feature_view: str | None = None) -> None:
    edit_stack_file(path, release_edit(model_name, version, prompt_version, feature_view))


def set_canary_weight(path: Path, model_name: str, weight: int) -> None:
    edit_stack_file(path, canary_weight_edit(model_name, weight))


def set_active_region(path: Path, region: str | None) -> None:
    edit_stack_file(path, active_region_edit(region))


# --- finding and changing keys in the round-trip document ------------------------------------------------------------

def _config(document: Any) -> Any:
    config = document.get("config") if isinstance(document, dict) else None  # Pulumi's stack file layout
    if not isinstance(config, dict):
        raise StackFileError("config: no such mapping; expected a Pulumi stack file")
    return config


def _model(document: Any, name: str) -> Any:
    models = _config(document).get(MODELS)
    models = models if isinstance(models, list) else []
    named = {m.get(_key(Model, "name")): m for m in models if isinstance(m, dict)}
    if name not in named:
        raise StackFileError(f"{MODELS}: no model named {name!r} (models: {', '.join(map(str, named)) or 'none'})")
    return named[name]


def _put(mapping: Any, section: type[BaseModel], field: str, value: Any) -> None:
    key = _key(section, field)
    if key in mapping:
        mapping[key] = value  # ruamel keeps the old value's quoting: `version: "9"` becomes `version: "8"`
        return
    order = [_key(section, f) for f in section.model_fields]
    earlier = set(order[:order.index(key)])
    position = max((i + 1 for i, k in enumerate(mapping) if k in earlier), default=0)
    last = _last_leaf(mapping) if position == len(mapping) else None
    mapping.insert(position, key, value)
    if last is not None:
        _move_trailing_lines(last, (mapping, key))


def _remove(mapping: Any, key: str) -> None:
    if list(mapping)[-1] == key and len(mapping) > 1:
        _move_trailing_lines(_last_leaf(mapping), _last_leaf(mapping, skip=key))
    del mapping[key]


# The comment lines after a mapping's last line (say, the one introducing the next section) are kept by ruamel on
# that last scalar. A key added after it, or the last key removed, must carry them along: otherwise the next
# section's comment ends up above the new key, or disappears with the removed one.

def _last_leaf(node: Any, skip: Any = None) -> tuple[Any, Any]:
    """(container, key) of the last scalar under `node` (its key `skip` left out); key None when there is none."""
    container, key = node, None
    while True:
        if isinstance(node, dict) and any(k != skip for k in node):
            container, key = node, [k for k in node if k != skip][-1]
        elif isinstance(node, list) and node:
            container, key = node, len(node) - 1
        else:
            return container, key
        node, skip = container[key], None


def _comment_slot(container: Any) -> int:
    return 2 if isinstance(container, dict) else 0  # ruamel: after a mapping value / after a list item


def _move_trailing_lines(source: tuple[Any, Any], target: tuple[Any, Any]) -> None:
    from ruamel.yaml.tokens import CommentToken

    (from_container, from_key), (to_container, to_key) = source, target
    if from_key is None or to_key is None:
        return
    slot = _comment_slot(from_container)
    entry = from_container.ca.items.get(from_key)
    token = entry[slot] if entry and len(entry) > slot else None
    if not isinstance(token, CommentToken) or "\n" not in token.value.rstrip("\n"):
        return  # no comment lines after the line itself
    own, trailing = token.value.split("\n", 1)
    token.value = own + "\n"
    if not own.strip():  # the line had no comment of its own
        entry[slot] = None
    to_slot = _comment_slot(to_container)
    to_entry = to_container.ca.items.setdefault(to_key, [None, None, None, None] if to_slot == 2 else [None, None])
    existing = to_entry[to_slot]
    if isinstance(existing, CommentToken):
        existing.value = existing.value.rstrip("\n") + "\n" + trailing
    else:
        to_entry[to_slot] = CommentToken("\n" + trailing, token.start_mark, None)
