"""Report actions (import, read, match) in the service's tamper-evident audit trail.

The review's keyed hash chain (`recon_audit`) records every action on a report too, named by
the report's id with ``subject=report`` in its details. A match run is recorded by a hook in
the run's own transaction. An import or a read is recorded right after it, in a transaction of
its own (the import use case owns its transaction): an audit write that fails makes the request
fail loudly, and the import it followed stays recorded in the report's own row (who imported
it, when) and in the logs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock
from kora.observability import get_correlation_id
from kora.reconciliation.adapters.case_store import SqlAuditTrail
from kora.reconciliation.domain.audit_chain import Detail
from kora.reconciliation.service.match_run import MatchHook, MatchRun

# The role recorded for an action: the strongest the person holds.
_ROLE_ORDER = ("admin", "recon_approver", "recon_reviewer")


def acting_role(roles: Iterable[str]) -> str:
    held = set(roles)
    return next((role for role in _ROLE_ORDER if role in held), "none")


async def audit_report_action(
    engine: AsyncEngine,
    audit: SqlAuditTrail,
    clock: Clock,
    *,
    action: str,
    actor: str,
    role: str,
    report_id: uuid.UUID,
    details: Mapping[str, Detail],
) -> None:
    """Append ``action`` (``report.import``, ``report.read``, ``report.match``) on ``report_id``."""
    async with engine.begin() as conn:
        await audit.append(
            conn,
            at=clock.now(),
            actor=actor[:128],
            role=role,
            action=action,
            case_id=report_id,
            before=None,
            after=None,
            correlation_id=get_correlation_id(),
            details={"subject": "report", **details},
        )
    logger.info("recon audit {action}", action=action, report_id=str(report_id))


def match_audit_hook(audit: SqlAuditTrail, clock: Clock, *, actor: str, role: str) -> MatchHook:
    """A `run_match` hook recording the run (who, which report, the count of each outcome) in
    the audit chain inside the run's transaction: the results, the settlements announced and
    the record commit together or not at all."""

    async def record(conn: AsyncConnection, run: MatchRun) -> None:
        counts: dict[str, Detail] = {}
        for result in run.results:
            key = result.outcome.value.lower()
            counts[key] = int(counts.get(key) or 0) + 1
        await audit.append(
            conn,
            at=clock.now(),
            actor=actor[:128],
            role=role,
            action="report.match",
            case_id=run.report_id,
            before=None,
            after=None,
            correlation_id=get_correlation_id(),
            details={"subject": "report", "provider": run.provider, **counts},
        )

    return record
