"""The regional inference Gateway (Gateway API): TLS on 443 for every model's hostnames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.manifests.labels import standard_labels

NAME = "inference"


def model_hostnames(model: str, domain: str, region_code: str) -> tuple[str, str]:
    """The regional name (for health checks and pinning) and the global one (failover DNS)."""
    return f"{model}.{region_code}.{domain}", f"{model}.{domain}"


def gateway(*, namespace: str, class_name: str, domain: str, region_code: str, tls_secret: str,
            tags: Mapping[str, str]) -> dict[str, Any]:
    listeners = [
        {"name": listener, "protocol": "HTTPS", "port": 443, "hostname": hostname,
         "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": tls_secret}]},
         "allowedRoutes": {"namespaces": {"from": "Same"}}}
        for listener, hostname in (("regional", f"*.{region_code}.{domain}"), ("global", f"*.{domain}"))
    ]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": NAME, "namespace": namespace, "labels": standard_labels(NAME, "inference-gateway", tags)},
            "spec": {"gatewayClassName": class_name, "listeners": listeners}}
