"""The results of the latest match runs: summary per provider and day, lines (keyset pages),
and the same lines as a CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kora.observability import get_tracer
from kora.reconciliation.adapters.report_queries import (
    LINE_COLUMNS,
    MAX_PAGE,
    OpenItem,
    ResultFilter,
    decode_cursor,
    encode_cursor,
    result_page,
    summaries,
)
from kora.reconciliation.domain.matching import Outcome, Reason
from kora.reconciliation.http.container import ReconServices, recon_services
from kora.reconciliation.http.problems import problem_responses
from kora.reconciliation.http.routes.reports import Reader
from kora.reconciliation.service.observed import refresh_risk

router = APIRouter(prefix="/v1/recon", tags=["results"])
_tracer = get_tracer("kora.reconciliation")
_AUTH = ("not_authenticated", "invalid_token", "forbidden")
CSV_BATCH = 1000


class OutcomeTotalsOut(BaseModel):
    count: int
    amounts: dict[str, int]


class OpenItemOut(BaseModel):
    kind: str = "result"
    report_id: uuid.UUID
    result_id: int
    line_number: int | None
    payment_id: str | None
    outcome: str
    reason: str | None
    since: datetime


class OpenCaseOut(BaseModel):
    case_id: uuid.UUID
    status: str
    outcome: str
    reason: str | None
    opened_at: datetime


class SummaryOut(BaseModel):
    provider: str
    day: date | None
    reports: int
    results: int
    outcomes: dict[str, OutcomeTotalsOut]
    mismatch_rate: float | None
    amount_at_risk: dict[str, int]
    oldest_open: OpenItemOut | None
    oldest_open_case: OpenCaseOut | None = Field(
        default=None, description="The review case not yet resolved or closed that was opened first."
    )


class SummaryPage(BaseModel):
    summaries: list[SummaryOut]


class LineOut(BaseModel):
    id: int
    report_id: uuid.UUID
    provider: str
    report_day: date | None
    line_number: int | None
    payment_id: str | None
    outcome: str
    reason: str | None
    auto_resolution: str
    amount: int | None
    currency: str | None
    provider_txn_id: str | None
    our_reference: str | None
    occurred_at: datetime | None
    line_status: str | None
    line_type: str | None
    detail: str
    created_at: datetime


class LinePage(BaseModel):
    items: list[LineOut]
    next_cursor: str | None


def _open(item: OpenItem | None) -> OpenItemOut | None:
    if item is None:
        return None
    return OpenItemOut(
        report_id=item.report_id,
        result_id=item.result_id,
        line_number=item.line_number,
        payment_id=item.payment_id,
        outcome=item.outcome,
        reason=item.reason,
        since=item.since,
    )


@router.get("/summary", response_model=SummaryPage, responses=problem_responses(*_AUTH, "validation_error"))
async def get_summary(
    request: Request,
    _reader: Reader,
    provider: Annotated[str | None, Query(max_length=32)] = None,
    day: date | None = None,
) -> SummaryPage:
    """Per provider and report day: reports, results, count and amounts (per currency, minor
    units) of each outcome, the mismatch rate (discrepancies / results not PENDING), the amount
    at risk (amounts of results neither MATCHED nor PENDING, per currency) and the oldest open
    item (the discrepancy of the earliest imported report)."""
    services = recon_services(request)
    with _tracer.start_as_current_span("recon.query.summary"):
        async with services.engine.connect() as conn:
            found = await summaries(conn, provider=provider, day=day)
    for name in sorted({s.provider for s in found}):
        await refresh_risk(services.engine, services.metrics, name)
    return SummaryPage(
        summaries=[
            SummaryOut(
                provider=s.provider,
                day=s.day,
                reports=s.reports,
                results=s.results,
                outcomes={k: OutcomeTotalsOut(count=v.count, amounts=v.amounts) for k, v in s.outcomes.items()},
                mismatch_rate=s.mismatch_rate,
                amount_at_risk=s.amount_at_risk,
                oldest_open=_open(s.oldest_open),
                oldest_open_case=None if s.oldest_open_case is None else OpenCaseOut(**asdict(s.oldest_open_case)),
            )
            for s in found
        ]
    )


def _filter(
    report_id: uuid.UUID | None,
    provider: str | None,
    day: date | None,
    outcome: Outcome | None,
    reason: Reason | None,
    payment_id: str | None,
) -> ResultFilter:
    return ResultFilter(
        payment_id=payment_id,
        report_id=report_id,
        provider=provider,
        day=day,
        outcome=None if outcome is None else outcome.value,
        reason=None if reason is None else reason.value,
    )


@router.get(
    "/lines", response_model=LinePage, responses=problem_responses(*_AUTH, "invalid_cursor", "validation_error")
)
async def get_lines(
    request: Request,
    _reader: Reader,
    report_id: uuid.UUID | None = None,
    provider: Annotated[str | None, Query(max_length=32)] = None,
    day: date | None = None,
    outcome: Outcome | None = None,
    reason: Reason | None = None,
    payment_id: Annotated[str | None, Query(max_length=64, description="Kora's payment id")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> LinePage:
    """Results of the latest match runs in a stable order (result id), `limit` at a time:
    pass `next_cursor` back as `cursor` for the next page (null on the last one)."""
    services = recon_services(request)
    after = decode_cursor(cursor) if cursor else None
    with _tracer.start_as_current_span("recon.query.lines"):
        async with services.engine.connect() as conn:
            rows = await result_page(
                conn, _filter(report_id, provider, day, outcome, reason, payment_id), limit=limit + 1, after=after
            )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]["id"]) if len(rows) > limit else None
    return LinePage(items=[LineOut(**row) for row in page], next_cursor=next_cursor)


@router.get(
    "/lines.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV with a header row"}, **problem_responses(*_AUTH)},
)
async def get_lines_csv(
    request: Request,
    _reader: Reader,
    report_id: uuid.UUID | None = None,
    provider: Annotated[str | None, Query(max_length=32)] = None,
    day: date | None = None,
    outcome: Outcome | None = None,
    reason: Reason | None = None,
    payment_id: Annotated[str | None, Query(max_length=64, description="Kora's payment id")] = None,
) -> StreamingResponse:
    """The results `GET /v1/recon/lines` selects with the same filter, all of them, as CSV
    (streamed in batches; cells that a spreadsheet would run as a formula are quoted with a
    leading apostrophe)."""
    services = recon_services(request)
    where = _filter(report_id, provider, day, outcome, reason, payment_id)
    return StreamingResponse(
        _csv_rows(services, where),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="recon-lines.csv"'},
    )


async def _csv_rows(services: ReconServices, where: ResultFilter) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(LINE_COLUMNS)
    yield _drain(buffer)
    after: int | None = None
    with _tracer.start_as_current_span("recon.query.lines_csv") as span:
        total = 0
        while True:
            # One short connection per batch: a slow client never holds a connection open.
            async with services.engine.connect() as conn:
                rows = await result_page(conn, where, limit=CSV_BATCH, after=after)
            for row in rows:
                writer.writerow([csv_cell(row[name]) for name in LINE_COLUMNS])
            total += len(rows)
            if rows:
                yield _drain(buffer)
            if len(rows) < CSV_BATCH:
                break
            after = rows[-1]["id"]
        span.set_attribute("recon.rows", total)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: Any) -> str:
    """A CSV cell: empty for None, ISO 8601 for times, and text that starts like a formula
    (`=`, `+`, `-`, `@`, tab, CR, LF) prefixed with `'` (OWASP's CSV injection advice)."""
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool | int):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
