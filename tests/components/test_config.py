"""Bad stack config is refused with one message naming the file, key, value and what is allowed."""

from __future__ import annotations

import pytest

from components import config
from llmops.cli import main
from llmops.offline.engine import ProgramError, run_program
from llmops.offline.project import engine_value, load_project, load_stack
from tests.conftest import write_program_copy

SOURCE = "stacks/Pulumi.dev.yaml"


def parse(stack: dict) -> config.StackConfig:
    flat = {key: engine_value(value) for key, value in stack["config"].items()}
    return config.parse(flat, SOURCE)


def error_of(stack: dict) -> str:
    with pytest.raises(config.ConfigError) as caught:
        parse(stack)
    return str(caught.value)


def test_every_stack_file_parses(project):
    for name in ("dev", "staging", "prod"):
        settings = load_stack(project, name)
        cfg = config.parse(settings.config, str(settings.file))
        assert cfg.environment == name


def test_environment_shapes_match_their_purpose(project):
    dev, staging, prod = (config.parse(load_stack(project, n).config, n) for n in ("dev", "staging", "prod"))
    assert dev.regions.all == ["us-east-1"] and {p.capacity_type for p in dev.gpu_pools} == {"spot"}
    assert staging.regions.all == ["us-east-1"] and {p.capacity_type for p in staging.gpu_pools} == {"on-demand"}
    assert len(prod.regions.all) == 2


def _pool(stack):
    return stack["config"]["llmops:gpuPools"][0]


def _model(stack):
    return stack["config"]["llmops:models"][0]


def _rollout(stack, **rollout):
    stack["config"]["llmops:releaseController"] = {"image": "r.example/llmops@sha256:" + "0" * 64}
    _model(stack)["rollout"] = rollout


BAD_CONFIGS = {
    "unknown top-level key": (
        lambda s: s["config"].__setitem__("llmops:gpuPool", []),
        'stacks/Pulumi.dev.yaml: llmops:gpuPool = []: unknown key; allowed keys: alerting, cluster, dashboards, '
        "devicePlugin, driftMonitor, environment, failover, featureStore, gpuPools, models, network, policy, regions, "
        "registry, releaseController, requestLogs, retrieval, serving, tags, tools"),
    "rollout: steps that do not increase": (
        lambda s: _rollout(s, steps=[5, 25, 10, 100]),
        "stacks/Pulumi.dev.yaml: llmops:models[0].rollout.steps[2] = 10: expected more than the step before (25): "
        "steps must increase"),
    "rollout: a limit without a metric": (
        lambda s: _rollout(s, metrics=[{"max": 0.1, "action": "rollback"}]),
        "stacks/Pulumi.dev.yaml: llmops:models[0].rollout.metrics[0].metric: required key is missing"),
    "rollout: a limit the metric does not take": (
        lambda s: _rollout(s, metrics=[{"metric": "groundedness", "max": 0.2, "action": "pause_for_review"}]),
        "stacks/Pulumi.dev.yaml: llmops:models[0].rollout.metrics[0].max = 0.2: groundedness takes min"),
    "rollout: a pause marked automatic where the stack forbids it": (
        lambda s: _rollout(s, allowAutomatic=["rollback"],
                           metrics=[{"metric": "groundedness", "min": 0.8, "action": "pause_for_review"}]),
        "stacks/Pulumi.dev.yaml: llmops:models[0].rollout.metrics[0].automatic = true: expected false: allowAutomatic "
        "(rollback) does not include pause_for_review, so a groundedness breach must wait for a person"),
    "rollout without a release controller": (
        lambda s: _model(s).__setitem__("rollout", {}),
        'stacks/Pulumi.dev.yaml: llmops:models[0].rollout = "chat-small": expected llmops:releaseController (its image) '
        "too: a rollout policy is applied by the release controller"),
    "unknown nested key (typo)": (
        lambda s: _pool(s).__setitem__("maxsize", 3),
        "stacks/Pulumi.dev.yaml: llmops:gpuPools[0].maxsize = 3: unknown key; allowed keys: capacityType, desiredSize, "
        "gpusPerNode, instanceTypes, maxSize, minSize, name, rootVolumeGiB"),
    "wrong type: number as text": (
        lambda s: _pool(s).__setitem__("maxSize", "2"),
        'stacks/Pulumi.dev.yaml: llmops:gpuPools[0].maxSize = "2": expected an integer'),
    "wrong type: unquoted Kubernetes version": (
        lambda s: s["config"]["llmops:cluster"].__setitem__("kubernetesVersion", 1.3),
        "stacks/Pulumi.dev.yaml: llmops:cluster.kubernetesVersion = 1.3: expected one of 1.29, 1.30, 1.31, 1.32, 1.33, "
        "1.34, 1.35 (quoted, as a string)"),
    "min greater than max": (
        lambda s: _pool(s).update(minSize=3, desiredSize=3),
        "stacks/Pulumi.dev.yaml: llmops:gpuPools[0].minSize = 3: expected minSize <= maxSize (2)"),
    "desired outside bounds": (
        lambda s: _pool(s).update(desiredSize=5),
        "stacks/Pulumi.dev.yaml: llmops:gpuPools[0].desiredSize = 5: expected minSize (0) <= desiredSize <= maxSize (2)"),
    "image by tag": (
        lambda s: _model(s).__setitem__("image", "vllm/vllm-openai:v0.11.0"),
        'stacks/Pulumi.dev.yaml: llmops:models[0].image = "vllm/vllm-openai:v0.11.0": expected an image pinned by digest, '
        "REPOSITORY[:TAG]@sha256:<64 hex digits>; tags are mutable"),
    "device plugin image by tag": (
        lambda s: s["config"]["llmops:devicePlugin"].__setitem__("image", "nvcr.io/nvidia/k8s-device-plugin:v0.17.1"),
        'stacks/Pulumi.dev.yaml: llmops:devicePlugin.image = "nvcr.io/nvidia/k8s-device-plugin:v0.17.1": expected an '
        "image pinned by digest, REPOSITORY[:TAG]@sha256:<64 hex digits>; tags are mutable"),
    "primary region outside the allowed list": (
        lambda s: s["config"]["llmops:regions"].__setitem__("primary", "eu-west-1"),
        'stacks/Pulumi.dev.yaml: llmops:regions.primary = "eu-west-1": expected one of the allowed regions: '
        "us-east-1, us-east-2, us-west-2"),
    "secondary region outside the allowed list": (
        lambda s: s["config"]["llmops:regions"].__setitem__("secondaries", ["ap-south-1"]),
        'stacks/Pulumi.dev.yaml: llmops:regions.secondaries[0] = "ap-south-1": expected one of the allowed regions: '
        "us-east-1, us-east-2, us-west-2"),
    "GPU pool without a GPU instance type": (
        lambda s: _pool(s).__setitem__("instanceTypes", ["m7i.2xlarge"]),
        'stacks/Pulumi.dev.yaml: llmops:gpuPools[0].instanceTypes[0] = "m7i.2xlarge": expected a GPU instance type, one of '
        "g4dn, g5, g6, g6e, p4d, p4de, p5, p5e, p5en, p6-b200 (e.g. g6.xlarge)"),
    "Arm GPU type on the x86 NVIDIA AMI": (
        lambda s: _pool(s).__setitem__("instanceTypes", ["g5g.xlarge"]),
        'stacks/Pulumi.dev.yaml: llmops:gpuPools[0].instanceTypes[0] = "g5g.xlarge": expected an x86 GPU instance type; '
        "the pool runs the AL2023 x86_64 NVIDIA AMI"),
    "GPUs per node contradicting the instance type": (
        lambda s: _pool(s).__setitem__("gpusPerNode", 4),
        "stacks/Pulumi.dev.yaml: llmops:gpuPools[0].gpusPerNode = 4: expected 1, the GPU count of g6.xlarge"),
    "capacity type not spot or on-demand": (
        lambda s: _pool(s).__setitem__("capacityType", "reserved"),
        'stacks/Pulumi.dev.yaml: llmops:gpuPools[0].capacityType = "reserved": expected one of "spot" or "on-demand"'),
    "model on a pool that does not exist": (
        lambda s: _model(s).__setitem__("pool", "a100"),
        'stacks/Pulumi.dev.yaml: llmops:models[0].pool = "a100": expected one of the gpuPools names: l4'),
    "tensor parallel wider than a node": (
        lambda s: _model(s).__setitem__("tensorParallelSize", 2),
        "stacks/Pulumi.dev.yaml: llmops:models[0].tensorParallelSize = 2: expected at most 1, the GPUs per node of pool 'l4'"),
    "replicas beyond the pool's GPUs": (
        lambda s: _model(s).update(replicas=3, maxReplicas=3),
        "stacks/Pulumi.dev.yaml: llmops:models[0].replicas = 3: expected the models on pool 'l4' to need at most its 2 GPUs "
        "(maxSize 2 x 1); with maxReplicas, canaries and shadows they need 3, of which shadows 0"),
    "a canary that does not fit beside the stable ceiling": (
        lambda s: _model(s).__setitem__("canary", {"release": {"version": "4"}, "weight": 10}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].replicas = 1: expected the models on pool 'l4' to need at most its 2 GPUs "
        "(maxSize 2 x 1); with maxReplicas, canaries and shadows they need 3, of which shadows 0"),
    "a shadow that does not fit beside the stable ceiling": (
        lambda s: _model(s).__setitem__("shadow", {"release": {"version": "5"}, "samplePercent": 10}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].shadow.replicas = 1: expected the models on pool 'l4' to need at most "
        "its 2 GPUs (maxSize 2 x 1); with maxReplicas, canaries and shadows they need 3, of which shadows 1"),
    "shadow identical to the stable release": (
        lambda s: _model(s).__setitem__("shadow", {"release": dict(_model(s)["release"]), "samplePercent": 10}),
        'stacks/Pulumi.dev.yaml: llmops:models[0].shadow.release = {"featureView": "user_context:v2", "promptVersion": '
        '"chat-2026-11-01", "retri...: expected a release that differs from the stable release'),
    "shadow identical to the canary release": (
        lambda s: _model(s).update(canary={"release": {"version": "4"}, "weight": 0},
                                   shadow={"release": {"version": "4"}, "samplePercent": 10}),
        'stacks/Pulumi.dev.yaml: llmops:models[0].shadow.release = {"promptVersion": "none", "version": "4"}: expected a '
        "release that differs from the canary release (a canary already serves it)"),
    "shadow samplePercent 0": (
        lambda s: _model(s).__setitem__("shadow", {"release": {"version": "5"}, "samplePercent": 0}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].shadow.samplePercent = 0: expected a value >= 1"),
    "shadow samplePercent above 100": (
        lambda s: _model(s).__setitem__("shadow", {"release": {"version": "5"}, "samplePercent": 101}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].shadow.samplePercent = 101: expected a value <= 100"),
    "shadow replicas above 16": (
        lambda s: _model(s).__setitem__("shadow", {"release": {"version": "5"}, "replicas": 17, "samplePercent": 5}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].shadow.replicas = 17: expected a value <= 16"),
    "shadow without samplePercent": (
        lambda s: _model(s).__setitem__("shadow", {"release": {"version": "5"}}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].shadow.samplePercent: required key is missing"),
    "shadow on an index that does not exist": (
        lambda s: _model(s).update(maxReplicas=1, shadow={"release": {"version": "5", "retrievalIndex": "faq"},
                                                          "samplePercent": 5}),
        'stacks/Pulumi.dev.yaml: llmops:models[0].shadow.release.retrievalIndex = "faq": expected one of the '
        "retrieval.indexes names: docs"),
    "sticky header that is no header name": (
        lambda s: _model(s).__setitem__("canary", {"release": {"version": "4"}, "weight": 0,
                                                   "sticky": {"header": "X Bucket"}}),
        'stacks/Pulumi.dev.yaml: llmops:models[0].canary.sticky.header = "X Bucket": expected text matching '
        "^[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?$"),
    "canary weight above 100": (
        lambda s: _model(s).__setitem__("canary", {"release": {"version": "4"}, "weight": 120}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].canary.weight = 120: expected a value <= 100"),
    "canary weight below 0": (
        lambda s: _model(s).__setitem__("canary", {"release": {"version": "4"}, "weight": -5}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].canary.weight = -5: expected a value >= 0"),
    "canary identical to the stable release": (
        lambda s: _model(s).__setitem__("canary", {"release": dict(_model(s)["release"]), "weight": 0}),
        'stacks/Pulumi.dev.yaml: llmops:models[0].canary.release = {"featureView": "user_context:v2", "promptVersion": '
        '"chat-2026-11-01", "retri...: expected a release that differs from the stable release'),
    "release on an index that does not exist": (
        lambda s: _model(s)["release"].__setitem__("retrievalIndex", "faq"),
        'stacks/Pulumi.dev.yaml: llmops:models[0].release.retrievalIndex = "faq": expected one of the retrieval.indexes '
        "names: docs"),
    "model cache that does not fit on the node's root volume": (
        lambda s: _model(s).__setitem__("sizeGiB", 90),
        "stacks/Pulumi.dev.yaml: llmops:models[0].sizeGiB = 90: expected pool 'l4' (rootVolumeGiB 150) to hold 60 GiB of "
        "images plus 1 replica(s) x 99 GiB of model cache; raise rootVolumeGiB to at least 159"),
    "resources larger than the replica's share of a node": (
        lambda s: _model(s).__setitem__("resources", {"cpu": 8, "memoryGiB": 10}),
        "stacks/Pulumi.dev.yaml: llmops:models[0].resources.cpu = 8: expected at most 2, this replica's share of a "
        "g6.xlarge node"),
    "registry version that is not a number": (
        lambda s: _model(s)["release"].__setitem__("version", "latest"),
        'stacks/Pulumi.dev.yaml: llmops:models[0].release.version = "latest": expected text matching ^[1-9][0-9]{0,9}$'),
    "chunk overlap as large as the chunk": (
        lambda s: s["config"]["llmops:retrieval"]["indexes"][0].__setitem__("chunkOverlap", 512),
        "stacks/Pulumi.dev.yaml: llmops:retrieval.indexes[0].chunkOverlap = 512: expected less than chunkSize (512)"),
    "required tag missing": (
        lambda s: s["config"]["llmops:tags"].pop("cost-center"),
        "stacks/Pulumi.dev.yaml: llmops:tags.cost-center = null: required tag is missing or empty"),
    "environment tag contradicting the environment": (
        lambda s: s["config"]["llmops:tags"].__setitem__("environment", "prod"),
        "stacks/Pulumi.dev.yaml: llmops:tags.environment = \"prod\": expected 'dev', the stack's environment"),
    "public endpoint without an allow-list": (
        lambda s: s["config"]["llmops:cluster"].__setitem__("endpointPublicAccess", True),
        "stacks/Pulumi.dev.yaml: llmops:cluster.publicAccessCidrs = []: expected at least one CIDR when "
        "endpointPublicAccess is true; a public endpoint without an allow-list is open to the internet"),
    "allow-list that allows everyone": (
        lambda s: s["config"]["llmops:cluster"].update(endpointPublicAccess=True, publicAccessCidrs=["0.0.0.0/0"]),
        'stacks/Pulumi.dev.yaml: llmops:cluster.publicAccessCidrs[0] = "0.0.0.0/0": expected an IPv4 CIDR narrower than '
        "0.0.0.0/0, e.g. 203.0.113.0/24"),
    "missing required key": (
        lambda s: s["config"]["llmops:cluster"].pop("systemPool"),
        "stacks/Pulumi.dev.yaml: llmops:cluster.systemPool: required key is missing"),
    "VPC CIDR missing for a region": (
        lambda s: s["config"]["llmops:regions"].__setitem__("secondaries", ["us-west-2"]),
        "stacks/Pulumi.dev.yaml: llmops:network.vpcCidrs.us-west-2 = null: required: a VPC CIDR for every region of the stack"),
    "region name that is not an AWS region": (
        lambda s: s["config"]["llmops:regions"]["allowed"].append("moon-base-1"),
        'stacks/Pulumi.dev.yaml: llmops:regions.allowed[3] = "moon-base-1": expected an AWS region name such as us-east-1'),
    "GPU instance in the system pool": (
        lambda s: s["config"]["llmops:cluster"]["systemPool"].__setitem__("instanceTypes", ["m7i.large", "g6.xlarge"]),
        'stacks/Pulumi.dev.yaml: llmops:cluster.systemPool.instanceTypes[1] = "g6.xlarge": expected a CPU instance type; '
        "accelerators belong in gpuPools"),
    "pool name that is not a DNS label": (
        lambda s: _pool(s).__setitem__("name", "L4_pool"),
        'stacks/Pulumi.dev.yaml: llmops:gpuPools[0].name = "L4_pool": expected a lowercase DNS label of at most 32 '
        "characters (a-z, 0-9, '-')"),
    "latency threshold that is no histogram bucket": (
        lambda s: _model(s)["slo"]["timeToFirstToken"].__setitem__("thresholdSeconds", 2.0),
        "stacks/Pulumi.dev.yaml: llmops:models[0].slo.timeToFirstToken.thresholdSeconds = 2.0: expected a bucket bound of "
        "vllm:time_to_first_token_seconds: 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, "
        "7.5, 10, 20, 40, 80, 160, 640, 2560"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_refused_with_exact_message(stack_yaml, case):
    break_it, expected = BAD_CONFIGS[case]
    break_it(stack_yaml)
    assert error_of(stack_yaml) == expected


def test_several_bad_values_are_all_reported_in_one_message(stack_yaml):
    _pool(stack_yaml)["maxSize"] = "2"
    _model(stack_yaml)["image"] = "vllm/vllm-openai:latest"
    lines = error_of(stack_yaml).splitlines()
    assert [line.split(" = ")[0] for line in lines] == [
        "stacks/Pulumi.dev.yaml: llmops:gpuPools[0].maxSize", "stacks/Pulumi.dev.yaml: llmops:models[0].image"]


def test_bad_config_stops_the_program_before_any_resource(tmp_path, stack_yaml):
    _model(stack_yaml)["image"] = "vllm/vllm-openai:latest"
    program = load_project(write_program_copy(tmp_path, "dev", stack_yaml))
    with pytest.raises(ProgramError) as caught:
        run_program(program, load_stack(program, "dev"))
    assert caught.value.declared == 0
    assert caught.value.user_error
    assert 'llmops:models[0].image = "vllm/vllm-openai:latest"' in str(caught.value)


def test_cli_exits_2_on_bad_config_and_names_the_key(tmp_path, stack_yaml, capsys):
    _pool(stack_yaml)["capacityType"] = "reserved"
    directory = write_program_copy(tmp_path, "dev", stack_yaml)
    assert main(["preview", "--program", str(directory), "--stack", "dev"]) == 2
    err = capsys.readouterr().err
    assert 'stacks/Pulumi.dev.yaml: llmops:gpuPools[0].capacityType = "reserved": expected one of "spot" or "on-demand"' in err


def test_region_codes_are_unique_and_short():
    regions = ["us-east-1", "us-east-2", "us-west-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "eu-central-1",
               "us-gov-west-1", "us-west-1"]
    codes = [config.region_code(r) for r in regions]
    assert codes == ["use1", "use2", "usw2", "aps1", "apse1", "apse2", "euc1", "usgw1", "usw1"]
    assert len(set(codes)) == len(codes)
