"""`SqlRiskReviews`: the review queue, analysts' decisions and the explanation of a decision,
on the risk tables (`risk_payments`, `risk_reviews`). Ids, amounts, rules and scores only: the
evidence an analyst needs, no phone number or name."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.risk.adapters.tables import risk_payments, risk_reviews
from kora.risk.adapters.transactions import in_transaction
from kora.risk.domain.model import Window

_p = risk_payments.c
_r = risk_reviews.c
DECISIONS = ("approve", "reject")
# Held and not decided yet: an approved provider move stays `held` until its provider answers.
_WAITING = (_p.status == "held", ~sa.exists().where(_r.payment_id == _p.payment_id))


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The review queue now: how many payments wait, and since when the oldest."""

    size: int
    oldest_held_at: datetime | None


def _rules(reasons: Any) -> list[str]:
    return sorted({str(reason.get("rule")) for reason in (reasons or []) if isinstance(reason, dict)})


def _assessment(row: Any) -> dict[str, Any]:
    return {
        "payment_id": row.payment_id,
        "type": row.type,
        "amount": int(row.amount),
        "currency": row.currency,
        "outcome": row.outcome,
        "score": int(row.score),
        "policy_version": row.policy_version,
        "reasons": list(row.reasons or []),
        "rules": _rules(row.reasons),
        "reservation": row.status,
        "assessed_at": row.at.isoformat(),
        "payer_id": row.payer_id,
        "payee_id": row.payee_id,
    }


class SqlRiskReviews:
    """The risk module's reads and writes for people: the queue of held payments (with the
    payer's recent activity as evidence), an analyst's decision, and a decision explained."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def _transaction(self, connection: AsyncConnection | None) -> AbstractAsyncContextManager[AsyncConnection]:
        return in_transaction(self._engine, connection)

    async def record_decision(
        self,
        payment_id: str,
        decision: str,
        *,
        analyst: str,
        note: str | None,
        at: datetime,
        connection: AsyncConnection | None = None,
    ) -> list[str]:
        """Store `decision` (approve|reject) on a held payment with what it was about (policy
        version, rules, score); returns the rules that fired. Once per payment: a second
        decision is ignored (the payments module refuses it before). Raises LookupError when
        risk never assessed the payment."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}")
        async with self._transaction(connection) as conn:
            row = (await conn.execute(sa.select(risk_payments).where(_p.payment_id == payment_id))).one_or_none()
            if row is None:
                raise LookupError("risk never assessed this payment")
            rules = _rules(row.reasons)
            await conn.execute(
                self._insert(risk_reviews)
                .values(
                    payment_id=payment_id,
                    decision=decision,
                    analyst=analyst[:64],
                    note=None if note is None else note[:500],
                    decided_at=at,
                    payment_type=row.type,
                    policy_version=row.policy_version,
                    rules=rules,
                    score=row.score,
                    held_at=row.at,
                )
                .on_conflict_do_nothing(index_elements=["payment_id"])
            )
        return rules

    async def decision(self, payment_id: str, *, connection: AsyncConnection | None = None) -> str | None:
        """The analyst's decision on a payment (approve|reject), or None."""
        query = sa.select(_r.decision).where(_r.payment_id == payment_id)
        if connection is not None:
            return (await connection.execute(query)).scalar()
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar()

    async def queue(self, *, limit: int, after: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
        """Payments waiting for a decision, oldest first (keyset by time and id), each with the
        payer's activity over the last hour and day (counted payments, amounts) as evidence. An
        approved cash-in/out waiting for its provider is no longer in the queue."""
        query = sa.select(risk_payments).where(*_WAITING)
        if after is not None:
            query = query.where(sa.tuple_(_p.at, _p.payment_id) > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
        query = query.order_by(_p.at, _p.payment_id).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            items = []
            for row in rows:
                item = _assessment(row)
                item["payer_activity"] = await self._activity(conn, row.payer_id, row.at, row.payment_id)
                items.append(item)
        return items

    async def _activity(self, conn: AsyncConnection, payer_id: str, at: datetime, payment_id: str) -> dict[str, Any]:
        """The payer's other counted payments over the hour and the day before `at`."""
        activity: dict[str, Any] = {}
        for window in (Window.HOUR, Window.DAY):
            row = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_p.amount), 0)).where(
                        _p.payer_id == payer_id,
                        _p.status.in_(("reserved", "held", "committed")),
                        _p.at > at - window.length,
                        _p.at <= at,
                        _p.payment_id != payment_id,
                    )
                )
            ).one()
            activity[window.value] = {"count": int(row[0]), "amount": int(row[1])}
        distinct = (
            await conn.execute(
                sa.select(sa.func.count(sa.distinct(_p.payee_id))).where(
                    _p.payer_id == payer_id, _p.at > at - Window.DAY.length, _p.at <= at
                )
            )
        ).scalar_one()
        activity["distinct_payees_day"] = int(distinct)
        return activity

    async def explain(self, payment_id: str) -> dict[str, Any] | None:
        """The decision on a payment as support and auditors read it: outcome, score, every
        reason (rule, limit, observed value, window, points), the policy version, the
        reservation's status and the analyst's decision if there was one; None if risk never
        assessed it."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(risk_payments).where(_p.payment_id == payment_id))).one_or_none()
            if row is None:
                return None
            review = (await conn.execute(sa.select(risk_reviews).where(_r.payment_id == payment_id))).one_or_none()
        explained = _assessment(row)
        explained["review"] = (
            None
            if review is None
            else {
                "decision": review.decision,
                "analyst": review.analyst,
                "note": review.note,
                "decided_at": review.decided_at.isoformat(),
            }
        )
        return explained

    async def queue_stats(self) -> QueueStats:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(sa.func.count(), sa.func.min(_p.at)).where(*_WAITING))).one()
        return QueueStats(int(row[0]), row[1])

    async def review_outcomes(self, *, since: datetime | None = None) -> dict[str, dict[str, int]]:
        """Per rule, how many of its reviews were approved (the rule was a false positive) and
        rejected — the input to tuning the policy."""
        query = sa.select(_r.rules, _r.decision)
        if since is not None:
            query = query.where(_r.decided_at >= since)
        outcomes: dict[str, dict[str, int]] = {}
        async with self._engine.connect() as conn:
            for rules, decision in (await conn.execute(query)).all():
                for rule in rules or ["score"]:
                    counts = outcomes.setdefault(str(rule), {"approve": 0, "reject": 0})
                    counts[decision] += 1
        return outcomes
