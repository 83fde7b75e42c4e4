"""`RetrievalIndex`: Qdrant on encrypted volumes, its API key in Secrets Manager, snapshots in S3.

Each index's retrieval config (embedding model, chunker, chunk size, overlap, normalisation,
top-k) is recorded with its fingerprint, which every serving release that reads the index
includes in its release id.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.bucket import SecureBucket, SecureBucketArgs
from components.config import Retrieval, Tools
from components.config.releases import retrieval_fingerprints
from components.identity import bucket_statements, role_policy, secret_statements, service_account_role
from components.keys import generated_secret, rotating_key
from components.kubernetes import kubernetes_objects, late
from components.manifests.qdrant import NAME, QdrantSpec, qdrant_objects
from components.manifests.workload import namespace
from components.placement import DataPlacement
from components.release import recorded_config

NAMESPACE = "retrieval"
API_KEY_VERSION = 1


def corpus_listing_statements(corpora: list[str]) -> list[dict]:
    """List (with versions) only under each corpus prefix: freshness compares listings, it reads no document."""
    statements = []
    for number, uri in enumerate(sorted(set(corpora))):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        statements.append({"Sid": f"ListCorpus{number}", "Effect": "Allow",
                           "Action": ["s3:ListBucket", "s3:ListBucketVersions"], "Resource": f"arn:aws:s3:::{bucket}",
                           "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}})
    return statements


@dataclass(frozen=True)
class RetrievalIndexArgs:
    config: Retrieval
    tools: Tools
    placement: DataPlacement



class RetrievalIndex(pulumi.ComponentResource):
    fingerprints: dict[str, str]

    def __init__(self, name: str, args: RetrievalIndexArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:data:RetrievalIndex", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg, dev = args.config, args.placement.environment == "dev"
        key = rotating_key(f"{name}-retrieval", description=f"Retrieval index data in {args.placement.region}",
                           alias=f"llmops-{name}-retrieval", parent=self)
        bucket = SecureBucket(f"{name}-index-snapshots", SecureBucketArgs(
            purpose="index snapshots", kms_key_arn=key.arn, force_destroy=dev), opts=child)
        self.key, self.snapshot_bucket = key, bucket

        _, secret = generated_secret(f"{name}-qdrant-api-key", description="Qdrant API key", kms_key_arn=key.arn,
                                     length=48, version=API_KEY_VERSION, recovery_window_days=0 if dev else 7,
                                     parent=self)

        server = service_account_role(f"{name}-qdrant", oidc_provider=args.placement.oidc_provider, namespace=NAMESPACE,
                                      service_account=NAME, parent=self)
        role_policy(f"{name}-qdrant", server, pulumi.Output.all(secret.arn, key.arn).apply(
            lambda a: secret_statements(a[0], a[1])), parent=self)
        snapshots = service_account_role(f"{name}-qdrant-snapshot", oidc_provider=args.placement.oidc_provider,
                                         namespace=NAMESPACE, service_account=f"{NAME}-snapshot", parent=self)
        role_policy(f"{name}-qdrant-snapshot", snapshots, pulumi.Output.all(bucket.arn, key.arn, secret.arn).apply(
            lambda a: bucket_statements(a[0], a[1], write=True, prefix="qdrant/*") + secret_statements(a[2], a[1])),
            parent=self)

        late_values = {"server_role_arn": server.arn, "snapshot_role_arn": snapshots.arn, "secret_arn": secret.arn,
                       "bucket": bucket.name, "key_arn": key.arn}
        corpora = [index.corpus for index in cfg.indexes if index.corpus]
        if cfg.freshness is not None and corpora:
            freshness = service_account_role(f"{name}-qdrant-freshness", oidc_provider=args.placement.oidc_provider,
                                             namespace=NAMESPACE, service_account=f"{NAME}-freshness", parent=self)
            role_policy(f"{name}-qdrant-freshness", freshness, pulumi.Output.all(secret.arn, key.arn).apply(
                lambda a: corpus_listing_statements(corpora) + secret_statements(a[0], a[1])), parent=self)
            late_values["freshness_role_arn"] = freshness.arn

        self.fingerprints = retrieval_fingerprints(cfg)
        spec = QdrantSpec(
            namespace=NAMESPACE, image=cfg.image, aws_cli_image=args.tools.aws_cli_image, curl_image=args.tools.curl_image,
            storage_gib=cfg.storage_gib, region=args.placement.region, server_role_arn=late("server_role_arn"),
            snapshot_role_arn=late("snapshot_role_arn"), api_key_secret_arn=late("secret_arn"),
            snapshot_bucket=late("bucket"), kms_key_arn=late("key_arn"), snapshot_schedule=cfg.snapshot_schedule,
            retrieval_configs={index.name: recorded_config(index) for index in cfg.indexes},
            client_namespaces=args.placement.client_namespaces, tags=args.placement.tags,
            freshness_image=cfg.freshness.image if cfg.freshness else None,
            freshness_pushgateway=cfg.freshness.pushgateway if cfg.freshness else None,
            freshness_schedule=cfg.freshness.schedule if cfg.freshness else "*/15 * * * *",
            freshness_role_arn=late("freshness_role_arn") if "freshness_role_arn" in late_values else None)
        kubernetes_objects(f"{name}-retrieval", [namespace(NAMESPACE, args.placement.tags), *qdrant_objects(spec)], self,
                           late_values=late_values)
        self.register_outputs({"snapshotBucket": bucket.name, "apiKeySecretArn": secret.arn,
                               "fingerprints": self.fingerprints})
