"""The validators reject what a cluster would reject: strict built-in schemas and CRD schemas."""

from __future__ import annotations

from components.manifests.device_plugin import device_plugin_daemonset
from llmops.offline.validate import validate_object

TAGS = {"owner": "o", "cost-center": "c", "environment": "dev"}


def daemonset():
    return device_plugin_daemonset(image="repo/image@sha256:" + "a" * 64, tags=TAGS)


def test_valid_object_has_no_violation():
    assert validate_object(daemonset(), "1.33") == []


def test_unknown_field_is_a_violation_in_strict_mode():
    obj = daemonset()
    obj["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    (violation,) = validate_object(obj, "1.33")
    assert str(violation) == ("DaemonSet/kube-system/nvidia-device-plugin: spec.template.spec.containers.0: "
                              "Additional properties are not allowed ('securityContex' was unexpected)")


def test_wrong_type_is_a_violation():
    obj = daemonset()
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = ["1"]
    assert validate_object(obj, "1.33")


def rule(for_: str) -> dict:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "slo"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": for_}]}]}}


def test_custom_resources_are_checked_against_their_crd_schema():
    assert validate_object(rule("5m"), "1.33") == []
    (violation,) = validate_object(rule("5 minutes"), "1.33")
    assert violation.object == "PrometheusRule/slo" and violation.message.startswith("spec.groups.0.rules.0.for: '5 minutes'")


def test_gateway_api_is_a_custom_resource_despite_its_k8s_io_group():
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
             "spec": {"rules": [{"backendRefs": [{"name": "svc", "port": 8000, "weight": "ten"}]}]}}
    (violation,) = validate_object(route, "1.33")
    assert "weight" in violation.message


def test_custom_resource_without_a_schema_is_reported_not_passed():
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    (violation,) = validate_object(obj, "1.33")
    assert "no schema for custom resource example.com/v1 Widget" in violation.message
