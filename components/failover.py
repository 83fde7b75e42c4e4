"""`RegionalFailover`: traffic that routes around a failed region, to a standby that is really ready.

- Health: for every model in every region, a Route53 HTTPS check of its regional endpoint
  (`<model>.<region code>.<domain>`) that passes only if the body names the model -- vLLM's
  `/v1/models` does once the weights are loaded -- and, per region, a calculated check that passes
  only while every model there passes. The calculated check is the region's readiness: it follows the
  real request path (DNS, load balancer, gateway, a ready pod) and needs nothing running in the cluster
  to report it (a CloudWatch metric published from the cluster would be one more thing that can fail
  silently, and PutMetricData cannot be scoped to a resource).
- DNS: per model, `<model>.<domain>` answers with one regional name per region: PRIMARY/SECONDARY
  failover records, or latency records for active-active, each evaluating its region's calculated
  check, with a short TTL.
- Data: model artifacts and index snapshots replicate from the primary to each replication target,
  re-encrypted with the destination's key, with replication metrics and a 15-minute replication time.
- Standby: each secondary is warm (models loaded) or cold (no GPU nodes); the expected recovery time
  -- detection, DNS, and for a cold region node start, download and load -- is a stack output and is
  printed in the plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import StackConfig
from components.manifests.gateway import model_hostnames
from components.manifests.vllm import cold_start_seconds

READINESS_SEARCH = '"id":"{model}"'  # in vLLM's /v1/models answer once the model is served


@dataclass(frozen=True)
class RegionalFailoverArgs:
    config: StackConfig
    regions: Mapping[str, Any]  # region name -> components.region.Region


def detection_seconds(config: StackConfig) -> int:
    """How long until DNS answers with the standby: the checks must fail, then cached answers expire."""
    assert config.failover is not None
    check = config.failover.health_check
    return check.interval_seconds * check.failure_threshold + config.failover.ttl_seconds


def expected_recovery_seconds(config: StackConfig, region: str) -> int:
    """For a standby region: detection, plus (cold) the slowest model's node start, download and load."""
    standby = config.standby(region)
    if standby.mode == "warm":
        return detection_seconds(config)
    return detection_seconds(config) + max(
        cold_start_seconds(m.size_gib, m.startup.base_seconds, m.startup.seconds_per_gib, standby.node_start_seconds)
        for m in config.models)


def replication_role_policy(source_bucket: str, source_key: str, source_region: str,
                            destinations: list[tuple[str, str, str]]) -> str:
    """Least privilege for S3 replication: read versions of one bucket, write replicas into the destination
    buckets, decrypt with the source key and encrypt with each destination key, only through S3."""
    statements: list[dict[str, Any]] = [
        {"Sid": "SourceBucket", "Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
         "Resource": source_bucket},
        {"Sid": "SourceVersions", "Effect": "Allow",
         "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
         "Resource": f"{source_bucket}/*"},
        {"Sid": "Replicas", "Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
         "Resource": [f"{bucket}/*" for bucket, _, _ in destinations]},
        {"Sid": "DecryptSource", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": source_key,
         "Condition": {"StringLike": {"kms:ViaService": f"s3.{source_region}.amazonaws.com",
                                      "kms:EncryptionContext:aws:s3:arn": f"{source_bucket}/*"}}},
    ]
    for index, (bucket, key, region) in enumerate(destinations):
        statements.append({"Sid": f"EncryptReplica{index}", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                           "Resource": key,
                           "Condition": {"StringLike": {"kms:ViaService": f"s3.{region}.amazonaws.com",
                                                        "kms:EncryptionContext:aws:s3:arn": f"{bucket}/*"}}})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


class RegionalFailover(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegionalFailoverArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:infra:RegionalFailover", name, None, opts)
        cfg = args.config
        assert cfg.failover is not None, "RegionalFailover needs the stack's failover config"
        failover, primary = cfg.failover, args.regions[cfg.regions.primary]
        # Route53 is global; the primary's provider carries the stack's default tags.
        global_opts = pulumi.ResourceOptions(parent=self, provider=primary.provider)

        readiness: dict[str, aws.route53.HealthCheck] = {}
        for region, component in args.regions.items():
            model_checks = []
            for model in cfg.models:
                regional, _ = model_hostnames(model.name, cfg.serving.domain, component.code)
                model_checks.append(aws.route53.HealthCheck(
                    f"{name}-{component.code}-{model.name}", type="HTTPS_STR_MATCH", fqdn=regional, port=443,
                    resource_path=failover.health_check.path, search_string=READINESS_SEARCH.format(model=model.name),
                    request_interval=failover.health_check.interval_seconds,
                    failure_threshold=failover.health_check.failure_threshold, enable_sni=True, measure_latency=True,
                    tags={"Name": f"{regional}{failover.health_check.path}", "llmops.io/region": region,
                          "llmops.io/model": model.name}, opts=global_opts))
            readiness[region] = aws.route53.HealthCheck(
                f"{name}-{component.code}", type="CALCULATED", child_healthchecks=[c.id for c in model_checks],
                child_health_threshold=len(model_checks),
                tags={"Name": f"llmops {cfg.environment} {region} serving", "llmops.io/region": region,
                      "llmops.io/check": "region-readiness"}, opts=global_opts)

        records = {}
        for model in cfg.models:
            for region, component in args.regions.items():
                regional, global_name = model_hostnames(model.name, cfg.serving.domain, component.code)
                routing: dict[str, Any] = (
                    {"failover_routing_policies": [{"type": "PRIMARY" if region == cfg.active_region else "SECONDARY"}]}
                    if failover.routing == "failover" else {"latency_routing_policies": [{"region": region}]})
                records[f"{global_name}/{region}"] = aws.route53.Record(
                    f"{name}-{model.name}-{component.code}", zone_id=failover.hosted_zone_id, name=global_name,
                    type="CNAME", ttl=failover.ttl_seconds, records=[regional], set_identifier=region,
                    health_check_id=readiness[region].id, **routing, opts=global_opts)

        replication = self._replication(name, cfg, args.regions)

        standby = {}
        for region in cfg.regions.secondaries:
            seconds = expected_recovery_seconds(cfg, region)
            mode = cfg.standby(region).mode
            standby[region] = {"mode": mode, "expectedRecoverySeconds": seconds}
            pulumi.log.info(f"{region}: {mode} standby; expected recovery about {seconds // 60} min {seconds % 60} s "
                            f"({'detection and DNS' if mode == 'warm' else 'detection, DNS, GPU node start, download and load'})",
                            resource=self)

        self.outputs = {
            "routing": failover.routing,
            "activeRegion": cfg.active_region if failover.routing == "failover" else None,
            "hostedZoneId": failover.hosted_zone_id,
            "healthChecks": {region: check.id for region, check in readiness.items()},
            "records": sorted({key.split("/")[0] for key in records}),
            "replicationRoles": replication,
            "standby": standby,
            "detectionSeconds": detection_seconds(cfg),
        }
        self.register_outputs(self.outputs)

    def _replication(self, name: str, cfg: StackConfig, regions: Mapping[str, Any]) -> dict[str, pulumi.Output[str]]:
        targets = cfg.replication_targets
        if not targets:
            return {}
        primary = regions[cfg.regions.primary]
        on_primary = pulumi.ResourceOptions(parent=self, provider=primary.provider)
        pairs = {
            "artifacts": (primary.registry.artifact_bucket, primary.registry.key,
                          [(regions[t].registry.artifact_bucket, regions[t].registry.key, t) for t in targets]),
            "snapshots": (primary.index.snapshot_bucket, primary.index.key,
                          [(regions[t].index.snapshot_bucket, regions[t].index.key, t) for t in targets]),
        }
        roles = {}
        for kind, (source, source_key, destinations) in pairs.items():
            role = aws.iam.Role(f"{name}-replicate-{kind}", description=f"S3 replication of {kind} out of {primary.region}",
                                assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                                    "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                                    "Action": "sts:AssumeRole"}]}), opts=on_primary)
            arns = [x for b, k, _ in destinations for x in (b.arn, k.arn)]

            def role_policy(values: list[str], d: list[Any] = destinations) -> str:
                return replication_role_policy(
                    values[0], values[1], primary.region,
                    [(values[2 + 2 * i], values[3 + 2 * i], region) for i, (_, _, region) in enumerate(d)])

            policy = pulumi.Output.all(source.arn, source_key.arn, *arns).apply(role_policy)
            aws.iam.RolePolicy(f"{name}-replicate-{kind}", role=role.id, policy=policy, opts=on_primary)
            aws.s3.BucketReplicationConfig(
                f"{name}-replicate-{kind}", bucket=source.bucket.id, role=role.arn,
                rules=[{
                    "id": f"{kind}-to-{region}", "status": "Enabled", "priority": index, "filter": {"prefix": ""},
                    "delete_marker_replication": {"status": "Enabled"},
                    "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"},
                                                  "replica_modifications": {"status": "Enabled"}},
                    "destination": {
                        "bucket": bucket.arn, "storage_class": "STANDARD",
                        "encryption_configuration": {"replica_kms_key_id": key.arn},
                        "metrics": {"status": "Enabled", "event_threshold": {"minutes": 15}},
                        "replication_time": {"status": "Enabled", "time": {"minutes": 15}},
                    },
                } for index, (bucket, key, region) in enumerate(destinations)],
                opts=pulumi.ResourceOptions(parent=self, provider=primary.provider, depends_on=[source]))
            roles[kind] = role.arn
        return roles
