"""The executable runbooks, by name (the catalog lists every runbook, executable or not yet)."""

from typing import Any

from runbooks.drift_review import DRIFT_REVIEW
from runbooks.engine import Runbook
from runbooks.failover import FAILOVER
from runbooks.pii_incident import PII_INCIDENT
from runbooks.promote import PROMOTE
from runbooks.reindex import REINDEX
from runbooks.rollback import ROLLBACK
from runbooks.rollback_canary import ROLLBACK_CANARY

RUNBOOKS: dict[str, Runbook[Any, Any]] = {runbook.name: runbook for runbook in (ROLLBACK, ROLLBACK_CANARY, PROMOTE, FAILOVER,
                                                                                 REINDEX, PII_INCIDENT, DRIFT_REVIEW)}
