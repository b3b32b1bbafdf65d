"""Risk review routes (issue #6): the queue of payments held for review and an analyst's
decision (role `risk_analyst`; administrators may read the queue), the explanation of a
payment's risk decision for support, and how often each rule's reviews were approved (its
false-positive rate). Risk data is only readable by these roles."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from kora.http.container import services
from kora.http.problems import problem_response, problem_responses
from kora.http.security import require_role
from kora.identity import Principal
from kora.observability import get_correlation_id
from kora.operations import Operation
from kora.payments import PaymentNotFound, ReviewDecision

router = APIRouter(prefix="/v1/admin", tags=["risk"])

Analyst = Annotated[Principal, Depends(require_role("risk_analyst"))]
QueueReader = Annotated[Principal, Depends(require_role("risk_analyst", "admin"))]
Explainer = Annotated[Principal, Depends(require_role("risk_analyst", "support", "admin"))]

_CURSOR = r"^[0-9T:.+\-]{19,40}~[0-9a-f\-]{36}$"


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500, description="Why: kept with the decision. No customer data.")


# Approving a held cash-in or cash-out sends it to its provider now: a new provider call, which
# operations may have paused (the operation) or stopped (the provider) — the approval waits.
_PROVIDER_MOVES = {"cash_in": Operation.CASH_IN, "cash_out": Operation.CASH_OUT}


@router.get(
    "/risk/reviews",
    responses=problem_responses("forbidden", "not_authenticated", "validation_error"),
)
async def list_reviews(
    request: Request,
    _reader: QueueReader,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=_CURSOR, description="next_cursor of the previous page")] = None,
) -> Any:
    """Payments held for review, oldest first, with their evidence: the rules that fired (limit,
    observed value, window, points), the score, the policy version, and the payer's activity
    over the last hour and day (counts and amounts; ids only, no customer data)."""
    risk = services(request).risk
    after = None
    if cursor is not None:
        at, payment_id = cursor.split("~")
        try:
            after = (datetime.fromisoformat(at), payment_id)
        except ValueError:
            return problem_response("validation_error", "cursor is not a next_cursor of this list")
    items = await risk.review_queue(limit=limit, after=after)
    next_cursor = f"{items[-1]['assessed_at']}~{items[-1]['payment_id']}" if len(items) == limit else None
    return {"items": items, "next_cursor": next_cursor, "policy_version": risk.policy_version}


async def _decide(
    request: Request, principal: Principal, payment_id: uuid.UUID, decision: ReviewDecision, body: ReviewIn | None
) -> Any:
    kora = services(request)
    if decision is ReviewDecision.APPROVE:
        try:
            held = await kora.payments.service_payment(payment_id)
        except PaymentNotFound:
            held = None  # the decision answers risk_review_not_found
        operation = _PROVIDER_MOVES.get(str(held["type"])) if held is not None else None
        if held is not None and operation is not None:
            await kora.controls.ensure_open(operation, provider=held["provider"])
    return await kora.payments.decide_risk_review(
        payment_id,
        decision,
        analyst=principal.actor,
        note=body.note if body else None,
        correlation_id=get_correlation_id(),
    )


_DECISION_ERRORS = problem_responses(
    "risk_review_not_found",
    "risk_review_decided",
    "operation_paused",
    "provider_unavailable",
    "forbidden",
    "not_authenticated",
    "validation_error",
)


@router.post("/risk/reviews/{payment_id}/approve", responses=_DECISION_ERRORS)
async def approve_review(
    payment_id: uuid.UUID, request: Request, analyst: Analyst, body: ReviewIn | None = None
) -> Any:
    """Approve a held payment: an internal payment is posted against its held funds and settles;
    a cash-in or cash-out goes to its provider now. Stored with the assessment and audited."""
    return await _decide(request, analyst, payment_id, ReviewDecision.APPROVE, body)


@router.post("/risk/reviews/{payment_id}/reject", responses=_DECISION_ERRORS)
async def reject_review(payment_id: uuid.UUID, request: Request, analyst: Analyst, body: ReviewIn | None = None) -> Any:
    """Reject a held payment: its hold is released and it ends FAILED (`risk_rejected`)."""
    return await _decide(request, analyst, payment_id, ReviewDecision.REJECT, body)


@router.get(
    "/payments/{payment_id}/risk",
    responses=problem_responses("payment_not_found", "forbidden", "not_authenticated"),
)
async def explain_payment_risk(payment_id: uuid.UUID, request: Request, _reader: Explainer) -> Any:
    """Why the risk engine decided what it did on a payment: outcome, score, every reason, the
    policy version, the reservation's status, and the analyst's decision if it was reviewed."""
    explained = await services(request).risk.explain(payment_id)
    if explained is None:
        return problem_response("payment_not_found", "the risk engine never assessed this payment")
    return explained


@router.get("/risk/review-outcomes", responses=problem_responses("forbidden", "not_authenticated"))
async def review_outcomes(request: Request, _reader: QueueReader) -> Any:
    """Per rule: reviews approved (the rule fired on a legitimate payment: a false positive) and
    rejected, and the false-positive rate — what tuning the policy starts from."""
    risk = services(request).risk
    outcomes = await risk.review_outcomes()
    return {
        "policy_version": risk.policy_version,
        "rules": {
            rule: {**counts, "false_positive_rate": round(counts["approve"] / max(1, sum(counts.values())), 4)}
            for rule, counts in sorted(outcomes.items())
        },
    }
