"""Settlement reports: upload, list, read back (with quarantined lines), match now."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from kora.observability import get_tracer
from kora.reconciliation.adapters.report_queries import (
    ReportHeader,
    decode_report_cursor,
    encode_report_cursor,
    list_reports,
    outcome_counts,
    report_header,
)
from kora.reconciliation.dialects import available_dialects
from kora.reconciliation.http.container import recon_services
from kora.reconciliation.http.problems import ReconProblem, problem_responses
from kora.reconciliation.http.security import ADMIN, RECON_APPROVER, RECON_REVIEWER, ReconPrincipal, require_recon_role
from kora.reconciliation.http.upload import read_upload
from kora.reconciliation.service.observed import import_observed, match_observed
from kora.reconciliation.service.report_audit import acting_role, audit_report_action, match_audit_hook

router = APIRouter(prefix="/v1/recon", tags=["reports"])
_tracer = get_tracer("kora.reconciliation")

Reader = Annotated[ReconPrincipal, Depends(require_recon_role(RECON_REVIEWER, RECON_APPROVER, ADMIN))]
# Uploading and matching decide what is announced to the core (settlements confirmed, cases
# opened): the reviewers' work, not an administrator's (admin reads, ADR 0025).
Operator = Annotated[ReconPrincipal, Depends(require_recon_role(RECON_REVIEWER))]
_AUTH = ("not_authenticated", "invalid_token", "forbidden")


class UploadResult(BaseModel):
    report_id: uuid.UUID
    provider: str
    day: date | None
    lines: int
    quarantined: int
    duplicate: bool


class ReportOut(BaseModel):
    id: uuid.UUID
    provider: str
    day: date | None
    filename: str
    size: int
    digest: str
    imported_at: datetime
    imported_by: str
    lines: int
    quarantined: int


class ReportPage(BaseModel):
    items: list[ReportOut]
    next_cursor: str | None


class QuarantinedLineOut(BaseModel):
    line_number: int
    reason: str
    raw: str


class ReportDetail(ReportOut):
    outcomes: dict[str, int]
    quarantined_lines: list[QuarantinedLineOut]


class MatchOut(BaseModel):
    report_id: uuid.UUID
    counts: dict[str, int]


def _out(header: ReportHeader) -> ReportOut:
    return ReportOut(
        id=header.id,
        provider=header.provider,
        day=header.report_day,
        filename=header.filename,
        size=header.size,
        digest=header.digest,
        imported_at=header.imported_at,
        imported_by=header.imported_by,
        lines=header.line_count,
        quarantined=header.quarantined_count,
    )


async def _audit(
    request: Request, action: str, principal: ReconPrincipal, report_id: uuid.UUID, **details: str | int | bool | None
) -> None:
    """The action in the service's audit chain (ids and counts only, never line content)."""
    services = recon_services(request)
    await audit_report_action(
        services.engine,
        services.review.audit,
        services.clock,
        action=action,
        actor=f"user:{principal.user_id}",
        role=acting_role(principal.roles),
        report_id=report_id,
        details=details,
    )


def _known_provider(provider: str) -> str:
    known = available_dialects()
    if provider not in known:
        raise ReconProblem("unknown_provider", "known providers: " + ", ".join(known))
    return provider


@router.post(
    "/reports",
    status_code=201,
    response_model=UploadResult,
    responses={
        200: {"model": UploadResult, "description": "Already imported: the stored report"},
        **problem_responses(
            *_AUTH, "unknown_provider", "report_malformed", "report_missing", "payload_too_large", "validation_error"
        ),
    },
    openapi_extra={
        "requestBody": {
            "description": "The report file: the raw body (text/csv, application/octet-stream...) or the "
            "multipart/form-data part `file`.",
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                },
            },
        }
    },
)
async def upload_report(
    request: Request,
    response: Response,
    principal: Operator,
    provider: Annotated[str, Query(max_length=32, description="the report's dialect: momo, wave, card...")],
    day: Annotated[date | None, Query(description="the day the report covers (YYYY-MM-DD)")] = None,
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> UploadResult:
    """Import a provider's settlement report (stored encrypted; its unreadable lines set aside
    as quarantined). The same file again changes nothing and answers 200 with `duplicate`."""
    services = recon_services(request)
    try:
        _known_provider(provider)
        data, name = await read_upload(request, max_bytes=services.settings.max_upload_bytes, filename=filename)
    except ReconProblem:
        # An unknown provider is counted as "unknown": a label per made-up name would be unbounded.
        known = provider in available_dialects()
        services.metrics.report_imported(provider if known else "unknown", result="rejected")
        raise
    result = await import_observed(
        services.imports,
        services.engine,
        services.metrics,
        provider,
        data,
        filename=name,
        actor=f"user:{principal.user_id}",
        report_day=day,
    )
    await _audit(
        request,
        "report.import",
        principal,
        result.report_id,
        provider=provider,
        lines=result.lines,
        quarantined=result.quarantined,
        duplicate=result.duplicate,
    )
    if result.duplicate:
        response.status_code = 200
    return UploadResult(
        report_id=result.report_id,
        provider=result.provider,
        day=day,
        lines=result.lines,
        quarantined=result.quarantined,
        duplicate=result.duplicate,
    )


@router.get("/reports", response_model=ReportPage, responses=problem_responses(*_AUTH, "invalid_cursor"))
async def get_reports(
    request: Request,
    _reader: Reader,
    provider: Annotated[str | None, Query(max_length=32)] = None,
    day: date | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ReportPage:
    """Stored reports, newest import first, without their content."""
    services = recon_services(request)
    before = decode_report_cursor(cursor) if cursor else None
    with _tracer.start_as_current_span("recon.query.reports"):
        async with services.engine.connect() as conn:
            headers = await list_reports(conn, provider=provider, day=day, limit=limit + 1, before=before)
    page = headers[:limit]
    next_cursor = encode_report_cursor(page[-1]) if len(headers) > limit else None
    return ReportPage(items=[_out(h) for h in page], next_cursor=next_cursor)


@router.get(
    "/reports/{report_id}", response_model=ReportDetail, responses=problem_responses(*_AUTH, "report_not_found")
)
async def get_report(request: Request, report_id: uuid.UUID, principal: Reader) -> ReportDetail:
    """A stored report's header, the outcome counts of its latest match run, and its
    quarantined lines decrypted (their raw text may hold personal data: recon roles only,
    never logged)."""
    services = recon_services(request)
    with _tracer.start_as_current_span("recon.query.report"):
        async with services.engine.connect() as conn:
            header = await report_header(conn, report_id)
            if header is None:
                raise ReconProblem("report_not_found")
            counts = await outcome_counts(conn, report_id)
        content = await services.imports.read_report(report_id, roles=principal.roles)
    await _audit(request, "report.read", principal, report_id, quarantined=len(content.quarantined))
    return ReportDetail(
        **_out(header).model_dump(),
        outcomes=counts,
        quarantined_lines=[
            QuarantinedLineOut(line_number=q.line_number, reason=q.reason, raw=q.raw) for q in content.quarantined
        ],
    )


@router.post(
    "/reports/{report_id}/match", response_model=MatchOut, responses=problem_responses(*_AUTH, "report_not_found")
)
async def match_report(request: Request, report_id: uuid.UUID, principal: Operator) -> MatchOut:
    """Match the report now against Kora's payments of its provider; its results replace those
    of its previous run. Answers the count of each outcome."""
    services = recon_services(request)
    audited = match_audit_hook(
        services.review.audit,
        services.clock,
        actor=f"user:{principal.user_id}",
        role=acting_role(principal.roles),
    )
    counts = await match_observed(
        services.engine,
        services.metrics,
        report_id,
        rules=services.rules,
        as_of=services.clock.now(),
        clock=services.clock,
        hooks=[*services.review.match_hooks(), audited],
    )
    return MatchOut(report_id=report_id, counts=counts)
