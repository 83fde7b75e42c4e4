"""`Region`: everything one environment runs in one AWS region, under one explicit AWS provider.

Every regional resource is created through this region's provider, so nothing can drift
into the deployer's default region, and the provider's default tags put owner,
cost-center and environment on every AWS resource.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.alert_rules import AlertRules, AlertRulesArgs
from components.cluster import Cluster, ClusterArgs
from components.config import StackConfig, region_code, rollout_surge
from components.device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.drift_monitor import DriftMonitor, DriftMonitorArgs, drift_rules
from components.drift_monitor import wanted as drift_wanted
from components.feature_store import FeatureStore, FeatureStoreArgs
from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from components.inference_gateway import InferenceGateway, InferenceGatewayArgs
from components.model_registry import ModelRegistry, ModelRegistryArgs
from components.network import Network, NetworkArgs
from components.operations import Operations, OperationsArgs
from components.pii_scan import PiiScanner, PiiScannerArgs
from components.placement import DataPlacement
from components.release_controller import ReleaseController, ReleaseControllerArgs, stalled_after_seconds, wanted
from components.request_logs import RequestLogs, RequestLogsArgs
from components.retrieval_index import RetrievalIndex, RetrievalIndexArgs
from components.vllm_service import VllmService, VllmServiceArgs


@dataclass(frozen=True)
class RegionArgs:
    config: StackConfig
    region: str
    operations: Operations | None = None  # the primary region's, for a secondary region (its release controller)


class Region(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:infra:Region", name, None, opts)
        cfg, region = args.config, args.region
        tags = dict(cfg.tags)
        self.role = "primary" if region == cfg.regions.primary else "secondary"
        self.region, self.code = region, region_code(region)
        self.cluster_name = f"llmops-{cfg.environment}-{region_code(region)}"
        cold = cfg.standby(region).mode == "cold"

        provider = aws.Provider(f"{name}-aws", region=region, default_tags={"tags": {**tags, "llmops.io/region-role": self.role}},
                                opts=pulumi.ResourceOptions(parent=self))
        self.provider = provider
        on_aws = pulumi.ResourceOptions(parent=self, providers=[provider])

        network = Network(name, NetworkArgs(
            region=region, cidr=cfg.network.vpc_cidrs[region], availability_zones=cfg.network.availability_zones,
            nat_gateways=cfg.network.nat_gateways, cluster_name=self.cluster_name,
            flow_log_retention_days=cfg.cluster.log_retention_days), opts=on_aws)

        cluster = Cluster(name, ClusterArgs(
            cluster_name=self.cluster_name, region=region, kubernetes_version=cfg.cluster.kubernetes_version,
            subnet_ids=network.private_subnet_ids, endpoint_public_access=cfg.cluster.endpoint_public_access,
            public_access_cidrs=cfg.cluster.public_access_cidrs, log_retention_days=cfg.cluster.log_retention_days,
            admin_role_arns=cfg.cluster.admin_role_arns, system_pool=cfg.cluster.system_pool,
            deletion_protection=cfg.environment != "dev", tags=tags), opts=on_aws)

        self.gpu_pools = {
            pool.name: GpuNodePool(f"{name}-gpu-{pool.name}", GpuNodePoolArgs(
                # A cold standby keeps no GPU node: the pool scales from zero when failover asks for replicas.
                pool=pool.model_copy(update={"min_size": 0, "desired_size": 0}) if cold else pool,
                cluster_name=cluster.name, node_role_arn=cluster.node_role.arn,
                subnet_ids=network.private_subnet_ids, tags=tags, depends_on=[cluster.system_node_group]), opts=on_aws)
            for pool in cfg.gpu_pools
        }
        on_cluster = pulumi.ResourceOptions(parent=self, providers=[cluster.provider])
        on_both = pulumi.ResourceOptions(parent=self, providers=[provider, cluster.provider])
        NvidiaDevicePlugin(f"{name}-nvidia", NvidiaDevicePluginArgs(image=cfg.device_plugin.image, tags=tags), opts=on_cluster)

        gateway = InferenceGateway(name, InferenceGatewayArgs(serving=cfg.serving, region_code=region_code(region), tags=tags),
                                   opts=on_cluster)
        serving = (gateway.namespace,)
        placement = DataPlacement(
            environment=cfg.environment, region=region, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
            cluster_security_group_id=cluster.cluster_security_group_id, oidc_provider=cluster.oidc_provider,
            client_namespaces=serving, tags=tags)
        self.registry = registry = ModelRegistry(name, ModelRegistryArgs(config=cfg.registry, placement=placement),
                                                 opts=on_both)
        self.feature_store = FeatureStore(name, FeatureStoreArgs(config=cfg.feature_store, placement=placement),
                                          opts=on_both)
        self.index = index = RetrievalIndex(name, RetrievalIndexArgs(config=cfg.retrieval, tools=cfg.tools,
                                                                     placement=placement), opts=on_both)

        self.models = {
            model.name: VllmService(f"{name}-{model.name}", VllmServiceArgs(
                model=model, pool=cfg.pool(model.pool), surge=rollout_surge(cfg, model), region_code=region_code(region),
                serving=cfg.serving, namespace=gateway.namespace, gateway=gateway.name, registry_uri=registry.tracking_uri,
                fetch_image=cfg.registry.image, retrieval_fingerprints=index.fingerprints, tags=tags, cold=cold),
                opts=pulumi.ResourceOptions(parent=self, providers=[cluster.provider], depends_on=[gateway]))
            for model in cfg.models
        }

        # Every region keeps its request logs (all models and tracks): the PII scanner and release comparisons read them.
        request_logs = RequestLogs(name, RequestLogsArgs(config=cfg, region=region, oidc_provider=cluster.oidc_provider,
                                                         tags=tags), opts=on_both)
        # Scans of the request logs too big for one machine run here as Indexed Jobs (llmops pii scan --on-cluster):
        # a namespace, a role that reads only the logs and writes only the results, and the results' bucket.
        pii_scan = PiiScanner(name, PiiScannerArgs(region=region, oidc_provider=cluster.oidc_provider,
                                                   readable=[request_logs.outputs["uri"]], key_arn=request_logs.key.arn,
                                                   source_key_arns=[request_logs.key.arn], tags=tags,
                                                   force_destroy=cfg.environment == "dev"), opts=on_both)

        controlled = wanted(cfg)
        AlertRules(f"{name}-alerts", AlertRulesArgs(alerting=cfg.alerting, models=cfg.models, environment=cfg.environment,
                                                     region=region, tags=tags,
                                                     release_stalled_after_seconds=stalled_after_seconds(cfg) if controlled
                                                     else None, drift=drift_rules(cfg),
                                                     dashboards=cfg.dashboards), opts=on_cluster)
        drift = None
        if drift_wanted(cfg):
            drift = DriftMonitor(name, DriftMonitorArgs(
                config=cfg, region=region, oidc_provider=cluster.oidc_provider,
                references_bucket=registry.artifact_bucket.name, references_bucket_arn=registry.artifact_bucket.arn,
                references_key_arn=registry.key.arn, tags=tags), opts=on_both)

        operations = (Operations(name, OperationsArgs(environment=cfg.environment, tags=tags), opts=on_aws)
                      if self.role == "primary" else None)
        self.operations = operations or args.operations
        controller = None
        if controlled:
            if self.operations is None:
                raise ValueError(f"region {region}: a release controller needs the primary region's Operations")
            controller = ReleaseController(name, ReleaseControllerArgs(
                config=cfg, region=region, namespace=gateway.namespace, tracking_uri=registry.tracking_uri,
                oidc_provider=cluster.oidc_provider, operations=self.operations, tags=tags),
                opts=pulumi.ResourceOptions(parent=self, providers=[provider, cluster.provider],
                                            depends_on=[gateway, *self.models.values()]))

        self.outputs = {
            "role": self.role,
            "region": region,
            "standby": cfg.standby(region).mode if self.role == "secondary" else None,
            "operations": operations.outputs if operations else None,
            "servingNamespace": gateway.namespace,
            "clusterName": cluster.name,
            "clusterEndpoint": cluster.endpoint,
            "oidcProviderArn": cluster.oidc_provider.arn,
            "vpcId": network.vpc_id,
            "gpuNodeGroups": {pool: p.node_group.node_group_name for pool, p in self.gpu_pools.items()},
            "registry": {"trackingUri": registry.tracking_uri, "artifactBucket": registry.artifact_bucket.name},
            "retrievalFingerprints": index.fingerprints,
            "snapshotBucket": index.snapshot_bucket.name,
            "releases": {model: service.release_id for model, service in self.models.items()},
            "shadows": {model: service.shadow for model, service in self.models.items() if service.shadow},
            "requestLogs": request_logs.outputs,
            "piiScan": pii_scan.outputs,
            "releaseController": controller.outputs if controller else None,
            "driftMonitor": drift.outputs if drift else None,
        }
        self.register_outputs(self.outputs)
