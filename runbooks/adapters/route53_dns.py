"""Route53 for the failover runbook (boto3): read failover record sets, change them in one atomic
batch and wait until the change is INSYNC, read health-check status, and ask Route53 what it answers
for a name (TestDNSAnswer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from runbooks.adapters.aws import aws_call
from runbooks.engine import TransientError, WorldChanged

T = TypeVar("T")


def _call(what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """aws_call, plus Route53's own meaning of a refused batch: the records changed since the plan."""
    from botocore.exceptions import ClientError

    try:
        return aws_call(what, function, *args, passthrough=("InvalidChangeBatch",), **kwargs)
    except ClientError as error:
        raise WorldChanged(f"{what}: Route53 refused the change ({error}); the records changed since the plan") from None


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


class Route53Dns:
    def __init__(self, route53: Any) -> None:
        self.route53 = route53

    def record_sets(self, zone_id: str, name: str, type_: str = "CNAME") -> list[dict[str, Any]]:
        """Every record set with this name and type (one per set identifier)."""
        found = _call(f"list records {name}", self.route53.list_resource_record_sets, HostedZoneId=zone_id,
                      StartRecordName=_fqdn(name), StartRecordType=type_, MaxItems="100")
        return [r for r in found["ResourceRecordSets"] if r["Name"] == _fqdn(name) and r["Type"] == type_]

    def change(self, zone_id: str, changes: list[dict[str, Any]], comment: str) -> str:
        """Apply changes in one batch (all or nothing); returns the change id."""
        answer = _call("change records", self.route53.change_resource_record_sets, HostedZoneId=zone_id,
                       ChangeBatch={"Comment": comment[:256], "Changes": changes})
        return answer["ChangeInfo"]["Id"]

    def wait_insync(self, change_id: str, deadline: float, poll: float) -> None:
        while True:
            status = _call("read change", self.route53.get_change, Id=change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return
            if time.monotonic() + poll > deadline:
                raise TransientError(f"Route53 change {change_id} is still {status}")
            time.sleep(poll)

    def health_check_healthy(self, check_id: str) -> bool:
        """Healthy when most Route53 checkers say so (a calculated check reports one observation)."""
        observations = _call(f"health check {check_id}", self.route53.get_health_check_status,
                             HealthCheckId=check_id)["HealthCheckObservations"]
        healthy = sum(1 for o in observations if o["StatusReport"]["Status"].startswith("Success"))
        return bool(observations) and healthy * 2 > len(observations)

    def dns_answer(self, zone_id: str, name: str, type_: str = "CNAME") -> tuple[list[str], str]:
        """What Route53's name servers answer for a name, and how that was learned. TestDNSAnswer asks Route53
        itself; where the API does not offer it (moto's emulator), the answer is derived from the record sets
        and their health checks the way failover routing answers, and says so."""
        from botocore.exceptions import ClientError

        try:
            answer = aws_call(f"test the DNS answer for {name}", self.route53.test_dns_answer,
                              passthrough=("NotImplemented", "404", "501"), HostedZoneId=zone_id,
                              RecordName=_fqdn(name), RecordType=type_)
            return sorted(str(r).rstrip(".") for r in answer.get("RecordData", [])), "route53:TestDNSAnswer"
        except ClientError:
            pass
        return self._evaluate(zone_id, name, type_), "evaluated from record sets and health checks (TestDNSAnswer unavailable)"

    def _evaluate(self, zone_id: str, name: str, type_: str) -> list[str]:
        records = self.record_sets(zone_id, name, type_)
        by_role = {r.get("Failover"): r for r in records}
        for role in ("PRIMARY", "SECONDARY"):
            record = by_role.get(role)
            if record is None:
                continue
            check = record.get("HealthCheckId")
            if check is None or self.health_check_healthy(check) != self._inverted(check):
                return sorted(v["Value"].rstrip(".") for v in record.get("ResourceRecords", []))
        return []

    def _inverted(self, check_id: str) -> bool:
        config = _call(f"health check {check_id}", self.route53.get_health_check, HealthCheckId=check_id)
        return bool(config["HealthCheck"]["HealthCheckConfig"].get("Inverted"))
