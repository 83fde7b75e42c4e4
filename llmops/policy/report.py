"""Violations as a readable table, as JSON, or as SARIF 2.1.0 for code-scanning UIs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from llmops.policy.runner import Violation
from policies.pack import PACK_NAME, POLICIES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"mandatory": "error", "remediate": "error", "advisory": "warning"}


def text(violations: Sequence[Violation], stacks: dict[str, int]) -> str:
    lines = []
    for stack, resources in stacks.items():
        mine = [v for v in violations if v.stack == stack]
        counts = Counter(v.enforcement for v in mine)
        lines.append(f"stack {stack}: {counts['mandatory']} mandatory, {counts['advisory']} advisory violation(s) "
                     f"({len(POLICIES)} policies over {resources} resources)")
        for v in mine:
            lines.append(f"  [{v.enforcement}] {v.policy}  {v.name or '(stack)'}")
            lines.extend(f"      {line}" for line in v.message.splitlines())
    return "\n".join(lines)


def as_json(violations: Sequence[Violation]) -> str:
    return json.dumps({"violations": [asdict(v) for v in violations]}, indent=2, sort_keys=True)


def sarif(violations: Sequence[Violation], stack_files: dict[str, str]) -> str:
    rules = [{"id": p.name, "name": p.name, "shortDescription": {"text": p.description},
              "fullDescription": {"text": p.description}} for p in POLICIES]
    index = {p.name: i for i, p in enumerate(POLICIES)}
    results = []
    for v in violations:
        result = {
            "ruleId": v.policy, "ruleIndex": index[v.policy], "level": _SARIF_LEVEL.get(v.enforcement, "note"),
            "message": {"text": v.message},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": stack_files.get(v.stack, f"Pulumi.{v.stack}.yaml")}},
                "logicalLocations": [{"fullyQualifiedName": v.urn or f"stack/{v.stack}", "name": v.name or v.stack,
                                      "kind": "resource"}],
            }],
            "properties": {"stack": v.stack, "enforcement": v.enforcement},
        }
        results.append(result)
    document = {"$schema": SARIF_SCHEMA, "version": "2.1.0",
                "runs": [{"tool": {"driver": {"name": PACK_NAME, "informationUri": "https://www.pulumi.com/docs/iac/packages-and-automation/crossguard/",
                                              "rules": rules}},
                          "results": results}]}
    return json.dumps(document, indent=2)
