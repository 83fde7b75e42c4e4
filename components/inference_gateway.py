"""`InferenceGateway`: the serving namespace (restricted pod security) and its TLS Gateway, per region.

The certificate in `tlsSecretName` is expected from cert-manager (or any issuer); no
plain-HTTP listener exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from components.config import Serving
from components.kubernetes import kubernetes_objects
from components.manifests.gateway import NAME, gateway
from components.manifests.workload import namespace

NAMESPACE = "serving"


@dataclass(frozen=True)
class InferenceGatewayArgs:
    serving: Serving
    region_code: str
    tags: Mapping[str, str]


class InferenceGateway(pulumi.ComponentResource):
    namespace: str = NAMESPACE
    name: str = NAME

    def __init__(self, name: str, args: InferenceGatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:serving:InferenceGateway", name, None, opts)
        kubernetes_objects(f"{name}-serving", [
            namespace(NAMESPACE, args.tags),
            gateway(namespace=NAMESPACE, class_name=args.serving.gateway_class_name, domain=args.serving.domain,
                    region_code=args.region_code, tls_secret=args.serving.tls_secret_name, tags=args.tags),
        ], self)
        self.register_outputs({"namespace": NAMESPACE, "gateway": NAME})
