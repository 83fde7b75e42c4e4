"""The policy pack config for a stack, in the Pulumi CLI's `--policy-pack-config` format.

For this project's stacks it comes from the stack file (`llmops:policy` for enforcement,
plus the environment, allowed regions and runbook base URL the policies check against) and
the runbook catalog's names, so `pulumi preview --policy-pack-config` and `llmops policy check`
enforce exactly the same, with the pack installed anywhere on its own.
For any other program it is the given file, or nothing (the pack's own levels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import config as stack_config
from components.config.files import ConfigFileError, kind_of, read_text
from llmops.offline.project import StackSettings
from llmops.policy.runner import PolicyConfigError, resolve_config
from policies.pack import POLICY_NAMES
from runbooks.catalog import load_catalog


def pack_config_for_stack(settings: StackSettings) -> dict[str, Any]:
    """The CLI-format policy config of one of our stacks (raises ConfigError on a bad stack file)."""
    cfg = stack_config.parse(settings.config, str(settings.file))
    unknown = sorted(set(cfg.policy.overrides) - set(POLICY_NAMES))
    if unknown:
        raise PolicyConfigError(f"{settings.file}: llmops:policy.overrides.{unknown[0]}: no such policy; "
                                f"policies: {', '.join(POLICY_NAMES)}")
    shared = {"environment": cfg.environment, "allowedRegions": list(cfg.regions.allowed),
              "runbookBaseUrl": cfg.alerting.runbook_base_url, "runbooks": sorted(load_catalog())}
    # "all" sets only the level in the CLI's format; properties go to each policy (all take the same ones).
    pack: dict[str, Any] = {"all": cfg.policy.enforcement}
    for policy in POLICY_NAMES:
        level = {"enforcementLevel": cfg.policy.overrides[policy]} if policy in cfg.policy.overrides else {}
        pack[policy] = {**shared, **level}
    return pack


def is_llmops_stack(settings: StackSettings) -> bool:
    return any(key.startswith(stack_config.NAMESPACE + ":") for key in settings.config)


def load_pack_config(path: str | Path) -> dict[str, Any]:
    """A `--policy-pack-config` file, checked before any program runs: UTF-8 JSON, an object, known policies and levels.
    Raises ValueError (ConfigFileError, PolicyConfigError) with a message that names the file."""
    path = Path(path)
    text = read_text(path, "JSON")  # the stack files' reader: size, NUL bytes and encoding refused with the line
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigFileError(f"{path}: line {error.lineno}, column {error.colno}: not valid JSON: "
                              f"{error.msg}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a JSON object of policy names to levels or settings, "
                              f"found {kind_of(data)}")
    resolve_config(data, str(path))  # unknown policies and levels now, not after the programs ran
    return data
