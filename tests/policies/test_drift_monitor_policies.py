"""The policy pack covers the drift monitor: its objects pass as rendered, and each weakening of them is reported by
the policy that owns it -- workload security, disruption budgets, labels, IAM and the alerts' runbook links."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from llmops.offline.plan import Plan
from llmops.offline.project import load_stack
from llmops.policy.runner import check_plan
from llmops.policy.settings import pack_config_for_stack

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


@pytest.fixture(scope="module")
def prod(plans, project):
    return plans["prod"], pack_config_for_stack(load_stack(project, "prod"))


def drift_resources(plan: Plan):
    return [r for r in plan.resources if "drift" in r.name]


def changed(plan: Plan, select, change) -> Plan:
    """The plan with `change` applied to a deep copy of the inputs of every resource `select` picks."""
    resources = []
    for resource in plan.resources:
        if select(resource):
            inputs = copy.deepcopy(resource.inputs)
            change(inputs)
            resource = dataclasses.replace(resource, inputs=inputs)
        resources.append(resource)
    return dataclasses.replace(plan, resources=resources)


def the_monitor(resource) -> bool:
    return resource.type == DEPLOYMENT and resource.inputs["metadata"]["name"] == "drift-monitor"


def container(inputs):
    return inputs["spec"]["template"]["spec"]["containers"][0]


def test_the_rendered_monitor_passes_every_policy(prod):
    plan, settings = prod
    assert len(drift_resources(plan)) >= 2 * 11
    assert [v for v in check_plan(plan, settings) if "drift" in v.name or "drift" in v.urn] == []


WEAKENED = {
    "k8s-image-digest": lambda i: container(i).update(image="example.com/llmops/llmops:latest"),
    "k8s-resource-limits": lambda i: container(i)["resources"].pop("limits"),
    "k8s-run-as-non-root": lambda i: (i["spec"]["template"]["spec"]["securityContext"].update(runAsNonRoot=False),
                                      container(i)["securityContext"].update(runAsNonRoot=False)),
    "k8s-no-privilege": lambda i: container(i)["securityContext"].update(allowPrivilegeEscalation=True),
    "k8s-serving-probes": lambda i: container(i).pop("readinessProbe"),
    "k8s-required-labels": lambda i: i["metadata"]["labels"].pop("owner"),
}


@pytest.mark.parametrize("policy", WEAKENED)
def test_a_weakened_monitor_deployment_is_reported_by_its_policy(prod, policy):
    plan, settings = prod
    found = check_plan(changed(plan, the_monitor, WEAKENED[policy]), settings)
    assert found and all("drift" in v.urn and v.enforcement == "mandatory" for v in found)
    assert {(v.policy, "drift/drift-monitor" in v.message) for v in found} == {(policy, True)}


def test_a_monitor_without_its_disruption_budget_is_reported(prod):
    plan, settings = prod
    without = dataclasses.replace(plan, resources=[
        r for r in plan.resources if not (r.type.endswith(":PodDisruptionBudget") and "drift" in r.name)])
    found = [v for v in check_plan(without, settings) if v.policy == "k8s-serving-pdb"]
    assert len(found) == 2 and all("drift/drift-monitor" in v.message for v in found)  # one per region


def test_a_wildcard_in_the_monitors_iam_policy_is_reported(prod):
    plan, settings = prod

    def widen(inputs):
        document = json.loads(inputs["policy"])
        document["Statement"][0]["Action"] = "s3:*"
        inputs["policy"] = json.dumps(document)

    found = check_plan(changed(plan, lambda r: r.type == "aws:iam/rolePolicy:RolePolicy" and r.name.endswith(
        "-drift-monitor"), widen), settings)
    assert sorted(v.policy for v in found) == ["iam-no-wildcards", "iam-no-wildcards"]


def test_a_drift_alert_without_its_runbook_is_reported(prod):
    plan, settings = prod

    def unlink(inputs):
        for group in inputs["spec"]["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "DriftWatch":
                    rule["annotations"]["runbook_url"] = rule["annotations"]["runbook_url"].replace(
                        "drift-review", "drift-reveiw")

    found = check_plan(changed(plan, lambda r: r.inputs.get("kind") == "PrometheusRule", unlink), settings)
    assert found and {v.policy for v in found} == {"alert-runbooks"}
    assert all("alert DriftWatch" in v.message and "drift-reveiw.md" in v.message for v in found)
