"""A Kubernetes cluster through the official client: read objects and change them with JSON patch.

JSON patch (with `test` operations guarding what the plan saw) behaves the same on every API
server; strategic-merge patch does not (and a JSON patch is atomic: all operations or none).
"""

from __future__ import annotations

from typing import Any

from runbooks.engine import PreconditionFailed, TransientError, WorldChanged

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


class KubernetesCluster:
    def __init__(self, *, host: str | None = None, context: str | None = None, kubeconfig: str | None = None,
                 in_cluster: bool = False) -> None:
        from kubernetes import client, config

        self.where = "the in-cluster API" if in_cluster else host or context or "the current kubeconfig context"
        if in_cluster:
            configuration = client.Configuration()
            try:  # the pod's service account token, re-read as the kubelet rotates it
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException as error:
                raise PreconditionFailed(f"Kubernetes API unreachable: not in a pod with a service account token "
                                         f"({error}); nothing was changed") from None
            api = client.ApiClient(configuration)
        elif host:
            configuration = client.Configuration()
            configuration.host = host.rstrip("/")
            api = client.ApiClient(configuration)
        else:
            try:
                api = config.new_client_from_config(config_file=kubeconfig, context=context)
            except (config.ConfigException, OSError, TypeError, ValueError) as error:
                # No kubeconfig, no such context, a context without a cluster: the same as an API that is down.
                where = f"context {context!r}" if context else "the current context"
                raise PreconditionFailed(f"Kubernetes API unreachable: {where} of {kubeconfig or 'the kubeconfig'} "
                                         f"cannot be used ({error}); nothing was changed") from None
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config import ConfigException

        try:
            return fn(*args, _request_timeout=30, **kwargs)
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status in (409, 422) or (error.status == 500 and "test" in str(error.body).lower()):
                raise WorldChanged(f"{what}: the object changed since it was read ({error.status}); re-plan") from None
            if error.status in (429,) or error.status >= 500:
                raise TransientError(f"{what}: Kubernetes API {error.status}") from None
            raise PreconditionFailed(f"{what}: Kubernetes API {error.status}: {error.reason}") from None
        except OSError as error:
            raise TransientError(f"{what}: Kubernetes API at {self.where} unreachable: {error}") from None
        except ConfigException as error:  # credentials that cannot be had (an exec plugin failing, an expired token)
            raise PreconditionFailed(f"{what}: Kubernetes API at {self.where} unreachable: {error}; "
                                     "nothing was changed") from None

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._call(f"read deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)
        return None if found is None else self.apps.api_client.sanitize_for_serialization(found)

    def patch_deployment(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self._call(f"patch deployment {namespace}/{name}", self.apps.patch_namespaced_deployment, name, namespace,
                   operations)

    def route(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call(f"read httproute {namespace}/{name}", self.custom.get_namespaced_custom_object,
                          *GATEWAY[:2], namespace, GATEWAY[2], name)

    def patch_route(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self._call(f"patch httproute {namespace}/{name}", self.custom.patch_namespaced_custom_object,
                   *GATEWAY[:2], namespace, GATEWAY[2], name, operations)

    def nodes(self, label_selector: str) -> list[dict[str, Any]]:
        """Nodes with every `key=value` label of the selector (checked here too, whatever the server did)."""
        found = self._call(f"list nodes {label_selector}", self.core.list_node, label_selector=label_selector)
        items = [] if found is None else self.core.api_client.sanitize_for_serialization(found).get("items", [])
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if "=" in part)
        return [n for n in items if all((n["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
