"""The model registry through MLflow's own client (a tracking server URL, or a database URI)."""

from __future__ import annotations

import os
from typing import Any

from runbooks.engine import PreconditionFailed, TransientError


class MlflowRegistry:
    def __init__(self, tracking_uri: str) -> None:
        # Fail fast when the registry is down: MLflow's default is seven retries with backoff.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            if "Failed to establish a new connection" in error.message or "Max retries exceeded" in error.message:
                raise PreconditionFailed(f"model registry at {self.uri} unreachable ({what}); nothing was changed") from None
            raise PreconditionFailed(f"model registry at {self.uri}: {what} failed: {error.message}") from None
        except OSError as error:  # connection refused, DNS, timeouts
            raise TransientError(f"model registry at {self.uri} unreachable ({what}): {error}") from None

    def alias_version(self, model: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self._call(f"read alias {alias}", self.client.get_model_version_by_alias, model, alias).version)
        except MlflowException:
            return None

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self._call(f"set alias {alias}", self.client.set_registered_model_alias, model, alias, version)

    def set_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        self._call(f"tag version {version}", self.client.set_model_version_tag, model, version, key, value)

    def delete_version_tag(self, model: str, version: str, key: str) -> None:
        self._call(f"untag version {version}", self.client.delete_model_version_tag, model, version, key)

    def version(self, model: str, version: str) -> dict[str, Any] | None:
        from mlflow.exceptions import MlflowException

        try:
            found = self._call(f"read version {version}", self.client.get_model_version, model, version)
        except MlflowException:
            return None
        return {"version": str(found.version), "source": found.source, "status": found.status, "tags": dict(found.tags)}

    def versions(self, model: str) -> list[dict[str, Any]]:
        found = self._call("list versions", self.client.search_model_versions, f"name='{_quoted(model)}'")
        return [{"version": str(v.version), "source": v.source, "status": v.status, "tags": dict(v.tags)} for v in found]

    def model_exists(self, model: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self._call("read model", self.client.get_registered_model, model)
        except MlflowException:
            return False
        return True

    def artifacts_present(self, model: str, version: str) -> bool:
        """The version's weights are where the registry says they are (not empty, not deleted)."""
        import mlflow.artifacts

        uri = self._call("resolve artifacts", self.client.get_model_version_download_uri, model, version)
        try:
            listing = mlflow.artifacts.list_artifacts(artifact_uri=uri, tracking_uri=self.uri)
        except Exception:  # noqa: BLE001 - a missing location reads as "not present", with no partial state
            return False
        return bool(listing)



def _quoted(value: str) -> str:
    return value.replace("'", "")
