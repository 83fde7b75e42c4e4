"""`llmops:dashboards`: where the Grafana dashboards go and how Grafana's sidecar finds them. Every key has a default
(kube-prometheus-stack's sidecar: label `grafana_dashboard: "1"`, folder from the `grafana_folder` annotation), so
a stack file needs the section only to change them."""

from __future__ import annotations

from pydantic import Field

from components.config.base import Section

_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# A label key (optional DNS prefix, then a name) and a label value, as Kubernetes accepts them.
_LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"


class Dashboards(Section):
    enabled: bool = True
    # The label Grafana's dashboard sidecar selects ConfigMaps by (kube-prometheus-stack: grafana.sidecar.dashboards
    # .label / .labelValue).
    sidecar_label: str = Field(default="grafana_dashboard", pattern=_LABEL_KEY)
    sidecar_label_value: str = Field(default="1", pattern=_LABEL_VALUE)
    # The Grafana folder, through the sidecar's folderAnnotation (kube-prometheus-stack: grafana_folder).
    folder: str = Field(default="LLMOps", min_length=1, max_length=100)
    # Where the ConfigMaps go: a namespace the sidecar watches (kube-prometheus-stack: its own, or searchNamespace).
    namespace: str = Field(default="monitoring", pattern=_NAME)
