"""A two-region prod for the failover runbook: Route53 (moto) with the failover records and health checks
the prod plan declares, model artifacts in the primary's bucket and their replicas in the secondary's
(moto S3), MLflow's own store naming the versions' sources, and one Kubernetes API (kmock) per region
seeded with the Deployments the prod plan renders, ready, on Ready GPU nodes."""

from __future__ import annotations

import copy
import hashlib
import uuid
from pathlib import Path
from typing import Any

import boto3
import yaml

from components.manifests.vllm import RELEASE_ANNOTATION
from llmops.drill.failover_drill import deployments_by_region
from tests.runbooks.world import RunbookWorld

ROOT = Path(__file__).resolve().parents[2]
ENV = "prod-drill"
REGIONS = {"us-east-1": "use1", "us-west-2": "usw2"}
POOLS = {"chat": "h100", "chat-small": "l4"}
MODELS = {"chat": ("llama-3-1-70b-instruct", "9"), "chat-small": ("llama-3-1-8b-instruct", "3")}
DOMAIN = "inference.prod.example.com"


def prod_deployments(plan: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """region -> model -> the Deployment exactly as the prod stack renders it there."""
    return deployments_by_region(plan, REGIONS, list(MODELS), "prod")


def bucket_names(suffix: str) -> dict[str, str]:
    return {region: f"prod-{code}-artifacts-{suffix}" for region, code in REGIONS.items()}


def registry_store(directory: Path, primary_bucket: str) -> str:
    """MLflow's store with the two registered models; each version's source is in the primary's bucket."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for registered, version in MODELS.values():
        client.create_registered_model(registered)
        for number in range(1, int(version) + 1):
            client.create_model_version(registered, f"s3://{primary_bucket}/artifacts/{registered}/{number}/model")
    return uri


class FailoverWorld(RunbookWorld):
    runbook, env = "failover", ENV

    def __init__(self, endpoint: str, workdir: Path, clusters: dict[str, Any], registry_uri: str,
                 deployments: dict[str, dict[str, dict[str, Any]]], buckets: dict[str, str]) -> None:
        self.endpoint, self.workdir, self.clusters = endpoint, workdir, clusters
        self.registry_uri, self.deployments, self.buckets = registry_uri, deployments, buckets
        self.suffix = uuid.uuid4().hex[:8]
        self.route53 = boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1")
        self.s3 = {r: boto3.client("s3", endpoint_url=endpoint, region_name=r) for r in REGIONS}

    # --- the world -----------------------------------------------------------------------------------------

    def build(self) -> FailoverWorld:
        self._dns()
        self._artifacts()
        for region in REGIONS:
            self.seed_cluster(region)
        self.stack_file = self.workdir / "Pulumi.prod.yaml"
        self.stack_file.write_text((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
        targets = self.workdir / "targets"
        targets.mkdir(exist_ok=True)
        (targets / f"{ENV}.yaml").write_text(yaml.safe_dump({
            "environment": ENV, "stack_file": str(self.stack_file),
            "aws": {"region": "us-east-1", "endpoint_url": self.endpoint},
            "audit": {"uri": str(self.workdir / "audit")}, "evidence": {"uri": str(self.workdir / "evidence")},
            "state_dir": str(self.workdir / "state"),
            "failover": {"hosted_zone_id": self.zone, "change_timeout_seconds": 30, "poll_seconds": 0.2, "regions": {
                region: {"kubernetes": {"host": self.clusters[region].url, "namespace": "serving"},
                         "artifact_bucket": self.buckets[region],
                         "registry": {"tracking_uri": self.registry_uri}}
                for region in REGIONS}}}))
        self.targets_dir = targets
        return self

    def _dns(self) -> None:
        self.zone = self.route53.create_hosted_zone(Name=DOMAIN, CallerReference=self.suffix)["HostedZone"]["Id"].split("/")[-1]
        self.checks = {}
        for region, code in REGIONS.items():
            self.checks[region] = self.route53.create_health_check(CallerReference=f"{self.suffix}-{code}", HealthCheckConfig={
                "Type": "HTTPS_STR_MATCH", "FullyQualifiedDomainName": f"chat.{code}.{DOMAIN}", "Port": 443,
                "ResourcePath": "/v1/models", "SearchString": '"id":"chat"', "RequestInterval": 10,
                "FailureThreshold": 3})["HealthCheck"]["Id"]
        changes = []
        for model in MODELS:
            for region, code in REGIONS.items():
                changes.append({"Action": "CREATE", "ResourceRecordSet": {
                    "Name": f"{model}.{DOMAIN}", "Type": "CNAME", "SetIdentifier": region, "TTL": 60,
                    "Failover": "PRIMARY" if region == "us-east-1" else "SECONDARY",
                    "HealthCheckId": self.checks[region], "ResourceRecords": [{"Value": f"{model}.{code}.{DOMAIN}"}]}})
        self.route53.change_resource_record_sets(HostedZoneId=self.zone, ChangeBatch={"Changes": changes})

    def _artifacts(self) -> None:
        self.artifact_sha: dict[str, str] = {}
        for region, bucket in self.buckets.items():
            extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            try:
                self.s3[region].create_bucket(Bucket=bucket, **extra)
            except self.s3[region].exceptions.BucketAlreadyOwnedByYou:
                for item in self.s3[region].list_objects_v2(Bucket=bucket).get("Contents", []):
                    self.s3[region].delete_object(Bucket=bucket, Key=item["Key"])
        for registered, version in MODELS.values():
            for name in ("config.json", "tokenizer.json", "model-00001-of-00002.safetensors"):
                key = f"artifacts/{registered}/{version}/model/{name}"
                body = hashlib.sha256(key.encode()).digest() * 64
                for region in REGIONS:  # the replica, as S3 replication leaves it
                    self.s3[region].put_object(Bucket=self.buckets[region], Key=key, Body=body)

    def seed_cluster(self, region: str, *, ready: int | None = None, release: str | None = None,
                     node_ready: bool = True) -> None:
        api = self.clusters[region]
        api.forget_requests()
        from kubernetes import client

        core = client.CoreV1Api(api.api)
        # kmock serves what is declared or created; nodes are listed before any exists.
        api.handler.resources["v1/nodes"] = api.handler.ResourceInfo(namespaced=False, kind="Node", singular="node")
        for node in core.list_node().items:
            core.delete_node(node.metadata.name)
        for model, deployment in self.deployments[region].items():
            deployment = copy.deepcopy(deployment)
            deployment["spec"]["replicas"] = deployment["spec"].get("replicas") or 2
            if release is not None and model == "chat":
                deployment["metadata"]["annotations"][RELEASE_ANNOTATION] = release
            api.seed(deployment, None)
            if ready is not None and model == "chat":
                api.apps.patch_namespaced_deployment_status(model, "serving", {"status": {"readyReplicas": ready,
                                                                                         "availableReplicas": ready}})
        for pool in set(POOLS.values()):
            api.seed_node(f"{pool}-{region}-node", {"llmops.io/pool": pool}, ready=node_ready)

    def environment(self) -> dict[str, str]:
        return {"LLMOPS_TARGETS_DIR": str(self.targets_dir), "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "LLMOPS_OPERATOR": "oncall@test"}

    # --- running and looking ----------------------------------------------------------------------------------

    def roles(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for record in self.route53.list_resource_record_sets(HostedZoneId=self.zone)["ResourceRecordSets"]:
            if record["Type"] == "CNAME":
                found.setdefault(record["Name"].rstrip("."), {})[record["SetIdentifier"]] = record["Failover"]
        return found

    def records(self) -> list[dict[str, Any]]:
        return [r for r in self.route53.list_resource_record_sets(HostedZoneId=self.zone)["ResourceRecordSets"]
                if r["Type"] == "CNAME"]

    def marker(self) -> str | None:
        """The failover marker's value without its time (None: no marker)."""
        found = self.route53.list_resource_record_sets(HostedZoneId=self.zone, StartRecordName=f"_llmops-failover.{DOMAIN}.",
                                                       StartRecordType="TXT", MaxItems="1")["ResourceRecordSets"]
        found = [r for r in found if r["Name"] == f"_llmops-failover.{DOMAIN}." and r["Type"] == "TXT"]
        if not found:
            return None
        return " ".join(p for p in found[0]["ResourceRecords"][0]["Value"].strip('"').split() if not p.startswith("at="))

    def active_region(self) -> str | None:
        document = yaml.safe_load(self.stack_file.read_text())
        return document["config"]["llmops:failover"].get("activeRegion")
