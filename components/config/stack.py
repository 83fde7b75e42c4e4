"""The whole stack file as one frozen `StackConfig`: its sections, the checks that cross them, and the
questions the components ask of it (a pool by name, where traffic goes, what a region's standby is)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.config.base import Section, invalid
from components.config.checks import (
    check_drift,
    check_failover,
    check_models,
    check_tags,
    check_vpc_cidrs,
)
from components.config.dashboards import Dashboards
from components.config.drift import DriftMonitor
from components.config.rollout import ReleaseController
from components.config.sections import (
    Alerting,
    Cluster,
    DevicePlugin,
    Failover,
    FeatureStore,
    GpuPool,
    Model,
    Network,
    PolicyEnforcement,
    Regions,
    Registry,
    RequestLogs,
    Retrieval,
    Serving,
    Standby,
    Tools,
)


class StackConfig(Section):
    environment: Literal["dev", "staging", "prod"]
    regions: Regions
    tags: dict[str, str]
    network: Network
    cluster: Cluster
    gpu_pools: list[GpuPool] = Field(min_length=1)
    device_plugin: DevicePlugin
    models: list[Model] = Field(min_length=1)
    serving: Serving
    registry: Registry
    feature_store: FeatureStore
    retrieval: Retrieval
    tools: Tools
    alerting: Alerting
    policy: PolicyEnforcement = PolicyEnforcement()
    failover: Failover | None = None  # required with more than one region
    release_controller: ReleaseController | None = None  # required when a model has a rollout policy
    drift_monitor: DriftMonitor | None = None  # required when a model has drift monitoring
    request_logs: RequestLogs = RequestLogs()  # the request logs' bucket in every region
    dashboards: Dashboards = Dashboards()  # llmops:dashboards: the Grafana sidecar's label, folder and namespace

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        check_tags(self)
        check_vpc_cidrs(self)
        check_models(self)
        check_failover(self)
        check_drift(self)
        if self.release_controller is None:
            for index, model in enumerate(self.models):
                if model.rollout is not None:
                    raise invalid(f"models[{index}].rollout", model.name, "expected llmops:releaseController (its "
                                  "image) too: a rollout policy is applied by the release controller")
        return self

    def standby(self, region: str) -> Standby:
        """How a region waits: the primary (and, with latency routing, every region) serves; secondaries as configured."""
        if self.failover is None or region == self.regions.primary:
            return Standby(mode="warm")
        return self.failover.standby.get(region) or Standby(mode="warm")

    @property
    def active_region(self) -> str:
        """Where failover routing sends traffic while it is healthy (the PRIMARY records)."""
        return (self.failover.active_region if self.failover else None) or self.regions.primary

    @property
    def replication_targets(self) -> list[str]:
        if self.failover is None:
            return []
        return list(self.failover.replicate_to if self.failover.replicate_to is not None else self.regions.secondaries)

    def pool(self, name: str) -> GpuPool:
        return next(pool for pool in self.gpu_pools if pool.name == name)
