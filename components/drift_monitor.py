"""`DriftMonitor`: the monitor that judges the models' drift policies (`llmops drift watch`), in one region, in its own
namespace, with an IAM role (IRSA) that may only read the drift references in the region's model registry bucket.

Deployed only where some model has `drift` (and `llmops:driftMonitor` is set); the Kubernetes objects, and the Fluent
Bit config that forwards it a sample of the serving logs, are built in `components/manifests/drift_monitor.py`.
References live beside the models they judge: `s3://<registry artifact bucket>/drift/references/...`, which the
failover replication copies from the primary to the secondaries with the artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import Model, StackConfig
from components.identity import role_policy, service_account_role
from components.kubernetes import kubernetes_objects, late
from components.manifests.alert_rules import DriftAlertSpec, DriftRules
from components.manifests.drift_monitor import (
    FLUENT_BIT_NAMESPACE,
    NAME,
    NAMESPACE,
    PORT,
    REFERENCES_PREFIX,
    DriftMonitorSpec,
    Embeddings,
    WatchedModel,
    drift_monitor_objects,
    namespace_of_service,
    references_uri,
    service_host,
)
from components.manifests.workload import namespace


def drift_models(config: StackConfig) -> list[Model]:
    return [model for model in config.models if model.drift is not None]


def wanted(config: StackConfig) -> bool:
    """A monitor runs where it has something to judge: configured, and some model has drift monitoring."""
    return config.drift_monitor is not None and bool(drift_models(config))


def watched_models(config: StackConfig) -> tuple[WatchedModel, ...]:
    """Each model with drift, its policy as the stack file spells it and the embedding model of the index it names."""
    indexes = {index.name: index for index in config.retrieval.indexes}
    watched = []
    for model in drift_models(config):
        assert model.drift is not None
        embedding = model.drift.embedding
        watched.append(WatchedModel(
            name=model.name, drift=model.drift.model_dump(by_alias=True, mode="json"),
            embedding_model=indexes[embedding.index].embedding_model if embedding else None,
            sample_percent=model.drift.sample_percent))
    return tuple(watched)


def drift_rules(config: StackConfig) -> DriftRules | None:
    """The drift alerts' inputs, where a monitor runs; else None (no drift group)."""
    if config.drift_monitor is None or not wanted(config):
        return None
    specs = []
    for model in drift_models(config):
        assert model.drift is not None
        drift = model.drift
        specs.append(DriftAlertSpec(model=model.name, severity=drift.alert, consecutive_windows=drift.consecutive_windows,
                                    window_seconds=drift.window_seconds, min_samples=drift.min_samples,
                                    sample_percent=drift.sample_percent, retraining_volume=drift.retraining.volume))
    return DriftRules(interval_seconds=config.drift_monitor.rule_interval_seconds, models=tuple(specs))


def prometheus_namespace(config: StackConfig) -> str:
    """Where Prometheus runs (it scrapes the monitor): the namespace of `serving.prometheusUrl` when that is an
    in-cluster Service, else the namespace its rules go to."""
    return namespace_of_service(config.serving.prometheus_url) or config.alerting.rule_namespace


def iam_statements(*, region: str, bucket_arn: str, key_arn: str) -> list[dict[str, Any]]:
    """Read the references and nothing else: their objects, a listing of their prefix, the bucket's key through S3."""
    prefix = REFERENCES_PREFIX
    return [
        {"Sid": "References", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{bucket_arn}/{prefix}/*"},
        {"Sid": "ListReferences", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
        {"Sid": "ReferencesKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    ]


@dataclass(frozen=True)
class DriftMonitorArgs:
    config: StackConfig
    region: str
    oidc_provider: aws.iam.OpenIdConnectProvider
    references_bucket: pulumi.Input[str]  # the region's model registry artifact bucket: name
    references_bucket_arn: pulumi.Input[str]
    references_key_arn: pulumi.Input[str]  # the key that bucket is encrypted with
    tags: Mapping[str, str]


class DriftMonitor(pulumi.ComponentResource):
    def __init__(self, name: str, args: DriftMonitorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:monitoring:DriftMonitor", name, None, opts)
        cfg, monitor = args.config, args.config.drift_monitor
        if monitor is None or not wanted(cfg):
            raise ValueError("a drift monitor needs llmops:driftMonitor and a model with drift monitoring")

        role = service_account_role(f"{name}-drift-monitor", oidc_provider=args.oidc_provider, namespace=NAMESPACE,
                                    service_account=NAME, parent=self)
        role_policy(f"{name}-drift-monitor", role, pulumi.Output.all(
            args.references_bucket_arn, args.references_key_arn).apply(
            lambda a: iam_statements(region=args.region, bucket_arn=a[0], key_arn=a[1])), parent=self)

        embeddings = monitor.embeddings
        spec = DriftMonitorSpec(
            environment=cfg.environment, region=args.region, image=monitor.image, role_arn=late("role_arn"),
            references=references_uri(late("bucket")), models=watched_models(cfg),
            embeddings=Embeddings(url=embeddings.url, dimension=embeddings.dimension,
                                  api_key_secret=embeddings.api_key_secret) if embeddings else None,
            scrape_interval_seconds=monitor.scrape_interval_seconds, log_path=monitor.log_path,
            client_namespaces=tuple(sorted({FLUENT_BIT_NAMESPACE, prometheus_namespace(cfg)})), tags=args.tags)
        kubernetes_objects(f"{name}-drift", [namespace(NAMESPACE, args.tags), *drift_monitor_objects(spec)], self,
                           late_values={"role_arn": role.arn, "bucket": args.references_bucket})
        self.outputs = {
            "roleArn": role.arn,
            "models": [model.name for model in spec.models],
            "references": pulumi.Output.from_input(args.references_bucket).apply(references_uri),
            "samplesUrl": f"http://{service_host()}:{PORT}/v1/samples",
        }
        self.register_outputs(self.outputs)
