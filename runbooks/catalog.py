"""The runbook catalog (catalog.yaml): names, purposes and the alerts that lead to each runbook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

CATALOG = Path(__file__).with_name("catalog.yaml")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    purpose: str
    alerts: tuple[str, ...]


def load_catalog(path: Path = CATALOG) -> dict[str, CatalogEntry]:
    entries = yaml.safe_load(path.read_text())["runbooks"]
    return {e["name"]: CatalogEntry(e["name"], e["title"], e["purpose"], tuple(e["alerts"])) for e in entries}
