"""The labels every Kubernetes object of ours carries: ownership for cost reports and policies."""

from collections.abc import Mapping

PART_OF = "llmops"


def standard_labels(name: str, component: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Recommended `app.kubernetes.io/*` labels plus the required owner, cost-center and environment."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
        "owner": tags["owner"],
        "cost-center": tags["cost-center"],
        "environment": tags["environment"],
    }
