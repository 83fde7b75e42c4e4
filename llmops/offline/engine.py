"""Run a real Pulumi Python program under Pulumi's mock engine and capture what it declares.

No CLI, no provider plugins, no network: `pulumi.runtime.set_mocks` replaces the engine,
`CapturingMonitor` records every registration with its inputs, and `ProviderMocks`
returns what a provider would compute (ARNs, IDs, an EKS endpoint, availability zones)
so the program's `apply` callbacks run on realistic values. Evaluation is not a
preview (`preview=False`): a preview would leave outputs unknown and skip those
callbacks. Duplicate URNs, which mocks accept and the real engine rejects, are errors.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import runpy
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from llmops.offline.errors import DuplicateUrnError, ProgramError  # raised here; importable from here too
from llmops.offline.plan import SECRET_MASK, UNKNOWN, Plan, PlannedResource
from llmops.offline.project import Project, StackSettings

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
RANDOM_PASSWORD_MARKER = "offlineRandomPassword"


def _short_hash(*parts: str, length: int = 7) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class ProviderMocks(Mocks):
    """What providers compute, deterministically: IDs, ARNs, auto-names and a few known outputs."""

    def __init__(self, project: str, stack: str, default_region: str) -> None:
        self.project, self.stack, self.default_region = project, stack, default_region
        self.provider_regions: dict[str, str] = {}  # provider id -> its region

    def region_of(self, provider_ref: str | None) -> str:
        provider_id = (provider_ref or "").rsplit("::", 1)[-1]
        return self.provider_regions.get(provider_id, self.default_region)

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id = f"{args.name}-{_short_hash(self.stack, args.typ, args.name)}"
        state = dict(args.inputs)
        if args.typ == "pulumi:providers:aws":
            self.provider_regions[resource_id] = state.get("region") or self.default_region
            return resource_id, state
        if args.typ.startswith("pulumi:providers:"):
            return resource_id, state
        region = self.region_of(args.provider)
        if args.typ.startswith("aws:"):
            state.setdefault("name", resource_id)  # the provider's auto-naming: logical name plus a suffix
            service = args.typ.split(":")[1].split("/")[0]
            state.setdefault("arn", f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{args.name}/{resource_id}")
            state.setdefault("region", region)
            state.update(_computed_aws_outputs(args.typ, state, region, resource_id))
        elif args.typ.startswith("kubernetes:"):
            metadata = dict(state.get("metadata") or {})
            metadata.setdefault("name", resource_id)
            state["metadata"] = metadata
        return resource_id, state

    def call(self, args: MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        region = self.region_of(args.provider)
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            letters = "abcdef"
            return {"names": [f"{region}{letter}" for letter in letters],
                    "zoneIds": [f"{region[:3]}{region[-1]}-az{i + 1}" for i in range(6)], "id": region}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline", "userId": "OFFLINE",
                    "id": ACCOUNT_ID}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:secretsmanager/getRandomPassword:getRandomPassword":
            # Recognisable, so tests can prove it never reaches a plan or a manifest.
            return {"randomPassword": f"{RANDOM_PASSWORD_MARKER}{_short_hash(str(args.args), length=24)}", "id": "random"}
        if token == "aws:index/getRegion:getRegion":
            return {"name": region, "region": region, "id": region}
        return {}


def _computed_aws_outputs(type_: str, state: dict[str, Any], region: str, resource_id: str) -> dict[str, Any]:
    if type_ == "aws:eks/cluster:Cluster":
        name = state["name"]
        oidc_id = _short_hash(name, region, length=32).upper()
        vpc_config = dict(state.get("vpcConfig") or {})
        vpc_config.setdefault("clusterSecurityGroupId", f"sg-{_short_hash(name, 'cluster', length=17)}")
        return {
            "endpoint": f"https://{oidc_id}.gr7.{region}.eks.amazonaws.com",
            "certificateAuthority": {"data": base64.b64encode(f"offline CA for {name}".encode()).decode()},
            "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{oidc_id}"}]}],
            "vpcConfig": vpc_config,
            "status": "ACTIVE",
        }
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"latestVersion": 1, "defaultVersion": 1}
    if type_ == "aws:s3/bucket:Bucket":
        name = state.get("bucket") or f"{state.get('bucketPrefix', '')}{resource_id}".lower()
        return {"bucket": name, "arn": f"arn:aws:s3:::{name}", "region": region}
    if type_ == "aws:eks/nodeGroup:NodeGroup":
        return {"nodeGroupName": state.get("nodeGroupName") or f"{state.get('nodeGroupNamePrefix', '')}{resource_id[-7:]}"}
    if type_ == "aws:kms/key:Key":
        return {"keyId": resource_id, "arn": f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{resource_id}"}
    if type_ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        url = str(state.get("url", "")).removeprefix("https://")
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{url}"}
    if type_ == "aws:rds/instance:Instance":
        address = f"{resource_id}.c0ffee.{region}.rds.amazonaws.com"
        secret = f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:rds!db-{_short_hash(resource_id, length=8)}"
        return {"address": address, "endpoint": f"{address}:5432", "port": 5432,
                "masterUserSecrets": [{"secretArn": secret, "kmsKeyId": state.get("masterUserSecretKmsKeyId", ""),
                                       "secretStatus": "active"}] if state.get("manageMasterUserPassword") else []}
    if type_ == "aws:elasticache/replicationGroup:ReplicationGroup":
        return {"primaryEndpointAddress": f"master.{resource_id}.c0ffee.{region[:4]}.cache.amazonaws.com",
                "readerEndpointAddress": f"replica.{resource_id}.c0ffee.{region[:4]}.cache.amazonaws.com"}
    if type_ == "aws:sns/topic:Topic":
        return {"arn": f"arn:aws:sns:{region}:{ACCOUNT_ID}:{state.get('name') or resource_id}"}
    if type_ == "aws:dynamodb/table:Table":
        return {"arn": f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{state['name']}"}
    if type_ == "aws:secretsmanager/secret:Secret":
        return {"arn": f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{resource_id}"}
    if type_ == "aws:iam/role:Role":
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{state['name']}"}
    return {}


class CapturingMonitor(MockMonitor):
    """A mock monitor that keeps every registration (type, name, parent, provider, inputs)."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.captured: list[PlannedResource] = []
        self.stack_outputs: dict[str, Any] = {}
        self._stack_urns: set[str] = set()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            self._stack_urns.add(urn)
        else:
            inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
            self.captured.append(PlannedResource(
                urn=urn, type=request.type, name=request.name, parent=request.parent,
                provider=request.provider.rsplit("::", 1)[0] if request.provider else "",
                inputs=_masked(inputs), dependencies=tuple(request.dependencies), custom=bool(request.custom),
                property_dependencies={key: tuple(value.urns) for key, value in request.propertyDependencies.items()},
            ))
        return super().RegisterResource(request)

    def ReadResource(self, request: Any) -> Any:  # noqa: N802
        response = super().ReadResource(request)
        self.captured.append(PlannedResource(
            urn=response.urn, type=request.type, name=request.name, parent=request.parent,
            provider=request.provider.rsplit("::", 1)[0] if request.provider else "",
            inputs={"id": request.id, **_masked(rpc.deserialize_properties(request.properties, keep_unknowns=True))},
        ))
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        if request.urn in self._stack_urns:
            self.stack_outputs = _masked(rpc.deserialize_properties(request.outputs, keep_unknowns=True))
        return super().RegisterResourceOutputs(request)


def _masked(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return SECRET_MASK
    if value == rpc.UNKNOWN:
        return UNKNOWN
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire carries every number as a float
    return value


@contextlib.contextmanager
def _program_context(directory: Path) -> Iterator[None]:
    """Run as the CLI would: from the program's directory, with it importable."""
    previous_cwd, previous_path = os.getcwd(), list(sys.path)
    os.chdir(directory)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        sys.path[:] = previous_path


def skip_source_positions() -> None:
    """Stop Pulumi walking the Python stack at every registration (about 10% of an evaluation): the trace is sent
    to the engine for source positions, which the mock monitor never reads. For a process that only evaluates."""
    from pulumi.runtime import resource
    from pulumi.runtime.proto import source_pb2

    if hasattr(resource, "_get_stack_trace"):  # private to Pulumi: if it moves, registration just stays as it is
        resource._get_stack_trace = source_pb2.StackTrace  # an empty trace: no source position  # type: ignore


def run_program(project: Project, stack: StackSettings) -> Plan:
    """Evaluate `project`'s program for `stack` and return everything it declared."""
    default_region = stack.config.get("aws:region", DEFAULT_REGION)
    mocks = ProviderMocks(project.name, stack.name, default_region)
    monitor = CapturingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project.name, stack=stack.name, preview=False, monitor=monitor)
    settings.ROOT.set(None)  # the program gets a fresh root stack, registered as the CLI registers it
    pulumi.runtime.set_all_config(dict(stack.config), list(stack.secret_keys))

    def program() -> None:
        runpy.run_path(str(project.main), run_name="__main__")

    with _program_context(project.directory):
        try:
            _sync_await(run_in_stack(program))
        except pulumi.RunError as error:
            raise ProgramError(str(error), declared=len(monitor.captured), user_error=True) from None
        except Exception as error:  # noqa: BLE001 - reported with its type: the program is not ours
            raise ProgramError(f"{type(error).__name__}: {error}", declared=len(monitor.captured), user_error=False) from error
        finally:
            settings.ROOT.set(None)

    plan = Plan(stack=stack.name, project=project.name, resources=monitor.captured, outputs=monitor.stack_outputs)
    _check_unique_urns(plan)
    return plan


def _check_unique_urns(plan: Plan) -> None:
    counts = Counter(r.urn for r in plan.resources)
    duplicates = sorted(urn for urn, count in counts.items() if count > 1)
    if duplicates:
        raise DuplicateUrnError(f"stack {plan.stack}: duplicate resource URN(s), which the Pulumi engine rejects: "
                                + ", ".join(duplicates))
