"""The automatic rule for a late success (ADR 0022, 0025): a line the provider reports as
succeeded while Kora has no final status for it (MISSING_INTERNAL hinted ``query_status``), or
a status mismatch where the provider knows more than Kora, is not put in front of people first.

A job (``run_once``, on a schedule) asks the core, through the ``CorePayments`` port, to query
the provider about the payment. When the core records the answer it emits
``payment.status_changed``; the feed folds it into ``recon_payments`` and the next match run
matches the line and closes the case ("resolved by rematch"). The case goes to people
(``awaiting_core`` → ``open``) only when:

- it is still unresolved ``escalate_after`` its opening (the configured time);
- there is nothing to ask about (the line names no payment Kora could know);
- the core has no such payment, or answers a final status that is not a success.

The core is called with no transaction open; each answer is recorded in its own short one."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.kernel import Clock
from kora.observability import correlation_scope, get_correlation_id, get_tracer
from kora.reconciliation.adapters import case_store as store
from kora.reconciliation.adapters.case_store import SqlAuditTrail
from kora.reconciliation.domain.cases import SYSTEM, Action, CaseStatus
from kora.reconciliation.domain.matching import SUCCEEDED_STATUSES, UNFINISHED_STATUSES
from kora.reconciliation.service.case_metrics import CaseMetrics
from kora.reconciliation.service.ports import CorePayment, CorePayments

_tracer = get_tracer("kora.reconciliation")


def _target(row: dict[str, Any]) -> str | None:
    """The payment to ask about: Kora's payment, else the line's reference (the id Kora sent)."""
    if row["payment_id"]:
        return str(row["payment_id"])
    line = json.loads(row["evidence"]).get("line") or {}
    reference = line.get("our_reference")
    return str(reference) if reference else None


class LateSuccessQueries:
    def __init__(
        self,
        engine: AsyncEngine,
        core: CorePayments,
        *,
        audit: SqlAuditTrail,
        clock: Clock,
        escalate_after: timedelta,
        metrics: CaseMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._core = core
        self._audit = audit
        self._clock = clock
        self._escalate_after = escalate_after
        self._metrics = metrics

    async def run_once(self, *, limit: int = 100) -> dict[str, int]:
        """Work the oldest ``limit`` cases awaiting the core; returns how many were asked and are
        still pending, confirmed by the core (waiting for the rematch), escalated, or errored."""
        counts = {"pending": 0, "confirmed": 0, "escalated": 0, "error": 0}
        with correlation_scope(get_correlation_id()), _tracer.start_as_current_span("recon.cases.late_success"):
            async with self._engine.connect() as conn:
                rows = await store.cases_awaiting_core(conn, limit=limit)
            for row in rows:
                result = await self._work(row)
                counts[result] += 1
                if self._metrics:
                    self._metrics.query(result)
        logger.info("recon late-success queries", **counts)
        return counts

    async def _work(self, row: dict[str, Any]) -> str:
        now = self._clock.now()
        if now >= row["opened_at"] + self._escalate_after:
            await self._escalate(row["id"], f"still unresolved after {self._escalate_after}", now)
            return "escalated"
        target = _target(row)
        if target is None:
            await self._escalate(row["id"], "no payment to ask the core about", now)
            return "escalated"
        try:
            answer = await self._core.query_provider(target)
        except Exception as exc:  # the core is unreachable or refused: asked again on the next run
            logger.warning("recon late-success query failed", case_id=str(row["id"]), error=type(exc).__name__)
            return "error"
        if answer is None:
            await self._escalate(row["id"], "the core has no such payment", now)
            return "escalated"
        if answer.status not in SUCCEEDED_STATUSES and answer.status not in UNFINISHED_STATUSES:
            await self._escalate(row["id"], f"the core says {answer.status}", now)
            return "escalated"
        await self._record(row["id"], answer, now)
        return "confirmed" if answer.status in SUCCEEDED_STATUSES else "pending"

    async def _record(self, case_id: uuid.UUID, answer: CorePayment, now: datetime) -> None:
        async with self._engine.begin() as conn:
            row = await store.lock_case(conn, case_id)
            if row is None or row["status"] != CaseStatus.AWAITING_CORE:
                return
            changed = row["core_status"] != answer.status
            values = {
                "query_attempts": row["query_attempts"] + 1,
                "last_query_at": now,
                "core_status": answer.status,
            }
            await store.update_case(conn, case_id, values)
            if changed:  # one audit record per new answer, not one per poll
                await self._audit.append(
                    conn,
                    at=now,
                    actor=SYSTEM,
                    role=SYSTEM,
                    action=Action.QUERY.value,
                    case_id=case_id,
                    before=CaseStatus.AWAITING_CORE.value,
                    after=CaseStatus.AWAITING_CORE.value,
                    correlation_id=get_correlation_id(),
                    details={"core_status": answer.status},
                )

    async def _escalate(self, case_id: uuid.UUID, why: str, now: datetime) -> None:
        async with self._engine.begin() as conn:
            row = await store.lock_case(conn, case_id)
            if row is None or row["status"] != CaseStatus.AWAITING_CORE:
                return
            await store.update_case(conn, case_id, {"status": CaseStatus.OPEN.value, "updated_at": now})
            await self._audit.append(
                conn,
                at=now,
                actor=SYSTEM,
                role=SYSTEM,
                action=Action.ESCALATE.value,
                case_id=case_id,
                before=CaseStatus.AWAITING_CORE.value,
                after=CaseStatus.OPEN.value,
                correlation_id=get_correlation_id(),
                details={"why": why},
            )
        if self._metrics:
            self._metrics.action(Action.ESCALATE.value)
        logger.info("recon case escalated to people", case_id=str(case_id), why=why)
