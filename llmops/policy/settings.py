"""The policy pack config for a stack, in the Pulumi CLI's `--policy-pack-config` format.

For this project's stacks it comes from the stack file (`llmops:policy` for enforcement,
plus the environment, allowed regions and runbook base URL the policies check against), so
`pulumi preview --policy-pack-config` and `llmops policy check` enforce exactly the same.
For any other program it is the given file, or nothing (the pack's own levels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components import config as stack_config
from llmops.offline.project import StackSettings
from llmops.policy.runner import PolicyConfigError
from policies.pack import POLICY_NAMES


def pack_config_for_stack(settings: StackSettings) -> dict[str, Any]:
    """The CLI-format policy config of one of our stacks (raises ConfigError on a bad stack file)."""
    cfg = stack_config.parse(settings.config, str(settings.file))
    unknown = sorted(set(cfg.policy.overrides) - set(POLICY_NAMES))
    if unknown:
        raise PolicyConfigError(f"{settings.file}: llmops:policy.overrides.{unknown[0]}: no such policy; "
                                f"policies: {', '.join(POLICY_NAMES)}")
    shared = {"environment": cfg.environment, "allowedRegions": list(cfg.regions.allowed),
              "runbookBaseUrl": cfg.alerting.runbook_base_url}
    # "all" sets only the level in the CLI's format; properties go to each policy (all take the same ones).
    pack: dict[str, Any] = {"all": cfg.policy.enforcement}
    for policy in POLICY_NAMES:
        pack[policy] = {**shared, **({"enforcementLevel": cfg.policy.overrides[policy]} if policy in cfg.policy.overrides else {})}
    return pack


def is_llmops_stack(settings: StackSettings) -> bool:
    return any(key.startswith(stack_config.NAMESPACE + ":") for key in settings.config)


def load_pack_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read policy config: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of policy names to levels or settings")
    return data
