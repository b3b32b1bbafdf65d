"""Kora's side of the reconciliation in the service's database: the latest state of each
provider payment (`recon_payments`), the stored lines of a report and the results of its
latest match run. Functions on a connection: the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.reconciliation.adapters.bulk import insert_rows, select_rows
from kora.reconciliation.adapters.tables import recon_payments, recon_report_lines, recon_reports, recon_results
from kora.reconciliation.domain.matching import InternalTxn, MatchResult
from kora.reconciliation.domain.report import Direction, LineStatus, LineType, ReportLine

_DETAIL_MAX = 300
_STATUSES = {status.value: status for status in LineStatus}
_TYPES = {kind.value: kind for kind in LineType}
_DIRECTIONS = {direction.value: direction for direction in Direction}
_LINE_COLUMNS = (
    "line_number", "provider_txn_id", "our_reference", "provider_parent_id", "occurred_at", "status", "type",
    "amount", "direction", "fee", "net", "currency",
)  # fmt: skip
_PAYMENT_COLUMNS = (
    "payment_id", "provider", "provider_ref", "our_reference", "type", "status", "amount", "fee", "currency",
    "captured_at", "settlement_due", "captured_amount",
)  # fmt: skip
_RESULT_COLUMNS = (
    "report_id", "line_number", "payment_id", "outcome", "reason", "auto_resolution", "detail", "created_at",
    "amount", "currency",
)  # fmt: skip


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
    """Kora's payments of ``provider``, by payment id (read in chunks: a provider has many)."""
    p = recon_payments
    query = sa.select(*(p.c[name] for name in _PAYMENT_COLUMNS)).where(p.c.provider == provider)
    shared: dict[str, str] = {}  # one str object per distinct type, status, currency...
    found: list[InternalTxn] = []
    async for rows in select_rows(conn, query.order_by(p.c.payment_id)):
        found.extend(_internal(row, shared) for row in rows)
    return found


async def payments_for_report(
    conn: AsyncConnection,
    provider: str,
    report_id: uuid.UUID,
    *,
    captured_from: datetime,
    captured_to: datetime,
) -> list[InternalTxn]:
    """Kora's payments of ``provider`` that report ``report_id`` is expected to list: those
    captured in [captured_from, captured_to) and not already listed by a line of another report
    (a payment captured near a cut-off is reported once, on one day), plus every payment a line
    of this report names (by the provider's id, the original's id or our reference), whenever it
    was captured (a late line still matches). Read in chunks, by payment id."""
    p, lines, res = recon_payments, recon_report_lines, recon_results
    this_report = lines.c.report_id == report_id
    named = sa.or_(
        p.c.provider_ref.in_(sa.select(lines.c.provider_txn_id).where(this_report)),
        p.c.provider_ref.in_(
            sa.select(lines.c.provider_parent_id).where(this_report, lines.c.provider_parent_id.is_not(None))
        ),
        p.c.our_reference.in_(sa.select(lines.c.our_reference).where(this_report, lines.c.our_reference.is_not(None))),
    )
    listed_elsewhere = (
        sa.exists()
        .where(res.c.payment_id == p.c.payment_id, res.c.report_id != report_id, res.c.line_number.is_not(None))
        .correlate(p)
    )
    due_here = sa.and_(p.c.captured_at >= captured_from, p.c.captured_at < captured_to, ~listed_elsewhere)
    query = sa.select(*(p.c[name] for name in _PAYMENT_COLUMNS)).where(
        p.c.provider == provider, sa.or_(due_here, named)
    )
    shared: dict[str, str] = {}
    found: list[InternalTxn] = []
    async for rows in select_rows(conn, query.order_by(p.c.payment_id)):
        found.extend(_internal(row, shared) for row in rows)
    return found


async def report_span(conn: AsyncConnection, report_id: uuid.UUID) -> tuple[Any, datetime | None, datetime | None]:
    """The report's day (None when not given at import) and the earliest and latest time of its
    lines (None when it has none)."""
    day = (await conn.execute(sa.select(recon_reports.c.report_day).where(recon_reports.c.id == report_id))).scalar()
    lines = recon_report_lines
    first, last = (
        await conn.execute(
            sa.select(sa.func.min(lines.c.occurred_at), sa.func.max(lines.c.occurred_at)).where(
                lines.c.report_id == report_id
            )
        )
    ).one()
    return day, _aware(first), _aware(last)


def _aware(at: datetime | None) -> datetime | None:
    return at if at is None or at.tzinfo is not None else at.replace(tzinfo=UTC)


async def lock_report(conn: AsyncConnection, report_id: uuid.UUID) -> str | None:
    """The report's provider, its row locked until the transaction ends (PostgreSQL), so two
    runs of one report take turns; None for an unknown report."""
    query = sa.select(recon_reports.c.provider).where(recon_reports.c.id == report_id).with_for_update()
    found = (await conn.execute(query)).scalar_one_or_none()
    return None if found is None else str(found)


async def report_lines(conn: AsyncConnection, report_id: uuid.UUID) -> list[ReportLine]:
    """The report's stored lines in line order (read in chunks)."""
    lines = recon_report_lines
    query = sa.select(*(lines.c[name] for name in _LINE_COLUMNS)).where(lines.c.report_id == report_id)
    shared: dict[Any, Any] = {}  # one object per distinct currency, time...
    found: list[ReportLine] = []
    async for rows in select_rows(conn, query.order_by(lines.c.line_number)):
        found.extend(_line(row, shared) for row in rows)
    return found


async def replace_results(
    conn: AsyncConnection, report_id: uuid.UUID, results: Sequence[MatchResult], *, at: datetime
) -> None:
    """The report's results become ``results``: those of an earlier run are deleted."""
    if at.tzinfo is None:  # COPY skips UtcDateTime's own check
        raise ValueError("naive datetime refused: use timezone-aware UTC")
    await conn.execute(sa.delete(recon_results).where(recon_results.c.report_id == report_id))
    if results:
        await insert_rows(conn, recon_results, _RESULT_COLUMNS, (_result_row(report_id, r, at) for r in results))


def _result_row(report_id: uuid.UUID, result: MatchResult, at: datetime) -> tuple[Any, ...]:
    notes = [result.detail] if result.detail else []
    if len(result.reasons) > 1:
        notes.append("reasons: " + ",".join(reason.value for reason in result.reasons))
    if result.matched_by is not None:
        notes.append(f"matched by {result.matched_by.value}")
    about = result.line if result.line is not None else result.internal
    return (
        report_id,
        None if result.line is None else result.line.line_number,
        None if result.internal is None else result.internal.payment_id,
        result.outcome.value,
        None if result.reason is None else result.reason.value,
        result.auto_resolution.value,
        "; ".join(notes)[:_DETAIL_MAX],
        at,
        None if about is None else about.amount,
        None if about is None else about.currency,
    )


def _internal(row: Sequence[Any], shared: dict[str, str]) -> InternalTxn:
    payment_id, provider, provider_ref, our_reference, kind, status, amount, fee, code, captured, due, captured_amt = (
        row
    )
    return InternalTxn(
        payment_id=payment_id,
        provider=shared.setdefault(provider, provider),
        provider_ref=provider_ref,
        # Kora's reference is usually the payment id itself: one string, not two equal ones.
        our_reference=payment_id if our_reference == payment_id else our_reference,
        type=shared.setdefault(kind, kind),
        status=shared.setdefault(status, status),
        amount=amount,
        fee=fee,
        currency=shared.setdefault(code, code),
        captured_at=None if captured is None else _utc(captured),
        settlement_due=None if due is None else _utc(due),
        captured_amount=captured_amt,
    )


def _line(row: Sequence[Any], shared: dict[Any, Any]) -> ReportLine:
    number, txn_id, reference, parent, occurred_at, status, kind, amount, direction, fee, net, code = row
    occurred_at = _utc(occurred_at)
    return ReportLine(
        line_number=number,
        provider_txn_id=txn_id,
        our_reference=reference,
        provider_parent_id=parent,
        occurred_at=shared.setdefault(occurred_at, occurred_at),  # many lines share a minute
        status=_STATUSES[status],
        type=_TYPES[kind],
        amount=amount,
        direction=None if direction is None else _DIRECTIONS[direction],
        fee=fee,
        net=net,
        currency=shared.setdefault(code, code),
    )


def _utc(at: datetime) -> datetime:
    """What UtcDateTime gives on a read: asyncpg's timestamptz values come in UTC already."""
    return at if at.tzinfo is UTC else at.astimezone(UTC)
