"""Kora's side of the reconciliation in the service's database: the latest state of each
provider payment (`recon_payments`), the stored lines of a report and the results of its
latest match run. Functions on a connection: the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.reconciliation.adapters.tables import recon_payments, recon_report_lines, recon_reports, recon_results
from kora.reconciliation.domain.matching import InternalTxn, MatchResult
from kora.reconciliation.domain.report import Direction, LineStatus, LineType, ReportLine

_DETAIL_MAX = 300


async def upsert_payment(conn: AsyncConnection, txn: InternalTxn, *, sequence: int, at: datetime) -> None:
    """Store ``txn`` as the payment's state unless a newer one (a higher ``sequence``) is stored."""
    p = recon_payments
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(p)
    row = {
        "payment_id": txn.payment_id,
        "provider": txn.provider,
        "provider_ref": txn.provider_ref,
        "our_reference": txn.our_reference,
        "type": txn.type,
        "status": txn.status,
        "amount": txn.amount,
        "fee": txn.fee,
        "currency": txn.currency,
        "captured_amount": txn.captured_amount,
        "captured_at": txn.captured_at,
        "settlement_due": txn.settlement_due,
        "sequence": sequence,
        "updated_at": at,
    }
    await conn.execute(
        insert.values(row).on_conflict_do_update(
            index_elements=["payment_id"],
            set_={name: insert.excluded[name] for name in row if name != "payment_id"},
            where=p.c.sequence < insert.excluded.sequence,
        )
    )


async def payments_of(conn: AsyncConnection, provider: str) -> list[InternalTxn]:
    p = recon_payments
    rows = await conn.execute(sa.select(p).where(p.c.provider == provider).order_by(p.c.payment_id))
    return [_internal(row) for row in rows.mappings()]


async def lock_report(conn: AsyncConnection, report_id: uuid.UUID) -> str | None:
    """The report's provider, its row locked until the transaction ends (PostgreSQL), so two
    runs of one report take turns; None for an unknown report."""
    query = sa.select(recon_reports.c.provider).where(recon_reports.c.id == report_id).with_for_update()
    found = (await conn.execute(query)).scalar_one_or_none()
    return None if found is None else str(found)


async def report_lines(conn: AsyncConnection, report_id: uuid.UUID) -> list[ReportLine]:
    lines = recon_report_lines
    query = sa.select(lines).where(lines.c.report_id == report_id).order_by(lines.c.line_number)
    return [_line(row) for row in (await conn.execute(query)).mappings()]


async def replace_results(
    conn: AsyncConnection, report_id: uuid.UUID, results: Sequence[MatchResult], *, at: datetime
) -> None:
    """The report's results become ``results``: those of an earlier run are deleted."""
    await conn.execute(sa.delete(recon_results).where(recon_results.c.report_id == report_id))
    rows = [_result_row(report_id, result, at) for result in results]
    if rows:
        await conn.execute(sa.insert(recon_results), rows)


def _result_row(report_id: uuid.UUID, result: MatchResult, at: datetime) -> dict[str, Any]:
    notes = [result.detail] if result.detail else []
    if len(result.reasons) > 1:
        notes.append("reasons: " + ",".join(reason.value for reason in result.reasons))
    if result.matched_by is not None:
        notes.append(f"matched by {result.matched_by.value}")
    about = result.line if result.line is not None else result.internal
    return {
        "report_id": report_id,
        "line_number": None if result.line is None else result.line.line_number,
        "payment_id": None if result.internal is None else result.internal.payment_id,
        "outcome": result.outcome.value,
        "reason": None if result.reason is None else result.reason.value,
        "auto_resolution": result.auto_resolution.value,
        "detail": "; ".join(notes)[:_DETAIL_MAX],
        "created_at": at,
        "amount": None if about is None else about.amount,
        "currency": None if about is None else about.currency,
    }


def _internal(row: Any) -> InternalTxn:
    return InternalTxn(
        payment_id=row["payment_id"],
        provider=row["provider"],
        provider_ref=row["provider_ref"],
        our_reference=row["our_reference"],
        type=row["type"],
        status=row["status"],
        amount=row["amount"],
        fee=row["fee"],
        currency=row["currency"],
        captured_at=row["captured_at"],
        settlement_due=row["settlement_due"],
        captured_amount=row["captured_amount"],
    )


def _line(row: Any) -> ReportLine:
    return ReportLine(
        line_number=row["line_number"],
        provider_txn_id=row["provider_txn_id"],
        our_reference=row["our_reference"],
        provider_parent_id=row["provider_parent_id"],
        occurred_at=row["occurred_at"],
        status=LineStatus(row["status"]),
        type=LineType(row["type"]),
        amount=row["amount"],
        direction=None if row["direction"] is None else Direction(row["direction"]),
        fee=row["fee"],
        net=row["net"],
        currency=row["currency"],
    )
