"""`PiiScanner`: what `llmops pii scan --on-cluster` needs in one region -- the `pii-scan` namespace (restricted pod
security), the `pii-scanner` service account, its IAM role (IRSA) that may only read the log prefixes it is given
and write the results prefix, and the results bucket (private, encrypted with the region's key, findings expiring
after `results_days`; incomplete multipart uploads of a killed shard aborted after 7 days).

The Jobs themselves are submitted per scan by the CLI (components/manifests/pii_scan.py): nothing runs until then.
The runbook targets' `pii.cluster_scan` section names what this component outputs (`results`, `readable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.bucket import SecureBucket, SecureBucketArgs
from components.identity import role_policy, service_account_role
from components.kubernetes import kubernetes_objects, late
from components.manifests.pii_scan import NAMESPACE, SERVICE_ACCOUNT, iam_statements, scanner_service_account
from components.manifests.workload import namespace

RESULTS_PREFIX = "pii-scan/results/"


@dataclass(frozen=True)
class PiiScannerArgs:
    region: str
    oidc_provider: aws.iam.OpenIdConnectProvider
    readable: Sequence[pulumi.Input[str]]  # s3://bucket/prefix/ the scans may read (the request logs, an archive)
    key_arn: pulumi.Input[str]  # the results bucket's key
    tags: Mapping[str, str]
    source_key_arns: Sequence[pulumi.Input[str]] = ()  # the keys the readable buckets are encrypted with
    results_days: int = 30
    force_destroy: bool = False


class PiiScanner(pulumi.ComponentResource):
    def __init__(self, name: str, args: PiiScannerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if not args.readable or not all(_prefix_uri(uri) for uri in args.readable if isinstance(uri, str)):
            raise ValueError("readable: expected s3://bucket/prefix/ URIs (ending in /), at least one")
        super().__init__("llmops:pii:PiiScanner", name, None, opts)
        results = SecureBucket(f"{name}-pii-results", SecureBucketArgs(
            purpose="PII scan results: object keys, offsets and counts, never a value", kms_key_arn=args.key_arn,
            force_destroy=args.force_destroy, expire_days=args.results_days, noncurrent_version_days=1),
            opts=pulumi.ResourceOptions(parent=self))
        role = service_account_role(f"{name}-pii-scanner", oidc_provider=args.oidc_provider, namespace=NAMESPACE,
                                    service_account=SERVICE_ACCOUNT, parent=self)
        readable = pulumi.Output.all(*args.readable)
        keys = pulumi.Output.all(args.key_arn, *args.source_key_arns)
        role_policy(f"{name}-pii-scanner", role, pulumi.Output.all(results.name, keys, readable).apply(
            lambda a: iam_statements(sources=list(a[2]), results=f"s3://{a[0]}/{RESULTS_PREFIX}",
                                     region=args.region, key_arns=sorted(set(a[1])))), parent=self)
        kubernetes_objects(f"{name}-pii-scan", [namespace(NAMESPACE, args.tags),
                                                scanner_service_account(args.tags, late("role_arn"))],
                           self, late_values={"role_arn": role.arn})
        self.outputs = {
            "roleArn": role.arn,
            "namespace": NAMESPACE,
            "serviceAccount": SERVICE_ACCOUNT,
            "results": results.name.apply(lambda bucket: f"s3://{bucket}/{RESULTS_PREFIX}"),
            "readable": readable,
        }
        self.register_outputs(self.outputs)


def _prefix_uri(uri: str) -> bool:
    return uri.startswith("s3://") and uri.endswith("/") and len(uri) > len("s3://x/")
