"""Kubernetes workload policies: pinned images, limits, GPU requests, privilege, probes, budgets, labels."""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.common import (
    CONTEXT_SCHEMA,
    DEFAULT_PRIVILEGED_ALLOW_LIST,
    GPU_POOL_SELECTORS,
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    WORKLOAD_TYPES,
    config,
    containers,
    object_ref,
    pod_spec,
    quantity,
)

DIGEST = re.compile(r"@sha256:[a-f0-9]{64}$")
REQUIRED_LABELS = ("owner", "cost-center", "environment")
MODEL_LABEL = "llmops.io/model"
SERVING_COMPONENT = "llm-serving"
METRICS_PORT = "metrics"  # a port by this name is scraped, not served: it alone does not make a workload serving


def _workload(args: ResourceValidationArgs) -> Any:
    if args.resource_type not in WORKLOAD_TYPES:
        return None
    return pod_spec(args.resource_type, args.props)


def _image_digest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod = _workload(args)
    if pod is None:
        return
    for container in containers(pod):
        image = container.get("image", "")
        if not DIGEST.search(image):
            report(f"{object_ref(args.props)} container {container.get('name')}: image {image!r} is not pinned; "
                   "use REPOSITORY[:TAG]@sha256:<digest> so what runs cannot change under the same name.", None)


def _limits(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod = _workload(args)
    if pod is None:
        return
    for container in containers(pod):
        limits = (container.get("resources") or {}).get("limits") or {}
        missing = [r for r in ("cpu", "memory") if r not in limits]
        if missing:
            report(f"{object_ref(args.props)} container {container.get('name')}: no {' or '.join(missing)} limit; "
                   "set resources.limits.cpu and resources.limits.memory.", None)


def _tolerates_gpu_taint(pod: Any) -> bool:
    return any(t.get("key") == GPU_TAINT_KEY and t.get("effect", "NoSchedule") == "NoSchedule"
               and t.get("operator", "Equal") in ("Exists", "Equal") for t in pod.get("tolerations") or [])


def _selects_gpu_pool(pod: Any) -> bool:
    selector = pod.get("nodeSelector") or {}
    if any(key in selector for key in GPU_POOL_SELECTORS):
        return True
    terms = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    return any(expression.get("key") in GPU_POOL_SELECTORS
               for term in terms for expression in term.get("matchExpressions") or [])


def _gpu_requests(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod = _workload(args)
    if pod is None:
        return
    wants_gpu = False
    for container in containers(pod):
        resources = container.get("resources") or {}
        request = (resources.get("requests") or {}).get(GPU_RESOURCE)
        limit = (resources.get("limits") or {}).get(GPU_RESOURCE)
        if request is None and limit is None:
            continue
        wants_gpu = True
        if limit is None or (request is not None and quantity(request) != quantity(limit)):
            report(f"{object_ref(args.props)} container {container.get('name')}: {GPU_RESOURCE} request {request} "
                   f"and limit {limit} differ; GPUs cannot be overcommitted, set both to the same count.", None)
    if wants_gpu and not (_tolerates_gpu_taint(pod) and _selects_gpu_pool(pod)):
        report(f"{object_ref(args.props)} requests GPUs but does not both tolerate the {GPU_TAINT_KEY} taint and "
               f"select a GPU pool ({' or '.join(GPU_POOL_SELECTORS)}); add the toleration and a nodeSelector.", None)


def _allow_listed(args: ResourceValidationArgs) -> bool:
    allowed = config(args).get("privilegedAllowList", list(DEFAULT_PRIVILEGED_ALLOW_LIST))
    return object_ref(args.props) in allowed


def _no_privilege(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod = _workload(args)
    if pod is None or _allow_listed(args):
        return
    for container in containers(pod):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            report(f"{object_ref(args.props)} container {container.get('name')} is privileged; remove "
                   "securityContext.privileged (only allow-listed system agents may have it).", None)
        if context.get("allowPrivilegeEscalation") is not False:
            report(f"{object_ref(args.props)} container {container.get('name')}: set "
                   "securityContext.allowPrivilegeEscalation to false.", None)


def _non_root(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod = _workload(args)
    if pod is None or _allow_listed(args):
        return
    pod_context = pod.get("securityContext") or {}
    for container in containers(pod):
        context = container.get("securityContext") or {}
        effective = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if effective is not True or context.get("runAsUser") == 0 or pod_context.get("runAsUser") == 0:
            report(f"{object_ref(args.props)} container {container.get('name')} may run as root; set "
                   "runAsNonRoot: true (pod or container securityContext) and a non-zero runAsUser.", None)


def _serves(pod: Any) -> bool:
    """Its containers expose a port other than a `metrics` one: something answers requests there."""
    return any(port.get("name") != METRICS_PORT
               for container in pod.get("containers") or [] for port in container.get("ports") or [])


def _is_serving(args: ResourceValidationArgs) -> bool:
    """A workload that answers requests: a Deployment or StatefulSet that serves (see `_serves`)."""
    if args.resource_type not in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"):
        return False
    return _serves(pod_spec(args.resource_type, args.props) or {})


def _probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not _is_serving(args):
        return
    pod = pod_spec(args.resource_type, args.props) or {}
    for container in pod.get("containers") or []:
        if not container.get("ports"):
            continue
        missing = [p for p in ("readinessProbe", "livenessProbe") if not container.get(p)]
        if missing:
            report(f"{object_ref(args.props)} container {container.get('name')} serves traffic without "
                   f"{' and '.join(missing)}; add them so traffic only reaches ready pods and hung ones restart.", None)


def _labels(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("kubernetes:") or "metadata" not in args.props:
        return
    labels = (args.props.get("metadata") or {}).get("labels") or {}
    missing = [label for label in REQUIRED_LABELS if not labels.get(label)]
    serving = labels.get("app.kubernetes.io/component") == SERVING_COMPONENT
    if serving and not labels.get(MODEL_LABEL):
        missing.append(MODEL_LABEL)
    if missing:
        report(f"{args.props.get('kind', args.resource_type)} {object_ref(args.props)} lacks label(s) "
               f"{', '.join(missing)}; cost reports and policies route by them.", None)


def _selector_matches(selector: Any, labels: dict) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def _disruption_budgets(args: StackValidationArgs, report: ReportViolation) -> None:
    budgets = [r for r in args.resources if r.resource_type == "kubernetes:policy/v1:PodDisruptionBudget"]
    for resource in args.resources:
        if resource.resource_type != "kubernetes:apps/v1:Deployment":
            continue
        if not _serves(pod_spec(resource.resource_type, resource.props) or {}):
            continue  # not a serving Deployment (a controller exposing only its metrics, say)
        namespace = (resource.props.get("metadata") or {}).get("namespace", "default")
        template = ((resource.props.get("spec") or {}).get("template") or {})
        template_labels = (template.get("metadata") or {}).get("labels") or {}
        covered = any(
            (b.props.get("metadata") or {}).get("namespace", "default") == namespace
            and _same_cluster(b, resource)
            and _selector_matches((b.props.get("spec") or {}).get("selector"), template_labels)
            for b in budgets)
        if not covered:
            report(f"Deployment {object_ref(resource.props)} has no PodDisruptionBudget selecting its pods; "
                   "add one (maxUnavailable: 1) so node drains cannot take every replica at once.", resource.urn)


def _same_cluster(a: Any, b: Any) -> bool:
    return getattr(a.provider, "urn", None) == getattr(b.provider, "urn", None)


POLICIES = [
    ResourceValidationPolicy(
        name="k8s-image-digest", description="Container images are pinned by digest.", validate=_image_digest,
        config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(
        name="k8s-resource-limits", description="Every container sets CPU and memory limits.", validate=_limits,
        config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(
        name="k8s-gpu-requests",
        description="nvidia.com/gpu limits equal requests, only on pods that tolerate the GPU taint and select a "
                    "GPU pool.",
        validate=_gpu_requests, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(
        name="k8s-no-privilege", description="No privileged containers and no privilege escalation (allow-list aside).",
        validate=_no_privilege, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(
        name="k8s-run-as-non-root", description="Containers run as a non-root user (allow-list aside).",
        validate=_non_root, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(
        name="k8s-serving-probes",
        description="Serving containers (ports other than `metrics`) have readiness and liveness probes.",
        validate=_probes, config_schema=CONTEXT_SCHEMA),
    StackValidationPolicy(
        name="k8s-serving-pdb",
        description="Every serving Deployment (a port other than `metrics`) has a PodDisruptionBudget.",
        validate=_disruption_budgets, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(
        name="k8s-required-labels",
        description="Kubernetes objects carry owner, cost-center and environment labels, and model on serving objects.",
        validate=_labels, config_schema=CONTEXT_SCHEMA),
]
