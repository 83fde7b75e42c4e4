"""The cluster's storage class for stateful workloads: gp3, encrypted, retained on delete."""

from collections.abc import Mapping
from typing import Any

from components.manifests.labels import standard_labels

ENCRYPTED_GP3 = "gp3-encrypted"


def encrypted_gp3_storage_class(tags: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": ENCRYPTED_GP3, "labels": standard_labels(ENCRYPTED_GP3, "storage", tags)},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
        # A deleted claim must not delete an index's data; a volume is bound where its pod lands.
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }
