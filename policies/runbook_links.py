"""What every alert must carry for on-call: a severity, and a runbook_url naming a catalogued runbook page.

One implementation, one wording, for both callers: the pack's `alert-runbooks` policy and the rule lint
(components/manifests/rule_lint.py). Plain Python, without pulumi_policy, so the manifests side stays Pulumi-free.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit


def linked_runbook(url: str, base: str | None = None) -> str | None:
    """The runbook a runbook_url links to (its page's name without `.md`), or None if it is not a runbook page:
    `<base>/<name>.md`, or without a base any http(s) URL whose path ends in `/<name>.md`."""
    if base:
        prefix = base.rstrip("/") + "/"
        page = url[len(prefix):] if url.startswith(prefix) else ""
    else:
        parts = urlsplit(url)
        plain = parts.scheme in ("http", "https") and parts.netloc and not (parts.query or parts.fragment)
        page = parts.path.rpartition("/")[2] if plain else ""
    name = page.removesuffix(".md")
    return name if page.endswith(".md") and name and "/" not in name else None


def alert_problems(group: str, rule: Mapping[str, Any], *, runbooks: Collection[str] | None,
                   runbook_base_url: str | None) -> list[str]:
    """What to change in one alerting rule, a line each, naming its group and alert.

    With `runbooks` None (the pack run with no config naming them) a runbook_url is checked for its shape only:
    a page under `runbook_base_url` (when given), since no list of names could be right for every project."""
    where = f"group {group}, alert {rule.get('alert')}"
    problems = []
    if not (rule.get("labels") or {}).get("severity"):
        problems.append(f"{where}: no severity label; add labels.severity (page or ticket).")
    url = (rule.get("annotations") or {}).get("runbook_url")
    if not url:
        problems.append(f"{where}: no runbook_url annotation; link the runbook on-call should follow.")
        return problems
    name = linked_runbook(str(url), runbook_base_url)
    if name is None or (runbooks is not None and name not in runbooks):
        base = (runbook_base_url or "<runbookBaseUrl>").rstrip("/")
        if runbooks is not None:
            problems.append(f"{where}: runbook_url {url} names no catalogued runbook page; "
                            f"use {base}/<{'|'.join(sorted(runbooks))}>.md.")
        else:
            problems.append(f"{where}: runbook_url {url} is not a runbook page; use {base}/<runbook>.md.")
    return problems
