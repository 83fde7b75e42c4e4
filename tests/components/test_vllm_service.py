"""vLLM serving as rendered: digests, GPUs, probes that scale, rollouts that fit, canaries, release ids."""

from __future__ import annotations

import dataclasses
import json

import pytest

from components import config
from components.instance_types import GPU_INSTANCE_TYPES
from components.manifests import vllm
from components.release import ReleaseParts
from components.scheduling import GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL
from llmops.offline.project import load_stack
from tests.conftest import objects_of, pod_specs

STACKS = ["dev", "staging", "prod"]


def serving_deployments(plan):
    """The models' Deployments (the release controller runs in `serving` too)."""
    return [d for d in objects_of(plan, "Deployment")
            if d["metadata"]["namespace"] == "serving" and vllm.MODEL_LABEL in d["metadata"]["labels"]]


def by_name(objects):
    return {o["metadata"]["name"]: o for o in objects}


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_image_is_pinned_by_digest(plans, stack):
    for name, pod in pod_specs(plans[stack]):
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert "@sha256:" in container["image"], f"{stack} {name}/{container['name']}: {container['image']}"


@pytest.mark.parametrize("stack", STACKS)
def test_gpu_requests_equal_limits_equal_tensor_parallel_size(plans, project, stack):
    cfg = config.parse(load_stack(project, stack).config, stack)
    tp = {m.name: m.tensor_parallel_size for m in cfg.models}
    deployments = serving_deployments(plans[stack])
    assert deployments
    for deployment in deployments:
        model = deployment["metadata"]["labels"][vllm.MODEL_LABEL]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        assert resources["requests"][GPU_RESOURCE] == resources["limits"][GPU_RESOURCE] == str(tp[model])
        assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]
        init = deployment["spec"]["template"]["spec"]["initContainers"][0]
        assert GPU_RESOURCE not in init["resources"]["limits"]


@pytest.mark.parametrize("stack", STACKS)
def test_serving_pods_tolerate_the_gpu_taint_select_their_pool_and_spread(plans, project, stack):
    cfg = config.parse(load_stack(project, stack).config, stack)
    pools = {m.name: m.pool for m in cfg.models}
    for deployment in serving_deployments(plans[stack]):
        pod = deployment["spec"]["template"]["spec"]
        model = deployment["metadata"]["labels"][vllm.MODEL_LABEL]
        assert pod["tolerations"] == [GPU_TOLERATION]
        assert pod["nodeSelector"] == {POOL_LABEL: pools[model]}
        keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


@pytest.mark.parametrize("stack", STACKS)
def test_serving_pods_are_locked_down(plans, stack):
    accounts = by_name(o for o in objects_of(plans[stack], "ServiceAccount") if o["metadata"]["namespace"] == "serving")
    for deployment in serving_deployments(plans[stack]):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == deployment["metadata"]["labels"][vllm.MODEL_LABEL]
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        for container in pod["initContainers"] + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts == {"/dev/shm", "/models", "/tmp", "/home/vllm"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert all("emptyDir" in v for v in volumes.values())  # nothing from the host


@pytest.mark.parametrize("stack", STACKS)
def test_every_serving_deployment_has_a_disruption_budget_and_probes_on_health(plans, stack):
    budgets = objects_of(plans[stack], "PodDisruptionBudget")
    for deployment in serving_deployments(plans[stack]):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert any(b["spec"]["selector"]["matchLabels"] == selector for b in budgets), deployment["metadata"]["name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_startup_budget_grows_with_model_size():
    small = vllm.startup_budget_seconds(16, 180, 4.0)
    large = vllm.startup_budget_seconds(140, 180, 4.0)
    huge = vllm.startup_budget_seconds(1000, 180, 4.0)
    assert small < large < huge
    assert huge > 3600 > 600  # far past the fixed ten minutes of the reference charts
    assert vllm.startup_budget_seconds(140, 180, 8.0) > large  # and configurable


def test_rendered_startup_probe_matches_each_models_size(plans, project):
    cfg = config.parse(load_stack(project, "prod").config, "prod")
    sizes = {m.name: m for m in cfg.models}
    thresholds = {}
    for deployment in serving_deployments(plans["prod"]):
        model = sizes[deployment["metadata"]["labels"][vllm.MODEL_LABEL]]
        probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
        budget = vllm.startup_budget_seconds(model.size_gib, model.startup.base_seconds, model.startup.seconds_per_gib)
        assert probe["periodSeconds"] * probe["failureThreshold"] >= budget
        assert deployment["spec"]["progressDeadlineSeconds"] > budget
        thresholds[model.name] = probe["failureThreshold"]
    assert thresholds["chat"] > thresholds["chat-small"]  # 140 GiB loads longer than 16 GiB


def pool_capacity(plan, pool):
    """Max GPUs of a pool, from its planned node group: maxSize x GPUs of its instance type."""
    for group in plan.by_type("aws:eks/nodeGroup:NodeGroup"):
        if group.inputs.get("labels", {}).get(POOL_LABEL) == pool:
            gpus = GPU_INSTANCE_TYPES[group.inputs["instanceTypes"][0]].gpus
            return group.inputs["scalingConfig"]["maxSize"] * gpus
    raise AssertionError(f"no node group for pool {pool}")


@pytest.mark.parametrize("stack", STACKS)
def test_no_rollout_needs_more_gpus_than_the_pool_holds(plans, stack):
    """Every Deployment at its ceiling, all surging at once, fits the pool's maximum (per region)."""
    plan = plans[stack]
    scaled = {(s["metadata"]["namespace"], s["spec"]["scaleTargetRef"]["name"]): s["spec"]["maxReplicaCount"]
              for s in objects_of(plan, "ScaledObject")}
    for provider in plan.by_type("pulumi:providers:kubernetes"):
        peak: dict[str, int] = {}
        for resource in plan.kubernetes_objects():
            obj = resource.inputs
            if resource.provider != provider.urn or obj["kind"] != "Deployment" or obj["metadata"]["namespace"] != "serving":
                continue
            if vllm.MODEL_LABEL not in obj["metadata"]["labels"]:
                continue  # the release controller: no GPU
            pod = obj["spec"]["template"]["spec"]
            gpus = int(pod["containers"][0]["resources"]["limits"][GPU_RESOURCE])
            ceiling = scaled.get(("serving", obj["metadata"]["name"]), obj["spec"].get("replicas", 1))
            surge = obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
            pool = pod["nodeSelector"][POOL_LABEL]
            peak[pool] = peak.get(pool, 0) + (ceiling + surge) * gpus
        for pool, gpus in peak.items():
            assert gpus <= pool_capacity(plan, pool), f"{stack} {provider.name} pool {pool}: {gpus} GPUs at peak"


def test_surge_only_where_the_pool_has_spare_gpus(plans):
    strategies = {d["metadata"]["name"]: d["spec"]["strategy"]["rollingUpdate"] for d in serving_deployments(plans["prod"])}
    assert strategies["chat"] == {"maxSurge": 1, "maxUnavailable": 0}  # 16 of 32 H100s at peak: room to surge
    dev = {d["metadata"]["name"]: d["spec"]["strategy"]["rollingUpdate"] for d in serving_deployments(plans["dev"])}
    assert dev["chat-small"] == {"maxSurge": 0, "maxUnavailable": 1}  # both L4s in use at the ceiling


def test_canary_at_weight_zero_renders_no_canary_objects(plans):
    prod = plans["prod"]
    names = {r.inputs["metadata"]["name"] for r in prod.kubernetes_objects()}
    assert not any(name.endswith("-canary") for name in names)
    route = by_name(objects_of(prod, "HTTPRoute"))["chat"]
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["chat"]


def test_canary_gets_its_weight_through_the_route(plans):
    staging = plans["staging"]
    route = by_name(objects_of(staging, "HTTPRoute"))["chat-small"]
    backends = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert backends == {"chat-small": 80, "chat-small-canary": 20}
    deployments = by_name(serving_deployments(staging))
    canary, stable = deployments["chat-small-canary"], deployments["chat-small"]
    assert canary["spec"]["replicas"] == 1
    assert canary["metadata"]["labels"]["llmops.io/version"] == "4" and stable["metadata"]["labels"]["llmops.io/version"] == "3"
    release_of = lambda obj: obj["metadata"]["annotations"][vllm.RELEASE_ANNOTATION]  # noqa: E731
    assert release_of(canary) != release_of(stable)
    assert by_name(objects_of(staging, "Service"))["chat-small-canary"]["spec"]["selector"][vllm.TRACK_LABEL] == "canary"


def test_autoscaling_on_queue_depth_between_configured_bounds(plans):
    scaled = by_name(objects_of(plans["prod"], "ScaledObject"))
    chat = scaled["chat"]["spec"]
    assert (chat["minReplicaCount"], chat["maxReplicaCount"]) == (2, 4)
    (trigger,) = chat["triggers"]
    assert trigger["type"] == "prometheus" and "vllm:num_requests_waiting" in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == "5"
    deployment = by_name(serving_deployments(plans["prod"]))["chat"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it; `pulumi up` must not reset it


def test_fixed_size_models_are_not_autoscaled(plans):
    staging = plans["staging"]
    assert "chat-small" not in by_name(objects_of(staging, "ScaledObject"))
    assert by_name(serving_deployments(staging))["chat-small"]["spec"]["replicas"] == 2


@pytest.mark.parametrize("stack", STACKS)
def test_every_model_is_scraped_on_metrics(plans, project, stack):
    cfg = config.parse(load_stack(project, stack).config, stack)
    monitors = by_name(objects_of(plans[stack], "ServiceMonitor"))
    for model in cfg.models:
        endpoint = monitors[model.name]["spec"]["endpoints"][0]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


def test_weights_come_from_the_registry_version_the_release_pins(plans):
    deployment = by_name(serving_deployments(plans["prod"]))["chat"]
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:5] == ["mlflow", "artifacts", "download", "--artifact-uri", "models:/llama-3-1-70b-instruct/9"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "/models/llama-3-1-70b-instruct/9"
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--max-model-len") + 1] == "32768"
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"


BASE = ReleaseParts(registered_model="m", model_version="3", image_digest="sha256:" + "a" * 64,
                    serving_args=("--max-model-len", "8192"), prompt_version="p1", feature_view="fv:1",
                    retrieval_fingerprint="f" * 16)
CHANGES = {"registered_model": "m2", "model_version": "4", "image_digest": "sha256:" + "b" * 64,
           "serving_args": ("--max-model-len", "4096"), "prompt_version": "p2", "feature_view": "fv:2",
           "retrieval_fingerprint": "e" * 16}


def test_release_id_covers_every_part():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(ReleaseParts)}


@pytest.mark.parametrize("part", sorted(CHANGES))
def test_release_id_changes_when_one_part_changes(part):
    assert dataclasses.replace(BASE, **{part: CHANGES[part]}).release_id != BASE.release_id


def test_release_id_is_stable_when_nothing_changes():
    same = ReleaseParts(**{f.name: getattr(BASE, f.name) for f in dataclasses.fields(ReleaseParts)})
    assert same.release_id == BASE.release_id


def test_release_id_is_stable_across_versions_of_this_code():
    """Deployed annotations are compared with ids computed later (rollback): the hash must not drift."""
    assert BASE.release_id == "0210acd29042b219"


def test_a_changed_feature_view_alone_changes_the_rendered_release(plans, project, tmp_path, stack_yaml):
    from llmops.offline.engine import run_program
    from llmops.offline.project import load_project
    from tests.conftest import write_program_copy

    before = by_name(serving_deployments(plans["dev"]))["chat-small"]["metadata"]["annotations"]
    stack_yaml["config"]["llmops:models"][0]["release"]["featureView"] = "user_context:v3"
    copy = load_project(write_program_copy(tmp_path, "dev", stack_yaml))
    after = by_name(serving_deployments(run_program(copy, load_stack(copy, "dev"))))["chat-small"]["metadata"]["annotations"]
    assert after[vllm.RELEASE_ANNOTATION] != before[vllm.RELEASE_ANNOTATION]
    changed = {k for k, v in json.loads(after[vllm.RELEASE_PARTS_ANNOTATION]).items()
               if json.loads(before[vllm.RELEASE_PARTS_ANNOTATION])[k] != v}
    assert changed == {"feature_view"}


def test_release_records_the_retrieval_fingerprint_the_index_publishes(plans):
    prod = plans["prod"]
    deployment = by_name(serving_deployments(prod))["chat"]
    parts = json.loads(deployment["metadata"]["annotations"][vllm.RELEASE_PARTS_ANNOTATION])
    recorded = json.loads(by_name(objects_of(prod, "ConfigMap"))["retrieval-config"]["data"]["docs.json"])
    assert parts["retrieval_fingerprint"] == recorded["fingerprint"]
