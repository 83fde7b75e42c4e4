"""Runbook pages in Markdown, rendered from the definitions through jinja2, so they cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from runbooks.engine.model import Runbook

TEMPLATES = Path(__file__).resolve().parent / "templates"


def render_page(*, name: str, title: str, purpose: str, alerts: tuple[str, ...], runbook: Runbook[Any, Any] | None) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    environment.filters["format_alert"] = lambda alert: f"`{alert}`"
    lock = runbook.lock_scope if runbook is not None else ""
    return environment.get_template("page.md.j2").render(
        name=name, title=title, purpose=purpose, alerts=alerts, runbook=runbook, lock=lock,
        module=f"{runbook.name.replace('-', '_')}.py" if runbook else "catalog.yaml")
