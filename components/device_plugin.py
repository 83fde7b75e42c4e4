"""`NvidiaDevicePlugin`: the DaemonSet that makes GPUs schedulable, on one cluster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from components.kubernetes import kubernetes_object
from components.manifests.device_plugin import device_plugin_daemonset


@dataclass(frozen=True)
class NvidiaDevicePluginArgs:
    image: str
    tags: Mapping[str, str]


class NvidiaDevicePlugin(pulumi.ComponentResource):
    def __init__(self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:infra:NvidiaDevicePlugin", name, None, opts)
        daemonset = kubernetes_object(f"{name}-daemonset", device_plugin_daemonset(image=args.image, tags=args.tags),
                                      pulumi.ResourceOptions(parent=self))
        self.register_outputs({"daemonset": daemonset.metadata["name"]})  # type: ignore[attr-defined]  # a typed DaemonSet
