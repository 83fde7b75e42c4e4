"""The drift monitor as the real stacks render it: refused config, one monitor per region where a model has drift,
objects valid for their cluster, settings the monitor itself loads, IAM that reads only the references, the Fluent Bit
config that feeds it (parsed, and its Lua filter run in LuaJIT, the Lua Fluent Bit embeds), and its alerts in every
region's rules."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest

from components import config
from components.drift_monitor import drift_rules, watched_models
from components.manifests import drift_monitor as manifests
from llmops.drift.settings import MonitorSettings, load_settings
from llmops.offline.engine import run_program
from llmops.offline.project import engine_value, load_project, load_stack
from llmops.offline.validate import kubernetes_version_for, validate_object
from tests.conftest import write_program_copy

STACKS = ["dev", "staging", "prod"]
SOURCE = "stacks/Pulumi.dev.yaml"
COMPONENT = "llmops:monitoring:DriftMonitor"
KINDS = ["ConfigMap", "ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Service",
         "ServiceAccount", "ServiceMonitor"]


def cfg_of(project, stack):
    return config.parse(load_stack(project, stack).config, stack)


def monitors(plan):
    """(region, the monitor's Kubernetes objects by `Kind/namespace/name`) for each DriftMonitor of the plan."""
    regions = {f"{plan.stack}-{config.region_code(region)}": region for region in plan.outputs["regions"]}
    found = []
    for component in plan.by_type(COMPONENT):
        objects = {f"{r.inputs['kind']}/{r.inputs['metadata'].get('namespace', '')}/{r.inputs['metadata']['name']}": r
                   for r in plan.descendants(component.urn) if r.is_kubernetes_object}
        found.append((regions[component.name], objects))
    return found


def obj(objects, kind, name, namespace="drift"):
    return objects[f"{kind}/{namespace}/{name}"].inputs


def a_spec(**changes) -> manifests.DriftMonitorSpec:
    """A monitor's spec built by hand, for the manifest builders alone."""
    spec = manifests.DriftMonitorSpec(
        environment="dev", region="us-east-1", image="i", role_arn="r", references="s3://b/drift/references",
        models=(manifests.WatchedModel("chat", config.Drift().model_dump(by_alias=True, mode="json"), None, 100.0),),
        embeddings=None, scrape_interval_seconds=5, log_path="/var/log/containers/*_serving_*.log",
        client_namespaces=("logging",), tags={"owner": "o", "cost-center": "c", "environment": "dev"})
    return dataclasses.replace(spec, **changes)


# --- config ------------------------------------------------------------------------------------------------

def parse(stack: dict) -> config.StackConfig:
    return config.parse({key: engine_value(value) for key, value in stack["config"].items()}, SOURCE)


def _drift(stack):
    return stack["config"]["llmops:models"][0]["drift"]


def _monitor(stack):
    return stack["config"]["llmops:driftMonitor"]


REFUSED = {
    "a feature whose drift limit is not above its watch limit": (
        lambda s: _drift(s).__setitem__("features", [{"field": "prompt_tokens", "watch": 0.2, "drift": 0.2}]),
        "stacks/Pulumi.dev.yaml: llmops:models[0].drift.features[0].drift = 0.2: expected more than watch (0.2): "
        "PSI grows with drift"),
    "a field judged twice": (
        lambda s: _drift(s).__setitem__("features", [{"field": "prompt_tokens"}, {"field": "prompt_tokens"}]),
        'stacks/Pulumi.dev.yaml: llmops:models[0].drift.features[1].field = "prompt_tokens": expected each field once'),
    "an embedding from an index that does not exist": (
        lambda s: _drift(s)["embedding"].__setitem__("index", "faq"),
        'stacks/Pulumi.dev.yaml: llmops:models[0].drift.embedding.index = "faq": expected one of the '
        "retrieval.indexes names: docs"),
    "a served embedding model without the endpoint to call": (
        lambda s: _monitor(s).pop("embeddings"),
        'stacks/Pulumi.dev.yaml: llmops:models[0].drift.embedding.index = "docs": expected '
        "llmops:driftMonitor.embeddings (url, dimension) too: BAAI/bge-small-en-v1.5 is served by an "
        "OpenAI-compatible endpoint the monitor must call"),
    "drift without a monitor": (
        lambda s: s["config"].pop("llmops:driftMonitor"),
        'stacks/Pulumi.dev.yaml: llmops:models[0].drift = "chat-small": expected llmops:driftMonitor (its image) '
        "too: drift is judged by the drift monitor"),
    "a widest window narrower than the window": (
        lambda s: _drift(s).update(windowSeconds=60, maxWindowSeconds=30),
        "stacks/Pulumi.dev.yaml: llmops:models[0].drift.maxWindowSeconds = 30: expected at least windowSeconds (60)"),
    "an unknown key in a model's drift": (
        lambda s: _drift(s).__setitem__("samplePercentage", 10),
        "stacks/Pulumi.dev.yaml: llmops:models[0].drift.samplePercentage = 10: unknown key; allowed keys: alert, "
        "consecutiveWindows, embedding, features, maxWindowSeconds, minSamples, retraining, samplePercent, "
        "windowSeconds"),
    "an unknown key in the monitor": (
        lambda s: _monitor(s).__setitem__("scrapeInterval", 5),
        "stacks/Pulumi.dev.yaml: llmops:driftMonitor.scrapeInterval = 5: unknown key; allowed keys: embeddings, "
        "image, logPath, replicas, ruleIntervalSeconds, scrapeIntervalSeconds"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_bad_drift_config_is_refused_with_an_exact_message(stack_yaml, case):
    break_it, expected = REFUSED[case]
    break_it(stack_yaml)
    with pytest.raises(config.ConfigError) as caught:
        parse(stack_yaml)
    assert str(caught.value) == expected


def test_a_local_embedding_model_needs_no_endpoint(stack_yaml):
    _monitor(stack_yaml).pop("embeddings")
    stack_yaml["config"]["llmops:retrieval"]["indexes"][0]["embeddingModel"] = "local:hashing-256"
    cfg = parse(stack_yaml)
    (watched,) = watched_models(cfg)
    assert watched.embedding_model == "local:hashing-256"


# --- where it runs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_every_region_runs_one_monitor_with_all_its_objects(plans, stack):
    plan = plans[stack]
    regions = plan.by_type("llmops:infra:Region")
    components = plan.by_type(COMPONENT)
    assert sorted(c.parent for c in components) == sorted(r.urn for r in regions)
    for _, objects in monitors(plan):
        assert sorted(key.split("/")[0] for key in objects) == KINDS
        assert {key.split("/")[1] for key in objects} == {"", "drift", "logging"}
    assert plan.outputs["regions"] and all(out["driftMonitor"] for out in plan.outputs["regions"].values())


def test_a_configured_monitor_with_no_model_to_watch_is_not_deployed_nor_alerted(tmp_path, stack_yaml):
    for model in stack_yaml["config"]["llmops:models"]:
        model.pop("drift")
    project = load_project(write_program_copy(tmp_path, "dev", stack_yaml))
    plan = run_program(project, load_stack(project, "dev"))
    assert plan.by_type("llmops:infra:Region") and not plan.by_type(COMPONENT)
    assert not [r for r in plan.kubernetes_objects() if "drift" in r.inputs["metadata"]["name"]]
    assert not [r for r in plan.by_type("aws:iam/role:Role") if "drift" in r.name]
    groups = [g["name"] for r in plan.kubernetes_objects() if r.inputs["kind"] == "PrometheusRule"
              for g in r.inputs["spec"]["groups"]]
    assert groups and "llmops-drift" not in groups
    assert drift_rules(parse(stack_yaml)) is None


@pytest.mark.parametrize("stack", STACKS)
def test_the_monitors_objects_are_valid_for_their_clusters_kubernetes(plans, stack):
    plan = plans[stack]
    for _, objects in monitors(plan):
        for resource in objects.values():
            version = kubernetes_version_for(plan, resource, "1.33")
            assert validate_object(resource.inputs, version) == [], resource.urn


def test_the_manifests_refuse_a_monitor_with_nothing_to_watch():
    with pytest.raises(ValueError, match="without a model to watch"):
        manifests.drift_monitor_objects(a_spec(models=()))


# --- settings ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_the_settings_configmap_loads_as_the_monitors_settings(plans, project, stack, tmp_path):
    plan = plans[stack]
    cfg = cfg_of(project, stack)
    for region, objects in monitors(plan):
        data = obj(objects, "ConfigMap", "drift-monitor-settings")["data"]
        path = tmp_path / region / "drift-monitor.json"
        path.parent.mkdir()
        path.write_text(data["drift-monitor.json"])
        settings = load_settings(path)
        assert (settings.environment, settings.region) == (stack, region)
        bucket = plan.outputs["regions"][region]["registry"]["artifactBucket"]
        assert settings.references == f"s3://{bucket}/drift/references"
        assert plan.outputs["regions"][region]["driftMonitor"]["references"] == settings.references
        drifted = [m for m in cfg.models if m.drift is not None]
        assert sorted(settings.models) == sorted(m.name for m in drifted) and drifted
        for model in drifted:
            watched = settings.models[model.name]
            assert watched.drift == model.drift  # the stack file's policy, unchanged
            assert watched.embedding_model == "BAAI/bge-small-en-v1.5"  # the docs index's
        assert settings.embeddings is not None
        assert (settings.embeddings.url, settings.embeddings.dimension) == (cfg.drift_monitor.embeddings.url, 384)


@pytest.mark.parametrize("stack", STACKS)
def test_the_pod_reads_the_settings_where_they_are_mounted_and_the_api_key_only_from_a_secret(plans, project, stack):
    cfg = cfg_of(project, stack)
    for _, objects in monitors(plans[stack]):
        settings = json.loads(obj(objects, "ConfigMap", "drift-monitor-settings")["data"]["drift-monitor.json"])
        pod = obj(objects, "Deployment", "drift-monitor")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["llmops", "drift", "watch", "--config", "/etc/llmops/drift-monitor.json",
                                        "--listen", "0.0.0.0:8080"]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/llmops")
        assert mount["readOnly"] is True
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume == {"name": mount["name"], "configMap": {"name": "drift-monitor-settings"}}
        env = {e["name"]: e for e in container["env"]}
        secret = cfg.drift_monitor.embeddings.api_key_secret
        if secret is None:  # dev and staging: an endpoint without a key
            assert settings["embeddings"]["apiKeyEnv"] is None
            assert not [name for name in env if "KEY" in name]
        else:  # prod: the key from a Secret, by reference; no literal anywhere
            variable = settings["embeddings"]["apiKeyEnv"]
            assert env[variable] == {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": "api-key"}}}
        assert all("value" in e or "valueFrom" in e for e in env.values())


def test_a_change_of_settings_restarts_the_monitor():
    def checksum(spec):
        return manifests.deployment(spec)["spec"]["template"]["metadata"]["annotations"][manifests.SETTINGS_CHECKSUM]

    assert checksum(a_spec()) == checksum(a_spec())
    assert checksum(a_spec()) != checksum(a_spec(references="s3://other/drift/references"))


def test_settings_with_an_unknown_key_are_refused_by_the_monitor():
    """The schema the ConfigMap is checked against is strict: a key the monitor does not know would fail its start."""
    document = manifests.settings_document(a_spec())
    assert MonitorSettings.model_validate(document).models["chat"].drift == config.Drift()
    with pytest.raises(ValueError, match="[Ee]xtra"):
        MonitorSettings.model_validate({**document, "referenceBucket": "b"})


# --- the pod -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_one_hardened_replica_with_probes_and_its_own_irsa_role(plans, project, stack):
    plan = plans[stack]
    cfg = cfg_of(project, stack)
    for region, objects in monitors(plan):
        namespace = obj(objects, "Namespace", "drift", namespace="")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        account = obj(objects, "ServiceAccount", "drift-monitor")
        assert account["automountServiceAccountToken"] is False
        role_arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert role_arn == plan.outputs["regions"][region]["driftMonitor"]["roleArn"]
        spec = obj(objects, "Deployment", "drift-monitor")["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
        pod = spec["template"]["spec"]
        assert pod["serviceAccountName"] == "drift-monitor" and "automountServiceAccountToken" not in pod
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        assert container["image"] == cfg.drift_monitor.image
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"] is True
        assert container["resources"]["requests"] == container["resources"]["limits"]
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert all("emptyDir" in volumes[m["name"]] for m in container["volumeMounts"] if not m.get("readOnly"))


@pytest.mark.parametrize("stack", STACKS)
def test_the_monitor_runs_this_projects_image_as_the_other_llmops_workloads_do(project, stack):
    cfg = cfg_of(project, stack)
    others = {cfg.release_controller.image if cfg.release_controller else None,
              cfg.retrieval.freshness.image if cfg.retrieval.freshness else None} - {None}
    assert "/llmops/llmops:" in cfg.drift_monitor.image
    assert others <= {cfg.drift_monitor.image}


@pytest.mark.parametrize("stack", STACKS)
def test_the_service_takes_samples_and_prometheus_scrapes_it_at_the_configured_interval(plans, project, stack):
    cfg = cfg_of(project, stack)
    for _, objects in monitors(plans[stack]):
        service = obj(objects, "Service", "drift-monitor")
        pod_labels = obj(objects, "Deployment", "drift-monitor")["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["type"] == "ClusterIP"
        assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
        assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
        monitor = obj(objects, "ServiceMonitor", "drift-monitor")["spec"]
        assert all(service["metadata"]["labels"].get(k) == v for k, v in monitor["selector"]["matchLabels"].items())
        assert monitor["namespaceSelector"] == {"matchNames": ["drift"]}
        interval = f"{cfg.drift_monitor.scrape_interval_seconds}s"
        assert monitor["endpoints"] == [{"port": "http", "path": "/metrics", "interval": interval,
                                         "scrapeTimeout": interval}]
        budget = obj(objects, "PodDisruptionBudget", "drift-monitor")["spec"]
        assert budget["selector"]["matchLabels"] == service["spec"]["selector"]


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_shipper_and_prometheus_reach_the_monitor(plans, stack):
    for _, objects in monitors(plans[stack]):
        policy = obj(objects, "NetworkPolicy", "drift-monitor")["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        (rule,) = policy["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
        # Prometheus's namespace: serving.prometheusUrl is http://prometheus-operated.monitoring.svc:9090.
        assert [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]] == [
            "logging", "monitoring"]


def test_prometheus_namespace_is_read_from_an_in_cluster_url():
    assert manifests.namespace_of_service("http://prometheus-operated.monitoring.svc:9090") == "monitoring"
    assert manifests.namespace_of_service("http://kps-prometheus.observability.svc.cluster.local:9090") == \
        "observability"
    assert manifests.namespace_of_service("https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1") is None


# --- IAM ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_iam_reads_only_the_references_prefix_of_the_registry_bucket_with_its_key(plans, stack):
    plan = plans[stack]
    for region, out in plan.outputs["regions"].items():
        name = f"{stack}-{config.region_code(region)}"
        # The registry's own policy names its bucket and key: the monitor's must be the same, narrowed.
        registry = {s["Sid"]: s for s in json.loads(
            plan.get("aws:iam/rolePolicy:RolePolicy", f"{name}-mlflow").inputs["policy"])["Statement"]}
        bucket, key = registry["ListBucket"]["Resource"], registry["BucketKey"]["Resource"]
        assert bucket == f"arn:aws:s3:::{out['registry']['artifactBucket']}"
        statements = json.loads(plan.get("aws:iam/rolePolicy:RolePolicy", f"{name}-drift-monitor").inputs["policy"])
        assert statements["Statement"] == [
            {"Sid": "References", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"{bucket}/drift/references/*"},
            {"Sid": "ListReferences", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
             "Condition": {"StringLike": {"s3:prefix": ["drift/references/*"]}}},
            {"Sid": "ReferencesKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key,
             "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
        ]
        role = plan.get("aws:iam/role:Role", f"{name}-drift-monitor")
        (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        issuer = out["oidcProviderArn"].split(":oidc-provider/")[1]
        assert trust["Principal"] == {"Federated": out["oidcProviderArn"]}
        assert trust["Condition"] == {"StringEquals": {f"{issuer}:sub": "system:serviceaccount:drift:drift-monitor",
                                                       f"{issuer}:aud": "sts.amazonaws.com"}}


# --- the log shipper ---------------------------------------------------------------------------------------

def classic_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """Fluent Bit's classic format as its parser reads it: `[SECTION]` headers, then indented `key value` lines;
    `#` comments. A key given twice in a section is a mistake here (Fluent Bit would keep both, or the last)."""
    sections: list[tuple[str, dict[str, str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z]+)\]", line)
        if header:
            sections.append((header.group(1), {}))
            continue
        assert line.startswith("    ") and sections, f"line {number}: {line!r} is outside a section"
        key, _, value = line.strip().partition(" ")
        entries = sections[-1][1]
        assert key.lower() not in {k.lower() for k in entries}, f"line {number}: {key} twice"
        entries[key] = value.strip()
    return sections


def shipper(objects):
    return obj(objects, "ConfigMap", manifests.FLUENT_BIT_CONFIG_MAP, namespace=manifests.FLUENT_BIT_NAMESPACE)


def tag_matches(pattern: str, tag: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), tag) is not None


@pytest.mark.parametrize("stack", STACKS)
def test_fluent_bit_tails_the_serving_logs_keeps_request_logs_samples_and_posts_to_the_monitor(plans, project, stack):
    cfg = cfg_of(project, stack)
    for _, objects in monitors(plans[stack]):
        data = shipper(objects)["data"]
        assert set(data) == {"drift.conf", "drift-sample.lua"}
        sections = classic_sections(data["drift.conf"])
        assert [name for name, _ in sections] == ["INPUT", "FILTER", "FILTER", "OUTPUT"]
        (_, tail), (_, grep), (_, lua), (_, http) = sections
        assert tail["Name"] == "tail" and tail["Path"] == cfg.drift_monitor.log_path
        assert tail["multiline.parser"] == "docker, cri"
        tag = tail["Tag"].replace("*", "var.log.containers.chat-7f9c_serving_vllm-0a1b.log")
        assert all(tag_matches(section["Match"], tag) for section in (grep, lua, http))
        # Only request-log lines: the grep keeps records whose line has the request log's own field.
        assert grep["Name"] == "grep" and grep["Regex"] == 'log "request_id"'
        # The Lua filter is in the same ConfigMap, where the chart mounts it, and defines what is called.
        assert lua["Name"] == "lua"
        assert lua["script"] == f"{manifests.FLUENT_BIT_DIR}/drift-sample.lua"
        assert f"function {lua['call']}(tag, timestamp, record)" in data["drift-sample.lua"]
        # The output reaches the monitor's Service, on its port, at its ingestion path, as JSON lines.
        service = obj(objects, "Service", "drift-monitor")
        host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
        assert (http["Name"], http["Host"], int(http["Port"])) == ("http", host, service["spec"]["ports"][0]["port"])
        assert (http["URI"], http["Format"], http["json_date_key"]) == ("/v1/samples", "json_lines", "false")


HARNESS = r"""
dofile(arg[1])
local function line(model, prompt)
  return '{"ts": "2026-11-22T03:00:00Z", "model": "' .. model .. '", "request_id": "r", "prompt": "' .. prompt ..
         '", "prompt_tokens": 12}'
end
local kept = {}
local function count(name, record)
  local code, _, out = llmops_drift_sample("llmops.drift.x", 1700000000, record)
  assert(code == 0 or code == -1, "unexpected return code " .. tostring(code))
  assert(out == record)
  kept[name] = (kept[name] or 0) + (code == 0 and 1 or 0)
end
for _ = 1, 20000 do
  count("sampled", {log = line("chat-small", "hello")})
  count("whole", {log = line("chat", "hello")})
  count("top-level", {model = "chat", request_id = "r"})
  count("unwatched", {log = line("summarise", "hello")})
  -- A prompt that mentions another model, escaped inside the JSON text, is not the record's model.
  count("escaped", {log = '{"request_id": "r", "prompt": "use \\"model\\": \\"chat\\" please"}'})
  count("no-log", {stream = "stdout"})
end
for _, name in ipairs({"sampled", "whole", "top-level", "unwatched", "escaped", "no-log"}) do
  print(name .. " " .. kept[name])
end
"""


def test_the_sampling_filter_keeps_each_models_percent_and_drops_the_rest(luajit, tmp_path):
    spec = a_spec(models=(manifests.WatchedModel("chat", {}, None, 100.0),
                          manifests.WatchedModel("chat-small", {}, None, 12.5)))
    script = tmp_path / "drift-sample.lua"
    script.write_text(manifests.sampling_lua(spec.models))
    compiled = subprocess.run([luajit, "-bl", str(script)], capture_output=True, text=True, timeout=60)
    assert compiled.returncode == 0, compiled.stderr
    harness = tmp_path / "harness.lua"
    harness.write_text(HARNESS)
    result = subprocess.run([luajit, str(harness), str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    kept = {name: int(count) for name, count in (line.split() for line in result.stdout.splitlines())}
    assert kept["whole"] == kept["top-level"] == 20000
    assert kept["unwatched"] == kept["escaped"] == kept["no-log"] == 0
    # 12.5% of 20,000 is 2,500; the binomial standard deviation is about 47, so +-250 is over five of them.
    assert abs(kept["sampled"] - 2500) < 250


@pytest.mark.parametrize("stack", STACKS)
def test_every_stacks_sampling_script_compiles_in_luajit(plans, luajit, stack, tmp_path):
    for region, objects in monitors(plans[stack]):
        script = tmp_path / f"{region}.lua"
        script.write_text(shipper(objects)["data"]["drift-sample.lua"])
        result = subprocess.run([luajit, "-bl", str(script)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{stack} {region}: {result.stderr}"


def test_the_sampling_script_lists_every_watched_model_with_its_percent(project):
    cfg = cfg_of(project, "prod")
    text = manifests.sampling_lua(watched_models(cfg))
    table = dict(re.findall(r'\["([^"]+)"\] = ([0-9.e+-]+),', text))
    assert table == {m.name: repr(float(m.drift.sample_percent)) for m in cfg.models if m.drift}
    assert table == {"chat": "100.0", "chat-small": "50.0"}


# --- alerts ------------------------------------------------------------------------------------------------

def drift_groups(plan):
    return [(r.provider, group) for r in plan.kubernetes_objects() if r.inputs["kind"] == "PrometheusRule"
            for group in r.inputs["spec"]["groups"] if group["name"] == "llmops-drift"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_region_alerts_on_drift_at_the_rule_interval_with_each_models_severity(plans, project, stack):
    plan = plans[stack]
    cfg = cfg_of(project, stack)
    groups = drift_groups(plan)
    assert sorted(p for p, _ in groups) == sorted(p.urn for p in plan.by_type("pulumi:providers:kubernetes"))
    for _, group in groups:
        assert group["interval"] == f"{cfg.drift_monitor.rule_interval_seconds}s"
        drift = {r["labels"]["model"]: r for r in group["rules"] if r["alert"] == "Drift"}
        assert {m: r["labels"]["severity"] for m, r in drift.items()} == {
            m.name: ("page" if stack == "prod" else "ticket") for m in cfg.models if m.drift}
        assert all("for" not in r for r in drift.values())  # the monitor's consecutive windows are the wait
        volume = {r["labels"]["model"]: r["expr"] for r in group["rules"] if r["alert"] == "DriftRetrainingVolume"}
        assert volume == ({"chat": 'max by (model) (llmops_drift_samples_since_reference{namespace="drift",'
                                   'model="chat"}) >= 2000000'} if stack == "prod" else {})
        assert {r["annotations"]["runbook_url"] for r in group["rules"]} == {
            f"{cfg.alerting.runbook_base_url}/drift-review.md"}


def test_drift_rules_follow_the_models_policies(project):
    rules = drift_rules(cfg_of(project, "prod"))
    assert rules is not None and rules.interval_seconds == 5
    by_model = {spec.model: spec for spec in rules.models}
    assert by_model["chat"].retraining_volume == 2000000 and by_model["chat"].severity == "page"
    assert by_model["chat-small"].sample_percent == 50 and by_model["chat-small"].retraining_volume is None


def test_the_readme_tells_how_to_include_the_shipper_config():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"@INCLUDE {manifests.FLUENT_BIT_DIR}/{manifests.FLUENT_BIT_CONF}" in readme
    assert manifests.FLUENT_BIT_CONFIG_MAP in readme
