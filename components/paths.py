"""Where this checkout keeps what the code finds by path: the project root (Pulumi.yaml, __main__.py), the
stack files, and the runbooks' targets. One home, so that moving a directory is one edit."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = PROJECT_ROOT / "stacks"
TARGETS_DIR = STACKS_DIR / "targets"
