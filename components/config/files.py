"""Reading the files people write by hand: stack files, Pulumi.yaml, runbook targets, policy config.

One loader for every path that reads one (the offline plan, the policy check, the runbooks), so a
file is either read the same way everywhere or refused the same way everywhere, with one message
that names the file, the line or key, and what was expected. Refused:

- more than MAX_BYTES, bytes that are not UTF-8, NUL bytes (a binary file);
- a key twice in one mapping, at any depth: YAML would silently keep the last one;
- nesting deeper than MAX_DEPTH (libyaml's composer recurses in C: deep enough input crashes the
  interpreter instead of raising);
- aliases (and merge keys) that expand the document beyond MAX_NODES nodes, and aliases that refer
  to a node containing them. Both are counted on the composed node graph, each node once, before
  anything is constructed: a "billion laughs" file is refused in linear time, never expanded.

In a stack file's config, an unquoted date stays text (as the Pulumi CLI passes it) and a value JSON
cannot hold (!!set, !!binary) is refused with its key. PyYAML does the parsing (libyaml when
available); this module only adds the checks around it. The JSON policy config shares `read_text`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1024 * 1024  # a stack file is a few KiB
MAX_DEPTH = 64  # a stack file nests about 8 levels
MAX_NODES = 100_000  # expanded; a stack file has a few hundred

_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """PyYAML's safe loader, except that an unquoted date stays the text it is (as Go's YAML, hence the Pulumi
    CLI, reads it into a program's config): a date object is not something a program's config can hold."""

    yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()}


_JSON_TYPES = (str, int, float, bool, type(None))
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KINDS = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean",
          type(None): "nothing", set: "a set", bytes: "binary data", datetime.date: "a date", datetime.datetime: "a time"}


class ConfigFileError(ValueError):
    """A file cannot be used as it is; the message names the file and says where and why."""


def kind_of(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def read_text(path: str | Path, language: str) -> str:
    """The file's text: at most MAX_BYTES of UTF-8 (a leading BOM is dropped), without NUL bytes."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot read ({error.strerror or error}); expected a file") from None
    if len(data) > MAX_BYTES:
        raise ConfigFileError(f"{path}: more than {MAX_BYTES // (1024 * 1024)} MiB; "
                              f"expected a file of at most {MAX_BYTES // (1024 * 1024)} MiB")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ConfigFileError(f"{path}: {_position(data, nul)}: a NUL byte: a binary file; expected UTF-8 text ({language})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigFileError(f"{path}: {_position(data, error.start)}: not UTF-8 (byte 0x{data[error.start]:02x}); "
                              f"expected UTF-8 text ({language})") from None


def _position(data: bytes, offset: int) -> str:
    line_start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return f"line {line}, column {column}"


def load_yaml(path: str | Path) -> Any:
    """The file's single YAML document as plain data (None when it is empty or only comments)."""
    path = Path(path)
    node = _compose(path, read_text(path, "YAML"))
    return None if node is None else _construct(path, node)


def load_yaml_mapping(path: str | Path, shape: str) -> dict[str, Any]:
    """A file whose top level must be a mapping (an empty file is an empty one); `shape` shows what goes in it."""
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping at the top level ({shape}), found {kind_of(data)}")
    return data


def load_stack_config(path: str | Path, project: str) -> dict[str, Any]:
    """A Pulumi stack file's `config`, with every key in its namespace (`key` -> `<project>:key`), as the CLI reads it.

    Values stay as YAML gave them (the caller decides how a program receives them). A bare key and its
    namespaced spelling are one key: having both is refused like any other duplicate.
    """
    path = Path(path)
    root = _compose(path, read_text(path, "YAML"))
    if root is None:
        return {}
    data = _construct(path, root)
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping at the top level (config: ...), found {kind_of(data)}")
    config = data.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigFileError(f"{path}: config: expected a mapping of keys to values, found {kind_of(config)}")
    constructor = SafeConstructor()
    config_node = next((value for key, value in root.value if isinstance(key, ScalarNode) and key.value == "config"), None)
    lines = {_key(constructor, key): key.start_mark.line + 1
             for key, _ in (config_node.value if isinstance(config_node, MappingNode) else []) if key.tag != _MERGE_TAG}
    namespaced: dict[str, Any] = {}
    spelling: dict[str, Any] = {}
    for key, value in config.items():  # in the file's order
        if not isinstance(key, str) or not key:
            raise ConfigFileError(f"{path}: line {lines.get(key, '?')}: config key {key!r}: "
                                  f"expected a key name such as {project}:models")
        full = key if ":" in key else f"{project}:{key}"
        if full in namespaced:
            raise ConfigFileError(f'{path}: line {lines.get(key, "?")}: key "{key}" and key "{spelling[full]}" on line '
                                  f'{lines.get(spelling[full], "?")} are the same key, "{full}" (a bare key takes the '
                                  "project's namespace); expected each key once")
        _check_plain(path, full, value)
        namespaced[full], spelling[full] = value, key
    return namespaced


def _check_plain(path: Path, where: str, value: Any) -> None:
    """A config value reaches a program as JSON: refuse what JSON cannot hold (!!set, !!binary, !!timestamp)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _JSON_TYPES):
                raise ConfigFileError(f"{path}: {where}: a key that is {kind_of(key)}; expected text")
            _check_plain(path, f"{where}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(path, f"{where}[{index}]", item)
    elif not isinstance(value, _JSON_TYPES):
        raise ConfigFileError(f"{path}: {where}: {kind_of(value)}; expected text, a number, a boolean, a list or a mapping")


def _compose(path: Path, text: str) -> Node | None:
    """The document's node graph, checked: bounded depth and size, no duplicate keys, no cycles."""
    loader = _Loader(text)
    try:
        depth = events = 0
        while loader.check_event():  # libyaml's parser is a state machine: safe at any depth, unlike its composer
            event = loader.get_event()
            events += 1
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigFileError(f"{path}: line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} "
                                          "levels; expected plain data")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            if events > 2 * MAX_NODES:
                raise ConfigFileError(f"{path}: line {event.start_mark.line + 1}: more than {MAX_NODES} nodes; "
                                      "expected plain data")
    except yaml.YAMLError as error:
        raise ConfigFileError(_yaml_message(path, error)) from None
    finally:
        loader.dispose()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as error:
        raise ConfigFileError(_yaml_message(path, error)) from None
    finally:
        loader.dispose()
    if node is not None:
        _check_graph(path, node)
    return node


def _construct(path: Path, node: Node) -> Any:
    try:
        return SafeConstructor().construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigFileError(_yaml_message(path, error)) from None


def _key(constructor: SafeConstructor, node: Node) -> Any:
    """A mapping key's value, for comparing keys (scalars only: other keys are refused when constructed)."""
    if not isinstance(node, ScalarNode):
        return ("<node>", id(node))
    try:
        return constructor.construct_object(node)
    except yaml.YAMLError:
        return (node.tag, node.value)


def _children(node: Node) -> Iterator[tuple[Node, str]]:
    """Each child node with the step of the path to it (`.key`, `[index]`)."""
    if isinstance(node, SequenceNode):
        for index, child in enumerate(node.value):
            yield child, f"[{index}]"
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key, ""
            yield value, f".{key.value}" if isinstance(key, ScalarNode) else ""


def _check_graph(path: Path, root: Node) -> None:
    """Walk the graph once per node (an alias is the same node object again): duplicate keys, cycles, expanded size."""
    expanded: dict[int, int] = {}  # id(node) -> nodes it stands for once every alias is expanded
    open_nodes: set[int] = set()  # nodes whose children are being walked: meeting one again is a cycle
    constructor = SafeConstructor()
    stack: list[tuple[Node, str, bool]] = [(root, "", False)]
    while stack:
        node, where, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            size = 1 + sum(expanded[id(child)] for child, _ in _children(node))
            if size > MAX_NODES:
                raise ConfigFileError(f"{path}: line {node.start_mark.line + 1}: aliases expand this to more than "
                                      f"{MAX_NODES} nodes; expected plain data")
            expanded[id(node)] = size
            continue
        if id(node) in expanded:
            continue
        if id(node) in open_nodes:
            raise ConfigFileError(f"{path}: line {node.start_mark.line + 1}: an alias refers to a node that contains it; "
                                  "expected plain data without cycles")
        if isinstance(node, MappingNode):
            _check_unique_keys(path, constructor, node, where)
        open_nodes.add(id(node))
        stack.append((node, where, True))
        stack.extend((child, (where + step).lstrip("."), False) for child, step in reversed(list(_children(node))))


def _check_unique_keys(path: Path, constructor: SafeConstructor, node: MappingNode, where: str) -> None:
    first: dict[Any, Node] = {}
    for key, _ in node.value:
        if key.tag == _MERGE_TAG:
            continue  # merged keys may be overridden: that is what a merge is for
        value = _key(constructor, key)
        try:
            earlier = first.setdefault(value, key)
        except TypeError:  # unhashable: refused with its line when constructed
            continue
        if earlier is not key:
            place = f"in {where}" if where else "at the top level"
            raise ConfigFileError(f'{path}: line {key.start_mark.line + 1}: duplicate key "{key.value}" {place} '
                                  f"(first on line {earlier.start_mark.line + 1}); expected each key once")


def _yaml_message(path: Path, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{path}: {where}not valid YAML: {problem}" + (f" ({context})" if context else "")
