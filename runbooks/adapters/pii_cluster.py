"""The PII cluster scan for runbooks: llmops/pii/cluster.py's Job on the targets' cluster, its shards merged from S3.

Idempotent by scan id: the Job is named after it, so a runbook resumed after a crash finds the Job it submitted
(409 on create) and follows it instead of starting a second scan; shard results are whole objects, so a merge
after a resume reads each shard once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmops.pii import cluster
from llmops.pii.shards import MissingShards, merge
from llmops.pii.sources import parse_s3_uri
from runbooks.engine import StepFailed, TransientError


class PiiClusterScanner:
    def __init__(self, settings: cluster.ClusterSettings, batch: Any, s3: Any, *, poll_seconds: float,
                 timeout_seconds: float) -> None:
        self.settings, self.batch, self.s3 = settings, batch, s3
        self.poll_seconds, self.timeout_seconds = poll_seconds, timeout_seconds

    def pods_for(self, scope_bytes: int) -> int:
        return cluster.pods_for(scope_bytes, self.settings, target_seconds=1800)

    def estimate(self, scope_bytes: int, objects: int, pods: int) -> str:
        return cluster.estimate(scope_bytes, objects, pods, self.settings).describe()

    def scan(self, scan_id: str, source: str, shards: int, say: Callable[[str], None]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        if not cluster.readable(self.settings, source):
            raise StepFailed(f"{source}: the cluster scanner's role may only read {', '.join(self.settings.readable)} "
                             "(pii.cluster_scan.readable); nothing was submitted")
        # Every version, raw paths: the runbook maps findings back to the versions in its window.
        job = cluster.job_for(self.settings, scan_id=scan_id, source=source, shards=shards, versions=True,
                              extra_args=("--raw-paths",))
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        try:
            cluster.submit(self.batch, job)
            say(f"  scan: submitted job {namespace}/{name} ({shards} pod(s))")
        except ApiException as error:
            if error.status != 409:
                raise TransientError(f"submitting job {namespace}/{name}: Kubernetes API {error.status}") from None
            say(f"  scan: job {namespace}/{name} is already there (a resumed run): following it")
        state = cluster.wait(self.batch, name, namespace, shards, poll_seconds=self.poll_seconds,
                             timeout_seconds=self.timeout_seconds,
                             on_change=lambda s: say(f"  scan: {len(s.done)} of {shards} shard(s) done, "
                                                     f"{len(s.failed)} failed"))
        results = cluster.results_uri(self.settings, scan_id)
        try:
            merged = merge(self.s3, *parse_s3_uri(results), shards)
        except MissingShards as missing:
            failed = f" (the Job reports {state.failed_reason})" if state.failed_reason else ""
            raise StepFailed(f"job {namespace}/{name}: {missing}{failed}; rerun each with `llmops pii scan {source} "
                             f"--versions --raw-paths --shard I/{shards} --results {results}`, then resume") from None
        return {"findings": merged.findings, "errors": merged.errors, "failed": sorted(state.failed),
                "job": f"{namespace}/{name}", "results": results}


def cluster_settings(targets: Any) -> cluster.ClusterSettings:
    """The cluster scan's settings from a targets file's pii.cluster_scan; InputError if it has none."""
    from runbooks.engine import InputError

    pii = targets.pii
    if pii is None or pii.cluster_scan is None:
        raise InputError(f"stacks/targets/{targets.environment}.yaml has no pii.cluster_scan section (results, and "
                         "the prefixes the scanner's role may read): the cluster scan cannot run")
    scan = pii.cluster_scan
    from components.config.loading import load_file

    stack = load_file(targets.stack_path())  # the Job carries the stack's owner, cost-center and environment labels
    tags = {key: stack.tags.get(key, default) for key, default in
            (("owner", "llmops"), ("cost-center", "llmops"), ("environment", targets.environment))}
    return cluster.ClusterSettings(
        image=scan.image or stack_llmops_image(targets), results=scan.results, region=targets.aws.region,
        readable=tuple(scan.readable), tags=tags,
        namespace=scan.namespace, service_account=scan.service_account, max_pods=scan.max_pods,
        backoff_limit_per_index=scan.backoff_limit_per_index, mb_per_second_per_pod=scan.mb_per_second_per_pod,
        pod_price_per_hour=scan.pod_price_per_hour, approval_over_usd=scan.approval_over_usd)


def stack_llmops_image(targets: Any) -> str:
    """This project's image, where the stack's other llmops workloads get it."""
    from components.config.loading import load_file
    from runbooks.engine import InputError

    config = load_file(targets.stack_path())
    freshness = config.retrieval.freshness if config.retrieval else None
    for section in (freshness, config.drift_monitor, config.release_controller):
        if section is not None:
            return str(section.image)
    raise InputError(f"{targets.stack_file} names no llmops image (retrieval.freshness, driftMonitor or "
                     "releaseController): set pii.cluster_scan.image in the targets file")
