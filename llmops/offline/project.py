"""Find a Pulumi Python program and its stacks, and hand their config over as the CLI does.

The CLI reads `Pulumi.yaml` and `Pulumi.<stack>.yaml` (in `stackConfigDir`), prefixes
bare keys with the project name, and gives the program every value as a string, with
objects and lists as JSON. We do the same, so the program cannot tell the difference.
`secure:` values cannot be decrypted without the CLI; they arrive as a masked
placeholder and are marked secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.config.files import ConfigFileError, load_stack_config, load_yaml_mapping

SECRET_PLACEHOLDER = "[secret]"


class ProjectError(ValueError):
    """The program directory or one of its stack files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Project:
    directory: Path
    name: str
    main: Path
    stack_config_dir: Path

    def stack_file(self, stack: str) -> Path:
        return self.stack_config_dir / f"Pulumi.{stack}.yaml"

    def stacks(self) -> list[str]:
        """Stack names with a config file, in a stable order (dev, staging, prod first)."""
        found = [p.name[len("Pulumi."):-len(".yaml")] for p in self.stack_config_dir.glob("Pulumi.*.yaml")]
        order = {"dev": 0, "staging": 1, "prod": 2}
        return sorted(found, key=lambda name: (order.get(name, 3), name))


@dataclass(frozen=True)
class StackSettings:
    name: str
    file: Path
    config: dict[str, str]
    secret_keys: list[str] = field(default_factory=list)


def load_project(directory: str | Path) -> Project:
    directory = Path(directory).resolve()
    manifest = directory / "Pulumi.yaml"
    if not manifest.is_file():
        raise ProjectError(f"{directory}: no Pulumi.yaml; expected a Pulumi program directory")
    try:
        data = load_yaml_mapping(manifest, "name: ..., runtime: python")
    except ConfigFileError as error:
        raise ProjectError(str(error)) from None
    runtime = data.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if runtime_name != "python":
        raise ProjectError(f"{manifest}: runtime = {runtime_name!r}: expected 'python'")
    if not isinstance(data.get("name"), str):
        raise ProjectError(f"{manifest}: name: expected the project name as a string")
    for key, default, expected in (("main", "", "a file or directory name"), ("stackConfigDir", ".", "a directory name")):
        if not isinstance(data.get(key, default), str):
            raise ProjectError(f"{manifest}: {key} = {data[key]!r}: expected {expected}")
    main = directory / data.get("main", "")
    main = main / "__main__.py" if main.is_dir() else main
    if not main.is_file():
        raise ProjectError(f"{manifest}: main: {main} does not exist; expected __main__.py")
    config_dir = directory / data.get("stackConfigDir", ".")
    return Project(directory=directory, name=data["name"], main=main, stack_config_dir=config_dir)


def load_stack(project: Project, stack: str) -> StackSettings:
    path = project.stack_file(stack)
    if not path.is_file():
        known = ", ".join(project.stacks()) or "none"
        raise ProjectError(f"{path}: no such stack file; stacks of {project.name}: {known}")
    return load_stack_file(project, stack, path)


def load_stack_file(project: Project, stack: str, path: Path) -> StackSettings:
    """A stack's settings from a stack file anywhere (the sandbox composes its own under build/)."""
    try:
        raw = load_stack_config(path, project.name)  # keys already namespaced, as the CLI does
    except ConfigFileError as error:
        raise ProjectError(str(error)) from None
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for full, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full] = SECRET_PLACEHOLDER
            secret_keys.append(full)
        else:
            config[full] = engine_value(value)
    return StackSettings(name=stack, file=path, config=config, secret_keys=secret_keys)


def engine_value(value: Any) -> str:
    """The string the CLI passes to a program for one YAML config value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
