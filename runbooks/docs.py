"""The committed runbook pages (runbooks/pages/<name>.md), rendered from the catalog and the definitions."""

from __future__ import annotations

from pathlib import Path

from runbooks.catalog import load_catalog
from runbooks.definitions import RUNBOOKS
from runbooks.engine.pages import render_page

PAGES = Path(__file__).resolve().parent / "pages"


def rendered_pages() -> dict[Path, str]:
    return {PAGES / f"{entry.name}.md": render_page(name=entry.name, title=entry.title, purpose=entry.purpose,
                                                    alerts=entry.alerts, runbook=RUNBOOKS.get(entry.name))
            for entry in load_catalog().values()}


def stale_pages() -> list[Path]:
    return [path for path, text in rendered_pages().items() if not path.exists() or path.read_text() != text]


def write_pages() -> list[Path]:
    PAGES.mkdir(exist_ok=True)
    written = []
    for path, text in rendered_pages().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written
