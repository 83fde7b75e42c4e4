"""The pack's contents, importable without starting a policy server (see __main__.py)."""

from pulumi_policy import EnforcementLevel

from policies import alerting, data, gpu, identity, stack, workloads

PACK_NAME = "llmops-policies"
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY
POLICIES = [*workloads.POLICIES, *gpu.POLICIES, *data.POLICIES, *identity.POLICIES, *alerting.POLICIES, *stack.POLICIES]
POLICY_NAMES = [policy.name for policy in POLICIES]
