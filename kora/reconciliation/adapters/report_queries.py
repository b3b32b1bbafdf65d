"""Read-side queries of the reconciliation API: stored reports, the results of their latest
match run, summaries per provider and day. Functions on a connection (the caller owns it);
no line content beyond the parsed fields is read, and never the encrypted blobs.

Definitions (also in docs/operations/reconciliation-api.md):

* a *discrepancy* is a result whose outcome is MISMATCH, MISSING_INTERNAL or MISSING_PROVIDER
  (neither MATCHED nor PENDING);
* the *mismatch rate* is discrepancies / results that are not PENDING (None when there are none);
* the *amount at risk* is the sum of the amounts of the discrepancies, per currency, in minor units;
* the *oldest open item* is the discrepancy of the earliest imported report (then the lowest
  line number, then the lowest result id): what has waited longest for someone;
* the *oldest open case* is the review case not yet resolved or closed (in the queue, or awaiting
  the core's answer) opened first: how long the oldest discrepancy has been waiting for a decision.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.reconciliation.adapters.tables import recon_cases, recon_report_lines, recon_reports, recon_results
from kora.reconciliation.domain.cases import CaseStatus
from kora.reconciliation.domain.matching import Outcome

DISCREPANCIES = (Outcome.MISMATCH.value, Outcome.MISSING_INTERNAL.value, Outcome.MISSING_PROVIDER.value)
MAX_PAGE = 1000


class InvalidCursor(ValueError):
    """A pagination cursor this service did not hand out."""


@dataclass(frozen=True, slots=True)
class ResultFilter:
    report_id: uuid.UUID | None = None
    provider: str | None = None
    day: date | None = None
    outcome: str | None = None
    reason: str | None = None
    payment_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReportHeader:
    id: uuid.UUID
    provider: str
    report_day: date | None
    digest: str
    filename: str
    size: int
    imported_at: datetime
    imported_by: str
    line_count: int
    quarantined_count: int


@dataclass(frozen=True, slots=True)
class OutcomeTotals:
    count: int = 0
    amounts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpenItem:
    report_id: uuid.UUID
    result_id: int
    line_number: int | None
    payment_id: str | None
    outcome: str
    reason: str | None
    since: datetime


@dataclass(frozen=True, slots=True)
class OpenCase:
    case_id: uuid.UUID
    status: str
    outcome: str
    reason: str | None
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class Summary:
    provider: str
    day: date | None
    reports: int
    results: int
    outcomes: dict[str, OutcomeTotals]
    mismatch_rate: float | None
    amount_at_risk: dict[str, int]
    oldest_open: OpenItem | None
    oldest_open_case: OpenCase | None = None


@dataclass(frozen=True, slots=True)
class Risk:
    mismatch_rate: float | None
    amount_at_risk: dict[str, int]


def encode_cursor(result_id: int) -> str:
    return base64.urlsafe_b64encode(f"r:{result_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The last result id of the previous page. Raises InvalidCursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, number = text.partition(":")
        if prefix != "r" or not number.isdigit() or len(number) > 19:
            raise InvalidCursor("unknown cursor")
        return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("unknown cursor") from None


def _header(row: Any) -> ReportHeader:
    return ReportHeader(
        id=row["id"],
        provider=row["provider"],
        report_day=row["report_day"],
        digest=row["digest"],
        filename=row["filename"],
        size=row["size"],
        imported_at=row["imported_at"],
        imported_by=row["imported_by"],
        line_count=row["line_count"],
        quarantined_count=row["quarantined_count"],
    )


_HEADER_COLUMNS = [c for c in recon_reports.c if c.name != "content" and c.name != "key_id"]


async def list_reports(
    conn: AsyncConnection,
    *,
    provider: str | None,
    day: date | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[ReportHeader]:
    """Report headers, newest import first; ``before`` is the (imported_at, id) of the last one
    of the previous page."""
    r = recon_reports
    query = sa.select(*_HEADER_COLUMNS)
    if provider is not None:
        query = query.where(r.c.provider == provider)
    if day is not None:
        query = query.where(r.c.report_day == day)
    if before is not None:
        at, report_id = before
        query = query.where(sa.or_(r.c.imported_at < at, sa.and_(r.c.imported_at == at, r.c.id < report_id)))
    query = query.order_by(r.c.imported_at.desc(), r.c.id.desc()).limit(min(limit, MAX_PAGE))
    return [_header(row) for row in (await conn.execute(query)).mappings()]


async def report_header(conn: AsyncConnection, report_id: uuid.UUID) -> ReportHeader | None:
    row = (await conn.execute(sa.select(*_HEADER_COLUMNS).where(recon_reports.c.id == report_id))).mappings().first()
    return None if row is None else _header(row)


async def outcome_counts(conn: AsyncConnection, report_id: uuid.UUID) -> dict[str, int]:
    """The count of each outcome of the report's latest match run (every outcome named)."""
    res = recon_results
    query = sa.select(res.c.outcome, sa.func.count()).where(res.c.report_id == report_id).group_by(res.c.outcome)
    counts = {outcome.value: 0 for outcome in Outcome}
    for outcome, count in await conn.execute(query):
        counts[outcome] = count
    return counts


def _filtered(query: sa.Select[Any], where: ResultFilter) -> sa.Select[Any]:
    res, rep = recon_results, recon_reports
    if where.report_id is not None:
        query = query.where(res.c.report_id == where.report_id)
    if where.provider is not None:
        query = query.where(rep.c.provider == where.provider)
    if where.day is not None:
        query = query.where(rep.c.report_day == where.day)
    if where.outcome is not None:
        query = query.where(res.c.outcome == where.outcome)
    if where.reason is not None:
        query = query.where(res.c.reason == where.reason)
    if where.payment_id is not None:
        query = query.where(res.c.payment_id == where.payment_id)
    return query


LINE_COLUMNS = (
    "id",
    "report_id",
    "provider",
    "report_day",
    "line_number",
    "payment_id",
    "outcome",
    "reason",
    "auto_resolution",
    "amount",
    "currency",
    "provider_txn_id",
    "our_reference",
    "occurred_at",
    "line_status",
    "line_type",
    "detail",
    "created_at",
)


async def result_page(
    conn: AsyncConnection, where: ResultFilter, *, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Results (with their report's provider and day and their line's parsed fields) in id
    order, the ``limit`` after result id ``after``. Keys: LINE_COLUMNS."""
    res, rep, line = recon_results, recon_reports, recon_report_lines
    query = (
        sa.select(
            res.c.id,
            res.c.report_id,
            rep.c.provider,
            rep.c.report_day,
            res.c.line_number,
            res.c.payment_id,
            res.c.outcome,
            res.c.reason,
            res.c.auto_resolution,
            res.c.amount,
            res.c.currency,
            line.c.provider_txn_id,
            line.c.our_reference,
            line.c.occurred_at,
            line.c.status.label("line_status"),
            line.c.type.label("line_type"),
            res.c.detail,
            res.c.created_at,
        )
        .select_from(
            res.join(rep, rep.c.id == res.c.report_id).outerjoin(
                line, sa.and_(line.c.report_id == res.c.report_id, line.c.line_number == res.c.line_number)
            )
        )
        .order_by(res.c.id)
        .limit(min(limit, MAX_PAGE))
    )
    if after is not None:
        query = query.where(res.c.id > after)
    return [dict(row) for row in (await conn.execute(_filtered(query, where))).mappings()]


async def summaries(conn: AsyncConnection, *, provider: str | None, day: date | None) -> list[Summary]:
    """One summary per (provider, report day) with stored reports, ordered by provider then day
    (reports without a day last)."""
    res, rep = recon_results, recon_reports
    where = ResultFilter(provider=provider, day=day)
    report_counts = _filtered(
        sa.select(rep.c.provider, rep.c.report_day, sa.func.count()).group_by(rep.c.provider, rep.c.report_day),
        where,
    )
    totals = _filtered(
        sa.select(
            rep.c.provider, rep.c.report_day, res.c.outcome, res.c.currency, sa.func.count(), sa.func.sum(res.c.amount)
        )
        .select_from(res.join(rep, rep.c.id == res.c.report_id))
        .group_by(rep.c.provider, rep.c.report_day, res.c.outcome, res.c.currency),
        where,
    )
    reports: dict[tuple[str, date | None], int] = {(p, d): n for p, d, n in await conn.execute(report_counts)}
    outcomes: dict[tuple[str, date | None], dict[str, tuple[int, dict[str, int]]]] = {}
    for p, d, outcome, currency, count, amount in await conn.execute(totals):
        per = outcomes.setdefault((p, d), {})
        n, amounts = per.get(outcome, (0, {}))
        if currency is not None and amount is not None:
            amounts[currency] = amounts.get(currency, 0) + int(amount)
        per[outcome] = (n + count, amounts)
    oldest = await _oldest_open(conn, where)
    oldest_cases = await _oldest_open_cases(conn, where)
    out = []
    for key in sorted(reports, key=lambda k: (k[0], k[1] is None, k[1] or date.min)):
        per = outcomes.get(key, {})
        risk = _risk(per)
        out.append(
            Summary(
                provider=key[0],
                day=key[1],
                reports=reports[key],
                results=sum(n for n, _ in per.values()),
                outcomes={o.value: OutcomeTotals(*per.get(o.value, (0, {}))) for o in Outcome},
                mismatch_rate=risk.mismatch_rate,
                amount_at_risk=risk.amount_at_risk,
                oldest_open=oldest.get(key),
                oldest_open_case=oldest_cases.get(key),
            )
        )
    return out


def _risk(per_outcome: dict[str, tuple[int, dict[str, int]]]) -> Risk:
    decided = sum(n for outcome, (n, _) in per_outcome.items() if outcome != Outcome.PENDING.value)
    open_ = sum(n for outcome, (n, _) in per_outcome.items() if outcome in DISCREPANCIES)
    at_risk: dict[str, int] = {}
    for outcome, (_, amounts) in per_outcome.items():
        if outcome in DISCREPANCIES:
            for currency, amount in amounts.items():
                at_risk[currency] = at_risk.get(currency, 0) + amount
    return Risk(open_ / decided if decided else None, dict(sorted(at_risk.items())))


async def provider_risk(conn: AsyncConnection, provider: str) -> Risk:
    """Mismatch rate and amount at risk over every stored report of ``provider``."""
    res, rep = recon_results, recon_reports
    query = (
        sa.select(res.c.outcome, res.c.currency, sa.func.count(), sa.func.sum(res.c.amount))
        .select_from(res.join(rep, rep.c.id == res.c.report_id))
        .where(rep.c.provider == provider)
        .group_by(res.c.outcome, res.c.currency)
    )
    per: dict[str, tuple[int, dict[str, int]]] = {}
    for outcome, currency, count, amount in await conn.execute(query):
        n, amounts = per.get(outcome, (0, {}))
        if currency is not None and amount is not None:
            amounts[currency] = amounts.get(currency, 0) + int(amount)
        per[outcome] = (n + count, amounts)
    return _risk(per)


async def providers_with_reports(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(sa.select(recon_reports.c.provider).distinct())).scalars())


async def _oldest_open(conn: AsyncConnection, where: ResultFilter) -> dict[tuple[str, date | None], OpenItem]:
    res, rep = recon_results, recon_reports
    rank = (
        sa.func.row_number()
        .over(
            partition_by=(rep.c.provider, rep.c.report_day),
            order_by=(rep.c.imported_at, res.c.line_number.is_(None), res.c.line_number, res.c.id),
        )
        .label("rank")
    )
    ranked = _filtered(
        sa.select(
            rep.c.provider,
            rep.c.report_day,
            rep.c.imported_at,
            res.c.id,
            res.c.report_id,
            res.c.line_number,
            res.c.payment_id,
            res.c.outcome,
            res.c.reason,
            rank,
        )
        .select_from(res.join(rep, rep.c.id == res.c.report_id))
        .where(res.c.outcome.in_(DISCREPANCIES)),
        where,
    ).subquery()
    rows = await conn.execute(sa.select(ranked).where(ranked.c.rank == 1))
    return {
        (row.provider, row.report_day): OpenItem(
            report_id=row.report_id,
            result_id=row.id,
            line_number=row.line_number,
            payment_id=row.payment_id,
            outcome=row.outcome,
            reason=row.reason,
            since=row.imported_at,
        )
        for row in rows
    }


async def _oldest_open_cases(conn: AsyncConnection, where: ResultFilter) -> dict[tuple[str, date | None], OpenCase]:
    """Per (provider, report day), the unfinished case opened first. Only the report filters
    apply (a case is about a result, but outlives the run that opened it)."""
    c, rep = recon_cases, recon_reports
    rank = (
        sa.func.row_number()
        .over(partition_by=(rep.c.provider, rep.c.report_day), order_by=(c.c.opened_at, c.c.id))
        .label("rank")
    )
    query = (
        sa.select(rep.c.provider, rep.c.report_day, c.c.id, c.c.status, c.c.outcome, c.c.reason, c.c.opened_at, rank)
        .select_from(c.join(rep, rep.c.id == c.c.report_id))
        .where(c.c.status.not_in([s.value for s in CaseStatus if s.is_final]))
    )
    if where.report_id is not None:
        query = query.where(c.c.report_id == where.report_id)
    if where.provider is not None:
        query = query.where(rep.c.provider == where.provider)
    if where.day is not None:
        query = query.where(rep.c.report_day == where.day)
    ranked = query.subquery()
    rows = await conn.execute(sa.select(ranked).where(ranked.c.rank == 1))
    return {
        (row.provider, row.report_day): OpenCase(row.id, row.status, row.outcome, row.reason, row.opened_at)
        for row in rows
    }


def by_outcome_reason(outcomes: Sequence[tuple[str, str | None]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for outcome, reason in outcomes:
        key = (outcome, reason or "")
        counts[key] = counts.get(key, 0) + 1
    return counts


def encode_report_cursor(header: ReportHeader) -> str:
    text = f"p:{header.imported_at.isoformat()}|{header.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_report_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (imported_at, id) of the last report of the previous page. Raises InvalidCursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, rest = text.partition(":")
        at, _, report_id = rest.partition("|")
        parsed = datetime.fromisoformat(at)
        if prefix != "p" or parsed.tzinfo is None:
            raise InvalidCursor("unknown cursor")
        return parsed, uuid.UUID(report_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("unknown cursor") from None
