"""Cluster and identity policies: private EKS endpoints, encrypted secrets, no wildcard IAM, least-privilege RBAC."""

from __future__ import annotations

import ipaddress

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies.common import CONTEXT_SCHEMA, as_list, json_document, object_ref

IAM_DOCUMENTS = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
}


def _eks_endpoint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "aws:eks/cluster:Cluster":
        return
    vpc = args.props.get("vpcConfig") or {}
    if vpc.get("endpointPublicAccess") is False:
        return
    # The API's default when public access is on (or unset) is 0.0.0.0/0.
    cidrs = vpc.get("publicAccessCidrs") or ["0.0.0.0/0"]
    open_to_all = [c for c in cidrs if ipaddress.ip_network(c, strict=False).prefixlen == 0]
    if open_to_all:
        report(f"cluster {args.name}: the API endpoint is public to {', '.join(open_to_all)}; set "
               "vpcConfig.endpointPublicAccess: false, or list the allowed CIDRs in publicAccessCidrs.", None)


def _eks_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "aws:eks/cluster:Cluster":
        return
    encryption = args.props.get("encryptionConfig") or {}
    if "secrets" not in (encryption.get("resources") or []) or not (encryption.get("provider") or {}).get("keyArn"):
        report(f"cluster {args.name} does not envelope-encrypt Kubernetes secrets; set encryptionConfig with "
               "resources [secrets] and a KMS key ARN.", None)


def _no_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    field = IAM_DOCUMENTS.get(args.resource_type)
    if field is None:
        return
    document = json_document(args.props.get(field))
    if document is None:
        return
    for index, statement in enumerate(as_list(document.get("Statement"))):
        if statement.get("Effect") != "Allow":
            continue
        actions = as_list(statement.get("Action"))
        resources = as_list(statement.get("Resource"))
        where = f"{args.name} statement {statement.get('Sid') or index}"
        if any(action == "*" or action.endswith(":*") for action in actions):
            report(f"{where} allows wildcard actions {actions}; list the actions the role needs.", None)
        if any(str(a).startswith("s3:") for a in actions) and any(r in ("*", "arn:aws:s3:::*") for r in resources):
            report(f"{where} grants S3 actions on every bucket ({resources}); name the bucket ARNs.", None)


RBAC = "kubernetes:rbac.authorization.k8s.io/v1:"
# Verbs and resources that amount to more than they say: granting or binding more roles, acting as someone else,
# reading every credential in the namespace, running commands in pods, minting tokens.
ESCALATING_VERBS = ("escalate", "bind", "impersonate")
SENSITIVE_RESOURCES = ("secrets", "pods/exec", "pods/attach", "serviceaccounts/token")


def _rbac(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith(RBAC):
        return
    kind = args.resource_type[len(RBAC):]
    if kind in ("ClusterRole", "ClusterRoleBinding"):
        name = (args.props.get("metadata") or {}).get("name")
        report(f"{kind} {name} grants access across the cluster; grant a Role and RoleBinding in the namespace "
               "the workload acts on.", None)
        return
    where = f"{kind} {object_ref(args.props)}"
    if kind == "RoleBinding":
        ref = args.props.get("roleRef") or {}
        if ref.get("kind") != "Role":
            report(f"{where} binds {ref.get('kind')} {ref.get('name')}; bind a Role of its own that lists what the "
                   "subject needs.", None)
        return
    if kind != "Role":
        return
    for index, rule in enumerate(args.props.get("rules") or []):
        fields = {field: list(rule.get(field) or []) for field in ("apiGroups", "resources", "verbs")}
        wild = [field for field, values in fields.items() if "*" in values]
        if wild:
            report(f"{where} rule {index}: `*` in {', '.join(wild)}; list the API groups, resources and verbs.", None)
        verbs = [v for v in fields["verbs"] if v in ESCALATING_VERBS]
        if verbs:
            report(f"{where} rule {index}: verbs {verbs} let the subject gain permissions it was not given; "
                   "remove them.", None)
        resources = [r for r in fields["resources"] if r in SENSITIVE_RESOURCES]
        if resources:
            report(f"{where} rule {index}: access to {resources} reaches credentials or other pods; remove it "
                   "(IRSA gives AWS access without Kubernetes secrets).", None)


POLICIES = [
    ResourceValidationPolicy(name="eks-private-endpoint",
                             description="EKS API endpoints are private unless an allow-list is configured.",
                             validate=_eks_endpoint, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="eks-secrets-encryption", description="EKS encrypts Kubernetes secrets with KMS.",
                             validate=_eks_secrets, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="iam-no-wildcards",
                             description="No IAM statement allows `*` actions or S3 actions on `*` resources.",
                             validate=_no_wildcards, config_schema=CONTEXT_SCHEMA),
    ResourceValidationPolicy(name="k8s-rbac-least-privilege",
                             description="RBAC is namespaced (no ClusterRole or ClusterRoleBinding), bindings name "
                                         "Roles, and Roles grant no `*`, no escalate/bind/impersonate, no secrets, "
                                         "exec, attach or tokens.",
                             validate=_rbac, config_schema=CONTEXT_SCHEMA),
]
