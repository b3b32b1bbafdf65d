"""The KPI projection the leadership console reads.

Per UTC day (of the event's `occurred_at`), payment type, provider (`internal` when none) and
currency: how many payments reached CAPTURED, SETTLED, FAILED, REVERSED and CHARGED_BACK, for
how much, and the fees of those captured; and per day how many customers registered.

Each event increments the counters (INSERT ... ON CONFLICT DO UPDATE SET count = count +
excluded.count). That is exact because the runtime records the event in `processed_events` in
the same transaction: an event applies once, however often it is delivered. A payment counts
once per status it reaches: one event may carry CAPTURED then SETTLED in its `transitions`.

Amounts are what moved (the captured amount when known, a card capture may be partial) for
every status but FAILED, where nothing moved and the amount asked is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.events.consumers.payload import (
    PAYMENT_STATUS_CHANGED,
    PAYMENT_STATUS_CHANGED_SUBJECT,
    STAFF_ROLES,
    USER_REGISTERED,
    USER_REGISTERED_SUBJECT,
    PaymentChange,
)
from kora.events.consumers.tables import insert_for, kpi_daily_customers, kpi_daily_payments
from kora.events.domain import Envelope
from kora.events.ports import ConsumerSpec

COUNTED_STATUSES = ("CAPTURED", "SETTLED", "FAILED", "REVERSED", "CHARGED_BACK")
INTERNAL = "internal"


class KpiConsumer:
    spec = ConsumerSpec("kpi", (PAYMENT_STATUS_CHANGED_SUBJECT, USER_REGISTERED_SUBJECT))
    handles = frozenset({PAYMENT_STATUS_CHANGED, USER_REGISTERED})

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        day = event.occurred_at.date()  # occurred_at is UTC (envelope_from_json normalises it)
        if (event.type, event.version) == USER_REGISTERED:
            await self._customer(event.payload, day, conn)
        else:
            await self._payment(PaymentChange.of(event.payload), day, conn)

    async def _payment(self, change: PaymentChange, day: date, conn: AsyncConnection) -> None:
        rows = [
            {
                "day": day,
                "payment_type": change.payment_type,
                "provider": change.provider or INTERNAL,
                "currency": change.currency,
                "status": status,
                "count": 1,
                "amount": change.amount if status == "FAILED" else change.moved_amount,
                "fees": change.fee if status == "CAPTURED" else 0,
            }
            for status in change.reached
            if status in COUNTED_STATUSES
        ]
        if not rows:
            return
        k = kpi_daily_payments
        insert = insert_for(conn, k)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["day", "payment_type", "provider", "currency", "status"],
                set_={
                    "count": k.c.count + insert.excluded["count"],
                    "amount": k.c.amount + insert.excluded.amount,
                    "fees": k.c.fees + insert.excluded.fees,
                },
            ),
            rows,
        )

    async def _customer(self, payload: Any, day: date, conn: AsyncConnection) -> None:
        roles = {str(r) for r in payload.get("roles") or ()}
        if "customer" not in roles or roles & STAFF_ROLES:
            return
        c = kpi_daily_customers
        insert = insert_for(conn, c)
        await conn.execute(
            insert.values(day=day, new_customers=1).on_conflict_do_update(
                index_elements=["day"], set_={"new_customers": c.c.new_customers + insert.excluded.new_customers}
            )
        )


@dataclass(frozen=True, slots=True)
class PaymentKpi:
    day: date
    payment_type: str
    provider: str
    currency: str
    status: str
    count: int
    amount: int
    fees: int


@dataclass(frozen=True, slots=True)
class CustomerKpi:
    day: date
    new_customers: int


async def daily_kpis(db: AsyncConnection | AsyncEngine, since: date, until: date) -> list[PaymentKpi]:
    """Payment counters for the days from `since` (included) to `until` (excluded), ordered by
    day, payment type, provider, currency and status."""
    k = kpi_daily_payments
    query = (
        sa.select(k)
        .where(k.c.day >= since, k.c.day < until)
        .order_by(k.c.day, k.c.payment_type, k.c.provider, k.c.currency, k.c.status)
    )
    rows = await _read(db, query)
    return [
        PaymentKpi(
            day=m["day"],
            payment_type=m["payment_type"],
            provider=m["provider"],
            currency=m["currency"],
            status=m["status"],
            count=int(m["count"]),
            amount=int(m["amount"]),
            fees=int(m["fees"]),
        )
        for m in (r._mapping for r in rows)
    ]


async def daily_new_customers(db: AsyncConnection | AsyncEngine, since: date, until: date) -> list[CustomerKpi]:
    """New customers per day from `since` (included) to `until` (excluded); days without any are absent."""
    c = kpi_daily_customers
    rows = await _read(db, sa.select(c).where(c.c.day >= since, c.c.day < until).order_by(c.c.day))
    return [CustomerKpi(r.day, int(r.new_customers)) for r in rows]


async def _read(db: AsyncConnection | AsyncEngine, query: sa.Select[Any]) -> list[sa.Row[Any]]:
    if isinstance(db, AsyncEngine):
        async with db.connect() as conn:
            return list((await conn.execute(query)).all())
    return list((await db.execute(query)).all())
