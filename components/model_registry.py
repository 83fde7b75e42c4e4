"""`ModelRegistry`: MLflow on RDS PostgreSQL and S3, in one region.

The database is encrypted with the registry's own KMS key, private, TLS-only
(`rds.force_ssl`), backed up for at least seven days, Multi-AZ in prod, protected from
deletion (with a final snapshot) outside dev; its master password is generated and kept by
RDS in Secrets Manager and never passes through Pulumi. The MLflow pods reach exactly that
secret, that bucket and that key through their own IAM role (IRSA).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.bucket import SecureBucket, SecureBucketArgs
from components.config import Registry
from components.entrypoints import source
from components.identity import bucket_statements, role_policy, secret_statements, service_account_role
from components.keys import rotating_key
from components.kubernetes import kubernetes_objects, late
from components.manifests.mlflow import NAME, PORT, MlflowSpec, migration_job_name, mlflow_objects, tracking_uri
from components.manifests.workload import namespace
from components.network import ingress_security_group
from components.placement import DataPlacement

NAMESPACE = "registry"
DB_NAME, DB_USER = "mlflow", "mlflow"


@dataclass(frozen=True)
class ModelRegistryArgs:
    config: Registry
    placement: DataPlacement



class ModelRegistry(pulumi.ComponentResource):
    tracking_uri: str
    artifact_bucket: SecureBucket

    def __init__(self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmops:data:ModelRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg, prod, dev = args.config, args.placement.environment == "prod", args.placement.environment == "dev"
        key = rotating_key(f"{name}-registry", description=f"Model registry data in {args.placement.region}",
                           alias=f"llmops-{name}-registry", parent=self)
        self.key = key
        self.artifact_bucket = SecureBucket(f"{name}-artifacts", SecureBucketArgs(
            purpose="model artifacts", kms_key_arn=key.arn, force_destroy=dev), opts=child)

        group = ingress_security_group(f"{name}-registry-db", vpc_id=args.placement.vpc_id, port=5432,
                                       source_security_group_id=args.placement.cluster_security_group_id,
                                       description="MLflow PostgreSQL", parent=self)
        subnets = aws.rds.SubnetGroup(f"{name}-registry-db", subnet_ids=list(args.placement.subnet_ids), opts=child)
        major = cfg.database.engine_version.split(".")[0]
        parameters = aws.rds.ParameterGroup(f"{name}-registry-db", family=f"postgres{major}", parameters=[
            {"name": "rds.force_ssl", "value": "1"},  # refuse any connection that is not TLS
            {"name": "log_min_duration_statement", "value": "1000"},
        ], opts=child)
        database = aws.rds.Instance(
            f"{name}-registry-db",
            engine="postgres", engine_version=cfg.database.engine_version, instance_class=cfg.database.instance_class,
            allocated_storage=cfg.database.allocated_storage_gib, max_allocated_storage=cfg.database.allocated_storage_gib * 4,
            storage_type="gp3", storage_encrypted=True, kms_key_id=key.arn,
            db_name=DB_NAME, username=DB_USER,
            manage_master_user_password=True, master_user_secret_kms_key_id=key.arn,
            db_subnet_group_name=subnets.name, vpc_security_group_ids=[group.id], parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=cfg.database.multi_az if cfg.database.multi_az is not None else prod,
            backup_retention_period=cfg.database.backup_retention_days, copy_tags_to_snapshot=True,
            deletion_protection=not dev, skip_final_snapshot=dev,
            final_snapshot_identifier=None if dev else f"{name}-registry-db-final",
            auto_minor_version_upgrade=True, iam_database_authentication_enabled=True,
            performance_insights_enabled=True, performance_insights_kms_key_id=key.arn,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            opts=child)
        secret_arn = database.master_user_secrets[0].secret_arn

        role = service_account_role(f"{name}-mlflow", oidc_provider=args.placement.oidc_provider, namespace=NAMESPACE,
                                    service_account=NAME, parent=self)
        role_policy(f"{name}-mlflow", role, pulumi.Output.all(self.artifact_bucket.arn, key.arn, secret_arn).apply(
            lambda a: bucket_statements(a[0], a[1], write=True, prefix="artifacts/*") + secret_statements(a[2], a[1])),
            parent=self)

        spec = MlflowSpec(
            namespace=NAMESPACE, image=cfg.image, replicas=cfg.replicas, role_arn=late("role_arn"), region=args.placement.region,
            db_host=late("db_host"), db_port=5432, db_name=DB_NAME, db_user=DB_USER, db_secret_arn=late("db_secret_arn"),
            artifact_bucket=late("bucket"), client_namespaces=args.placement.client_namespaces,
            scripts={"secret_exec.py": source("secret_exec.py"), "mlflow_migrate.py": source("mlflow_migrate.py")},
            tags=args.placement.tags)
        objects = [namespace(NAMESPACE, args.placement.tags), *mlflow_objects(spec)]
        # The server starts only once the schema migration Job has completed.
        kubernetes_objects(f"{name}-registry", objects, self, late_values={
            "role_arn": role.arn, "db_host": database.address, "db_secret_arn": secret_arn,
            "bucket": self.artifact_bucket.name,
        }, after={f"Deployment/{NAME}": [f"Job/{migration_job_name(cfg.image)}"]})
        self.tracking_uri = tracking_uri(NAMESPACE)
        self.register_outputs({"trackingUri": self.tracking_uri, "artifactBucket": self.artifact_bucket.name,
                               "databaseEndpoint": database.endpoint, "databaseSecretArn": secret_arn, "port": PORT})

