"""Rebuild balances from the entries' amounts alone (not from `balance_after`): the recovery
path after an incident, and an independent cross-check of the recorded balances."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.ledger.adapters.tables import ledger_accounts, ledger_entries

_CREDIT_NORMAL = ("wallet", "merchant", "fee_revenue", "suspense")


async def rebuild_balances(conn: AsyncConnection, *, account_id: str | None = None) -> list[dict[str, Any]]:
    a, e = ledger_accounts, ledger_entries
    credit_normal = a.c.kind.in_(_CREDIT_NORMAL)
    signed = sa.case(
        (sa.and_(credit_normal, e.c.direction == "credit"), e.c.amount),
        (sa.and_(credit_normal, e.c.direction == "debit"), -e.c.amount),
        (e.c.direction == "debit", e.c.amount),
        else_=-e.c.amount,
    )
    latest = ledger_entries.alias("latest")
    last = (
        sa.select(latest.c.balance_after)
        .where(latest.c.account_id == a.c.id)
        .order_by(latest.c.sequence.desc())
        .limit(1)
        .correlate(a)
        .scalar_subquery()
    )
    query = (
        sa.select(
            a.c.id,
            a.c.kind,
            a.c.currency,
            sa.func.coalesce(sa.func.sum(signed), 0).label("rebuilt"),
            sa.func.count(e.c.id).label("entries"),
            last.label("recorded"),
        )
        .select_from(a.outerjoin(e, e.c.account_id == a.c.id))
        .group_by(a.c.id, a.c.kind, a.c.currency)
        .order_by(a.c.id)
    )
    if account_id is not None:
        query = query.where(a.c.id == uuid.UUID(account_id))
    rows = (await conn.execute(query)).all()
    return [
        {
            "account_id": str(r.id),
            "kind": r.kind,
            "currency": r.currency,
            "entries": r.entries,
            "rebuilt_balance": int(r.rebuilt),
            "recorded_balance": int(r.recorded or 0),
            "matches": int(r.rebuilt) == int(r.recorded or 0),
        }
        for r in rows
    ]
