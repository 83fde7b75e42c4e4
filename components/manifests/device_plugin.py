"""The NVIDIA device plugin DaemonSet: advertises `nvidia.com/gpu` on GPU nodes and nowhere else.

Follows NVIDIA's static deployment (v0.17): no privilege escalation, every capability
dropped, only the kubelet's device-plugin socket directory mounted. It must run as
root to create that socket, which is why policies allow-list it by name.
"""

from collections.abc import Mapping
from typing import Any

from components.manifests.labels import standard_labels
from components.scheduling import GPU_PRESENT_LABEL, GPU_TOLERATION

NAME = "nvidia-device-plugin"
NAMESPACE = "kube-system"


def device_plugin_daemonset(*, image: str, tags: Mapping[str, str]) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": NAME}
    labels = standard_labels(NAME, "gpu-device-plugin", tags)
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {GPU_PRESENT_LABEL: "true"},
                    "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
                    "priorityClassName": "system-node-critical",
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": NAME,
                        "image": image,
                        "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"cpu": "200m", "memory": "128Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                    }],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins",
                                                                         "type": "Directory"}}],
                },
            },
        },
    }
