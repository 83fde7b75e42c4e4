"""Runbooks that pin a decision (a known-good release, the active region) edit the environment's stack file:
comments and quoting kept, the result validated as a stack config, then moved into place atomically --
a change ready to commit, never a half-written file."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components import config as stack_config


def edit_stack_file(path: Path, change: Callable[[Any], None]) -> None:
    """Load `path` round-trip, let `change` edit the document in place, validate, and replace the file."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes, yaml.width = True, 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load(path.read_text())
    change(document)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    scratch = Path(tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")[1])
    try:
        scratch.write_text(buffer.getvalue())
        stack_config.load_file(scratch)  # the result must still be a valid stack config
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
