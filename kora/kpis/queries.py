"""The SQL read side of the KPIs: exact aggregates over the core's database, on SQLite and
PostgreSQL alike, inside one read transaction (one snapshot) the caller opens.

This module only reads. Its sources are the payments module's tables (`payments`,
`payment_status_history`, `payment_flags`, the last two written from reconciliation's outcome
events by the `settlement` consumer), the audit trail's reroute records, and the events KPI
projection (`kpi_daily_payments`, `kpi_daily_customers`). It never reads the reconciliation
service's database: what reconciliation decided reaches the core only as events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.audit.adapters.tables import audit_log
from kora.events.consumers.tables import kpi_daily_customers, kpi_daily_payments
from kora.kpis.domain import FAILED_STATUS, PERCENTILES, KpiRange
from kora.payments.adapters.tables import payment_flags, payment_status_history, payments

RECONCILIATION_ACTOR = "reconciliation"  # the actor the `settlement` consumer settles as
RECONCILIATION_SOURCE = "reconciliation"  # payment_flags.source of reconciliation's mismatches
REROUTED_ACTION = "payment.%.rerouted"


@dataclass(frozen=True, slots=True)
class CohortRow:
    """Payments created in the range, grouped: how many, for how much (what moved: the captured
    amount when known), fees, by type, currency, provider (None: internal), status and, for the
    failed, failure code."""

    payment_type: str
    currency: str
    provider: str | None
    status: str
    failure_code: str | None
    count: int
    amount: int
    fees: int


@dataclass(frozen=True, slots=True)
class DelayRow:
    """Settlement delays (captured → settled, whole seconds) of one provider's payments settled
    in the range: exact nearest-rank percentiles, and how many settled after they were due."""

    provider: str
    settled: int
    percentiles: dict[int, int]
    max_seconds: int
    late: int


@dataclass(frozen=True, slots=True)
class UnsettledRow:
    provider: str
    payment_type: str
    currency: str
    count: int
    amount: int
    overdue_count: int
    overdue_amount: int
    oldest_captured_at: datetime | None


@dataclass(frozen=True, slots=True)
class SettledRow:
    provider: str
    currency: str
    by_reconciliation: bool
    count: int
    amount: int


@dataclass(frozen=True, slots=True)
class FlagRow:
    outcome: str
    reason: str | None
    currency: str | None
    payments: int
    amount: int


@dataclass(frozen=True, slots=True)
class Reroute:
    from_provider: str
    to_provider: str
    count: int


@dataclass(frozen=True, slots=True)
class DailyRow:
    day: str
    payment_type: str
    currency: str
    status: str
    count: int
    amount: int
    fees: int


async def cohort(conn: AsyncConnection, window: KpiRange) -> list[CohortRow]:
    p = payments
    failure = sa.case((p.c.status == FAILED_STATUS, p.c.failure_code), else_=None).label("failure_code")
    moved = sa.func.coalesce(p.c.captured_amount, p.c.amount)
    query = (
        sa.select(
            p.c.type,
            p.c.currency,
            p.c.provider,
            p.c.status,
            failure,
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(moved), 0).label("amount"),
            sa.func.coalesce(sa.func.sum(p.c.fee), 0).label("fees"),
        )
        .where(p.c.created_at >= window.start, p.c.created_at < window.end)
        .group_by(p.c.type, p.c.currency, p.c.provider, p.c.status, failure)
    )
    rows = (await conn.execute(query)).all()
    return [
        CohortRow(
            payment_type=str(r.type).lower(),
            currency=r.currency,
            provider=r.provider,
            status=r.status,
            failure_code=r.failure_code,
            count=int(r.n),
            amount=int(r.amount),
            fees=int(r.fees),
        )
        for r in rows
    ]


def _seconds_between(conn: AsyncConnection, later: Any, earlier: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.round(sa.extract("epoch", later - earlier)), sa.BigInteger)
    # SQLite stores UTC datetimes as ISO text: julianday() reads them.
    return sa.cast(sa.func.round((sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0), sa.Integer)


async def settlement_delays(conn: AsyncConnection, window: KpiRange) -> list[DelayRow]:
    """Nearest-rank percentiles computed in the database (ROW_NUMBER over each provider's delays,
    rank ceil(n * q / 100) in integer arithmetic), so no row leaves it."""
    h, p = payment_status_history, payments
    delay = _seconds_between(conn, h.c.at, p.c.captured_at)
    per_payment = (
        sa.select(
            p.c.provider.label("provider"),
            delay.label("delay"),
            sa.case((sa.and_(p.c.settlement_due.is_not(None), h.c.at > p.c.settlement_due), 1), else_=0).label("late"),
        )
        .join(p, p.c.id == h.c.payment_id)
        .where(
            h.c.status == "SETTLED",
            h.c.at >= window.start,
            h.c.at < window.end,
            p.c.provider.is_not(None),
            p.c.captured_at.is_not(None),
        )
        .subquery()
    )
    ranked = sa.select(
        per_payment.c.provider,
        per_payment.c.delay,
        per_payment.c.late,
        sa.func.row_number().over(partition_by=per_payment.c.provider, order_by=per_payment.c.delay).label("rn"),
        sa.func.count().over(partition_by=per_payment.c.provider).label("n"),
    ).subquery()
    columns = [
        sa.func.max(sa.case((ranked.c.rn == (ranked.c.n * q + 99) // 100, ranked.c.delay), else_=None)).label(f"p{q}")
        for q in PERCENTILES
    ]
    query = (
        sa.select(
            ranked.c.provider,
            ranked.c.n,
            sa.func.max(ranked.c.delay).label("max_delay"),
            sa.func.sum(ranked.c.late).label("late"),
            *columns,
        )
        .group_by(ranked.c.provider, ranked.c.n)
        .order_by(ranked.c.provider)
    )
    rows = (await conn.execute(query)).all()
    return [
        DelayRow(
            provider=r.provider,
            settled=int(r.n),
            percentiles={q: int(getattr(r, f"p{q}")) for q in PERCENTILES},
            max_seconds=int(r.max_delay),
            late=int(r.late),
        )
        for r in rows
    ]


async def unsettled(conn: AsyncConnection, now: datetime) -> list[UnsettledRow]:
    """Captured provider payments not settled yet, as of `now` (money still in provider clearing)."""
    p = payments
    moved = sa.func.coalesce(p.c.captured_amount, p.c.amount)
    overdue = sa.and_(p.c.settlement_due.is_not(None), p.c.settlement_due < now)
    query = (
        sa.select(
            p.c.provider,
            p.c.type,
            p.c.currency,
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(moved), 0).label("amount"),
            sa.func.coalesce(sa.func.sum(sa.case((overdue, 1), else_=0)), 0).label("overdue_n"),
            sa.func.coalesce(sa.func.sum(sa.case((overdue, moved), else_=0)), 0).label("overdue_amount"),
            sa.func.min(p.c.captured_at).label("oldest"),
        )
        .where(p.c.status == "CAPTURED", p.c.provider.is_not(None))
        .group_by(p.c.provider, p.c.type, p.c.currency)
        .order_by(p.c.provider, p.c.type, p.c.currency)
    )
    rows = (await conn.execute(query)).all()
    oldest_type = payments.c.captured_at.type
    return [
        UnsettledRow(
            provider=r.provider,
            payment_type=str(r.type).lower(),
            currency=r.currency,
            count=int(r.n),
            amount=int(r.amount),
            overdue_count=int(r.overdue_n),
            overdue_amount=int(r.overdue_amount),
            oldest_captured_at=_as_utc(oldest_type, r.oldest, conn),
        )
        for r in rows
    ]


def _as_utc(column_type: Any, value: Any, conn: AsyncConnection) -> datetime | None:
    """An aggregate (MIN) loses the column's type on SQLite: read it back through it."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    result: datetime | None = column_type.process_result_value(value, conn.dialect)
    return result


async def settled(conn: AsyncConnection, window: KpiRange) -> list[SettledRow]:
    """Provider payments settled in the range, split by who settled them: reconciliation (its
    `settlement_confirmed` events, applied by the `settlement` consumer) or people (ops, CLI)."""
    h, p = payment_status_history, payments
    by_recon = (h.c.actor == RECONCILIATION_ACTOR).label("by_recon")
    query = (
        sa.select(
            p.c.provider,
            p.c.currency,
            by_recon,
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(sa.func.coalesce(p.c.captured_amount, p.c.amount)), 0).label("amount"),
        )
        .join(p, p.c.id == h.c.payment_id)
        .where(h.c.status == "SETTLED", h.c.at >= window.start, h.c.at < window.end, p.c.provider.is_not(None))
        .group_by(p.c.provider, p.c.currency, by_recon)
        .order_by(p.c.provider, p.c.currency)
    )
    rows = (await conn.execute(query)).all()
    return [SettledRow(r.provider, r.currency, bool(r.by_recon), int(r.n), int(r.amount)) for r in rows]


async def mismatch_flags(conn: AsyncConnection, window: KpiRange) -> list[FlagRow]:
    """Reconciliation's confirmed mismatches (its `mismatch_confirmed` events) flagged in the range."""
    f = payment_flags
    query = (
        sa.select(
            f.c.outcome,
            f.c.reason,
            f.c.currency,
            sa.func.count(sa.distinct(f.c.payment_id)).label("n"),
            sa.func.coalesce(sa.func.sum(f.c.amount), 0).label("amount"),
        )
        .where(f.c.source == RECONCILIATION_SOURCE, f.c.flagged_at >= window.start, f.c.flagged_at < window.end)
        .group_by(f.c.outcome, f.c.reason, f.c.currency)
        .order_by(f.c.outcome, f.c.reason, f.c.currency)
    )
    rows = (await conn.execute(query)).all()
    return [FlagRow(r.outcome, r.reason, r.currency, int(r.n), int(r.amount)) for r in rows]


async def flagged_payments(conn: AsyncConnection, window: KpiRange) -> int:
    """Distinct payments reconciliation flagged in the range (a payment may have several cases)."""
    f = payment_flags
    query = sa.select(sa.func.count(sa.distinct(f.c.payment_id))).where(
        f.c.source == RECONCILIATION_SOURCE, f.c.flagged_at >= window.start, f.c.flagged_at < window.end
    )
    return int((await conn.execute(query)).scalar_one())


async def reroutes(conn: AsyncConnection, window: KpiRange) -> list[Reroute]:
    """Provider fallbacks recorded in the range: a provider certainly did not take a payment and
    routing sent it to the next (audited `payment.<type>.rerouted`, ADR 0017)."""
    a = audit_log
    query = sa.select(a.c.details).where(
        a.c.action.like(REROUTED_ACTION), a.c.occurred_at >= window.start, a.c.occurred_at < window.end
    )
    counts: dict[tuple[str, str], int] = {}
    for (details,) in (await conn.execute(query)).all():
        try:
            parsed = json.loads(details)
        except ValueError:
            continue
        key = (str(parsed.get("from_provider", "unknown")), str(parsed.get("to_provider", "unknown")))
        counts[key] = counts.get(key, 0) + 1
    return [Reroute(source, target, n) for (source, target), n in sorted(counts.items())]


async def daily(conn: AsyncConnection, window: KpiRange) -> list[DailyRow]:
    """The KPI projection's per-day counters for the UTC days the range touches."""
    k = kpi_daily_payments
    query = (
        sa.select(
            k.c.day,
            k.c.payment_type,
            k.c.currency,
            k.c.status,
            sa.func.sum(k.c["count"]).label("n"),
            sa.func.sum(k.c.amount).label("amount"),
            sa.func.sum(k.c.fees).label("fees"),
        )
        .where(k.c.day >= window.first_day, k.c.day <= window.last_day)
        .group_by(k.c.day, k.c.payment_type, k.c.currency, k.c.status)
        .order_by(k.c.day, k.c.payment_type, k.c.currency, k.c.status)
    )
    rows = (await conn.execute(query)).all()
    return [
        DailyRow(r.day.isoformat(), r.payment_type, r.currency, r.status, int(r.n), int(r.amount), int(r.fees))
        for r in rows
    ]


async def daily_customers(conn: AsyncConnection, window: KpiRange) -> list[tuple[str, int]]:
    c = kpi_daily_customers
    query = (
        sa.select(c.c.day, c.c.new_customers)
        .where(c.c.day >= window.first_day, c.c.day <= window.last_day)
        .order_by(c.c.day)
    )
    return [(r.day.isoformat(), int(r.new_customers)) for r in (await conn.execute(query)).all()]
