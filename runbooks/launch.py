"""Run a runbook by name for an environment: targets, backends and services wired, then the engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runbooks.definitions import RUNBOOKS
from runbooks.engine import InputError, Preparing
from runbooks.engine.runner import RunOptions, RunResult, run, run_id
from runbooks.targets import environment_name, load_targets
from runbooks.wiring import services_for


def parse_params(name: str, raw: Mapping[str, str | None]) -> dict[str, Any]:
    """Typed, validated parameters; a bad one is an InputError naming the option."""
    runbook = RUNBOOKS[name]
    params: dict[str, Any] = {}
    for param in runbook.params:
        value = raw.get(param.name)
        if value is None:
            if param.required:
                raise InputError(f"{param.option} is required: {param.help}")
            params[param.name] = param.default
            continue
        try:
            params[param.name] = param.parse(value)
        except ValueError as error:
            raise InputError(f"{param.option} {value!r}: {error}") from None
    return params


def launch(name: str, environment: str, raw_params: Mapping[str, str | None], options: RunOptions,
           progress: Callable[[str], None]) -> RunResult:
    if name not in RUNBOOKS:
        raise InputError(f"no runbook {name!r}; runbooks: {', '.join(RUNBOOKS)}")
    for option, value, parse in (("--env", environment, environment_name), ("--resume", options.resume, run_id)):
        if value is not None:  # names, never paths: checked before any file is opened
            try:
                parse(value)
            except ValueError as error:
                raise InputError(f"{option} {value!r}: {error}") from None
    runbook = RUNBOOKS[name]
    targets = load_targets(environment)
    params = {} if options.resume else parse_params(name, raw_params)
    invocation = Preparing(runbook=name, environment=environment, params=params, backends=runbook.connect(targets),
                           progress=progress)
    return run(runbook, invocation, services_for(targets), options)
