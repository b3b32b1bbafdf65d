"""The review queue over HTTP: `/v1/recon/cases...` (list, show, take, comment, propose,
approve, reject, retry a posting).

The caller is ``current_recon_principal`` (the core's access token, verified by the service);
the roles and maker-checker are checked by the use cases, not here. Refusals are RFC 9457
``application/problem+json`` with a stable ``code``; a refused action changed nothing. The app
puts the ``CaseService`` in ``app.state.case_service``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kora.observability.problems import PROBLEM_CONTENT_TYPE, Problem, problem_json
from kora.reconciliation.domain.cases import (
    CaseError,
    CaseNotFound,
    InvalidNote,
    InvalidProposal,
    InvalidTransition,
    NotAllowed,
    Proposal,
    ProposalKind,
    SameAsProposer,
)
from kora.reconciliation.http.security import current_recon_principal
from kora.reconciliation.service.cases import MAX_PAGE, Case, CaseService, Principal

T = TypeVar("T")

_STATUS: list[tuple[type[CaseError], int, str]] = [
    (CaseNotFound, 404, "Case not found"),
    (SameAsProposer, 403, "The approver must be a different person from the proposer"),
    (NotAllowed, 403, "Your roles do not allow this action"),
    (InvalidTransition, 409, "Not possible in the case's current status"),
    (InvalidProposal, 422, "Invalid proposal"),
    (InvalidNote, 422, "Invalid note"),
    (CaseError, 422, "Invalid request"),
]


def problem(exc: CaseError) -> JSONResponse:
    status, title = next((s, t) for kind, s, t in _STATUS if isinstance(exc, kind))
    return problem_json(exc.code, status, title, str(exc) or None)


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": Problem, "content": {PROBLEM_CONTENT_TYPE: {}}, "description": "a problem"}
        for status in statuses
    }


def case_service(request: Request) -> CaseService:
    service: CaseService = request.app.state.case_service
    return service


Caller = Annotated[Principal, Depends(current_recon_principal)]
Service = Annotated[CaseService, Depends(case_service)]


class CommentBody(BaseModel):
    note: str = Field(min_length=1, max_length=1000)


class ProposalBody(BaseModel):
    kind: Literal["confirm_mismatch", "write_off", "manual_credit", "manual_debit", "accept_provider", "no_action"]
    note: str = Field(min_length=1, max_length=1000)
    amount: int | None = Field(
        default=None,
        gt=0,
        description="minor units; required for write_off, manual_credit and manual_debit (no default)",
    )
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


async def _answer(work: Awaitable[T], shape: Any) -> Any:
    try:
        return shape(await work)
    except CaseError as exc:
        return problem(exc)


def _case(case: Case) -> dict[str, Any]:
    return case.as_dict()


router = APIRouter(prefix="/v1/recon/cases", tags=["review"])


@router.get("", responses=_responses(403, 422))
async def list_cases(
    caller: Caller,
    service: Service,
    status: Annotated[list[str] | None, Query(description="repeatable")] = None,
    queue: bool = False,
    provider: str | None = None,
    outcome: str | None = None,
    report_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    """Cases, oldest first (``queue=true``: those waiting for people). Readers: reviewers,
    approvers, admins."""
    work = service.list(
        caller,
        statuses=frozenset(status or ()),
        queue=queue,
        provider=provider,
        outcome=outcome,
        report_id=report_id,
        limit=limit,
        offset=offset,
    )
    return await _answer(
        work,
        lambda page: {
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
            "cases": [c.as_dict() for c in page.cases],
        },
    )


@router.get("/{case_id}", responses=_responses(403, 404))
async def show_case(case_id: uuid.UUID, caller: Caller, service: Service) -> Any:
    """A case with its evidence (ids and amounts, no personal data), comments and history."""
    return await _answer(
        service.show(caller, case_id),
        lambda d: {"case": d.case.as_dict(), "evidence": d.evidence, "comments": d.comments, "history": d.history},
    )


@router.post("/{case_id}/take", responses=_responses(403, 404, 409))
async def take_case(case_id: uuid.UUID, caller: Caller, service: Service) -> Any:
    """A reviewer starts investigating the case."""
    return await _answer(service.take(caller, case_id), _case)


@router.post("/{case_id}/comments", responses=_responses(403, 404, 409, 422))
async def comment_case(case_id: uuid.UUID, body: CommentBody, caller: Caller, service: Service) -> Any:
    """A note (no phone or account numbers); reviewers and approvers."""
    return await _answer(service.comment(caller, case_id, body.note), _case)


@router.post("/{case_id}/proposal", responses=_responses(403, 404, 409, 422))
async def propose(case_id: uuid.UUID, body: ProposalBody, caller: Caller, service: Service) -> Any:
    """A reviewer proposes how to settle the case; a different approver decides."""
    proposal = Proposal(ProposalKind(body.kind), body.note, body.amount, body.currency)
    return await _answer(service.propose(caller, case_id, proposal), _case)


@router.post("/{case_id}/approve", responses=_responses(403, 404, 409))
async def approve(case_id: uuid.UUID, caller: Caller, service: Service) -> Any:
    """An approver (never the proposer) approves; a money-moving correction is posted through
    the core (``status`` stays ``approved`` with ``posting_error`` if the core failed)."""
    return await _answer(service.approve(caller, case_id), _case)


@router.post("/{case_id}/reject", responses=_responses(403, 404, 409, 422))
async def reject(case_id: uuid.UUID, body: CommentBody, caller: Caller, service: Service) -> Any:
    """An approver (never the proposer) rejects the proposal, with a note."""
    return await _answer(service.reject(caller, case_id, body.note), _case)


@router.post("/{case_id}/posting", responses=_responses(403, 404, 409))
async def retry_posting(case_id: uuid.UUID, caller: Caller, service: Service) -> Any:
    """Post an approved correction whose posting failed (approvers)."""
    return await _answer(service.retry_posting(caller, case_id), _case)
