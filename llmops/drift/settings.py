"""What one drift monitor watches (`llmops drift watch --config FILE`): the region's models with their drift
policies (the stack file's `models[].drift`) and each one's embedding model resolved, where the references are, and
the embeddings endpoint. The stack renders it as a ConfigMap (components/manifests/drift_monitor.py); a test loads
the rendered one with this model, so the two cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from components.config.drift import Drift


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=False)


class WatchedModel(_Model):
    drift: Drift
    embedding_model: str | None = None  # the index's embeddingModel, when the embedding is judged


class Embeddings(_Model):
    url: str = Field(pattern=r"^https?://[^\s]+$")
    dimension: int = Field(ge=8, le=16384)
    api_key_env: str | None = None


class Aws(_Model):
    region: str
    endpoint_url: str | None = None  # only for local test servers


class MonitorSettings(_Model):
    environment: str
    region: str
    references: str = Field(min_length=1)  # s3://bucket/prefix or a directory
    models: dict[str, WatchedModel] = Field(min_length=1)
    embeddings: Embeddings | None = None
    aws: Aws | None = None  # for s3:// references; default: the region, the pod's credentials
    # How often the monitor looks for a new reference version (an accepted drift, a new release).
    reference_poll_seconds: float = Field(default=30, gt=0, le=3600)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)


class SettingsError(ValueError):
    """The settings file is wrong; the message names the file and the key."""


def load_settings(path: str | Path) -> MonitorSettings:
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(f"{path}: cannot be read: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SettingsError(f"{path}: not JSON: {error}") from None
    try:
        return MonitorSettings.model_validate(data)
    except ValidationError as error:
        lines = [f"{path}: {'.'.join(map(str, e['loc'])) or '(top)'} = {e.get('input')!r}: {e['msg']}"
                 for e in error.errors()]
        raise SettingsError("\n".join(lines)) from None
