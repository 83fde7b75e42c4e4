"""The freshness CronJob the RetrievalIndex component renders in prod: what it runs, as whom, with what rights."""

from __future__ import annotations

import json

from components import config
from components.release import index_fingerprint
from llmops.offline.project import load_stack


def test_prod_checks_the_live_index_against_its_corpus_on_a_schedule(plans, project):
    plan = plans["prod"]
    cfg = config.parse(load_stack(project, "prod").config, "prod")
    docs = cfg.retrieval.indexes[0]
    jobs = [r for r in plan.kubernetes_objects() if r.inputs["kind"] == "CronJob"
            and r.inputs["metadata"]["name"] == "qdrant-freshness-docs"]
    assert len(jobs) == 2  # one per region
    for job in jobs:
        spec = job.inputs["spec"]
        assert spec["schedule"] == "*/15 * * * *" and spec["concurrencyPolicy"] == "Forbid"
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        command = container["command"]
        assert command[:3] == ["llmops", "retrieval", "freshness"]
        assert command[command.index("--serving-fingerprint") + 1] == index_fingerprint(docs)
        assert command[command.index("--corpus") + 1] == "s3://llmops-prod-corpus/docs/"
        assert command[command.index("--qdrant-url") + 1] == "http://qdrant.retrieval.svc:6333"
        assert container["image"] == cfg.retrieval.freshness.image and "@sha256:" in container["image"]
        assert pod["serviceAccountName"] == "qdrant-freshness" and pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    accounts = [r.inputs for r in plan.kubernetes_objects() if r.inputs["kind"] == "ServiceAccount"
                and r.inputs["metadata"]["name"] == "qdrant-freshness"]
    assert all(a["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::") for a in accounts)
    policy = json.loads(plan.get("aws:iam/rolePolicy:RolePolicy", "prod-use1-qdrant-freshness").inputs["policy"])
    listing = next(s for s in policy["Statement"] if s["Sid"] == "ListCorpus0")
    assert listing["Action"] == ["s3:ListBucket", "s3:ListBucketVersions"]  # it reads no document
    assert listing["Resource"] == "arn:aws:s3:::llmops-prod-corpus"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["docs/*"]}}
    assert {s["Sid"] for s in policy["Statement"]} == {"ListCorpus0", "ReadSecret", "SecretKey"}


def test_stacks_without_freshness_render_no_cronjob(plans):
    for stack in ("dev", "staging"):
        assert not [r for r in plans[stack].kubernetes_objects() if "freshness" in r.inputs["metadata"]["name"]]
