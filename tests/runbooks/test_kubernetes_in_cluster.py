"""`kubernetes.in_cluster` (the release controller's pod): one way in, refused beside another, and a clear failure
outside a pod."""

from __future__ import annotations

import pytest
import yaml

from runbooks.adapters.kubernetes_cluster import KubernetesCluster
from runbooks.engine import InputError, PreconditionFailed
from runbooks.targets import load_targets

BASE = {"environment": "prod", "stack_file": "stacks/Pulumi.prod.yaml", "aws": {"region": "us-east-1"},
        "audit": {"uri": "/tmp/audit"}, "evidence": {"uri": "/tmp/evidence"}}


def targets_with(tmp_path, kubernetes):
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump({**BASE, "kubernetes": kubernetes}))
    return load_targets("prod", tmp_path)


def test_in_cluster_alone_is_a_way_in(tmp_path):
    k8s = targets_with(tmp_path, {"in_cluster": True}).kubernetes
    assert k8s is not None and k8s.in_cluster and k8s.namespace == "serving"
    assert targets_with(tmp_path, {"context": "llmops-prod-use1"}).kubernetes.in_cluster is False


@pytest.mark.parametrize("other", [{"host": "http://127.0.0.1:8001"}, {"context": "llmops-prod-use1"},
                                   {"kubeconfig": "~/.kube/config"}])
def test_in_cluster_with_another_way_in_is_refused_naming_the_file(tmp_path, other):
    with pytest.raises(InputError) as caught:
        targets_with(tmp_path, {"in_cluster": True, **other})
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'prod.yaml'}: kubernetes = {{") and "'in_cluster': True" in message
    assert message.endswith("Value error, in_cluster uses the pod's service account: give no host, context or "
                            "kubeconfig with it")


def test_in_cluster_outside_a_pod_is_unreachable_and_changes_nothing(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(PreconditionFailed, match=r"Kubernetes API unreachable: not in a pod .*nothing was changed"):
        KubernetesCluster(in_cluster=True)
