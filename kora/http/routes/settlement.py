"""Ops routes for the J+N settlement step: settle a provider's captured payments from its
settlement report or the bank statement (admin, Idempotency-Key), and see what is captured,
due and overdue (admin or support, for on-call)."""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kora.http.container import services
from kora.http.problems import problem_responses
from kora.http.routes.money import CURRENCY_PATTERN, IdempotencyKey
from kora.http.security import require_role
from kora.identity import Principal
from kora.observability import get_correlation_id
from kora.payments import IdempotencyKeyMissing

router = APIRouter(prefix="/v1/ops/settlements", tags=["ops"])

PROVIDER_PATTERN = r"^[a-z0-9_-]{1,32}$"
# Kept in step with kora.payments' own check; no `+` or spaces, so no phone number fits.
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

Admin = Annotated[Principal, Depends(require_role("admin"))]
OnCall = Annotated[Principal, Depends(require_role("admin", "support"))]


class SettlementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(pattern=PROVIDER_PATTERN)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    through: date | None = Field(
        default=None,
        description="YYYY-MM-DD, a UTC day that has ended (yesterday or earlier): settle every payment "
        "captured (by Kora's capture time) on or before this day. Today or later is refused: the provider's "
        "report cannot hold payments captured minutes ago. For an exact match with the report, send its "
        "payment_ids instead.",
    )
    payment_ids: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Settle these payments, as the provider's report names them (any captured payment, "
        "today's too); captured on or before `through` too, when both are given.",
    )
    reference: str = Field(
        pattern=REFERENCE_PATTERN, description="The provider's settlement report or bank statement reference."
    )

    @field_validator("through", mode="before")
    @classmethod
    def _a_calendar_day(cls, value: object) -> object:
        # Only "YYYY-MM-DD": pydantic would also take a Unix timestamp or a midnight datetime.
        if value is not None and not (isinstance(value, str) and _DAY.fullmatch(value)):
            raise ValueError("a day as YYYY-MM-DD")
        return value


class FlowOut(BaseModel):
    count: int
    amount: int


class AlreadySettledTotalsOut(BaseModel):
    collections: FlowOut
    disbursements: FlowOut
    net: int


class SettlementTotalsOut(BaseModel):
    collections: FlowOut = Field(description="Settled cash-ins: the provider pays them to our bank account.")
    disbursements: FlowOut = Field(description="Settled cash-outs: our bank account pays them to the provider.")
    net: int = Field(description="collections - disbursements: what the bank statement should show.")
    already_settled: AlreadySettledTotalsOut = Field(
        description="The selected payments an earlier run had settled (a retry after a run that failed part way, "
        "a report sent twice), not moved again: `net` plus this net is what the whole report moved."
    )


class SettlementOutcomeOut(BaseModel):
    payment_id: str
    outcome: str = Field(description="`settled`, `already_settled` or `rejected`.")
    reason: str | None = Field(
        default=None,
        description="Why a payment was rejected: not_found, other_provider, other_currency, status_<status>, "
        "captured_after_through, not_provider_settled, provider_contradiction, ledger_refused.",
    )
    flow: str | None = Field(
        default=None, description="`collections` or `disbursements` (settled and already_settled)."
    )
    amount: int | None = Field(default=None, description="The amount settled (settled and already_settled).")


class SettlementOut(BaseModel):
    provider: str
    currency: str
    reference: str
    through: str | None
    settled: int
    already_settled: int
    rejected: int
    totals: SettlementTotalsOut
    outcomes: list[SettlementOutcomeOut]


class ExpectedOut(BaseModel):
    collections: FlowOut
    disbursements: FlowOut
    net: int


class BacklogItemOut(BaseModel):
    provider: str
    currency: str
    captured: FlowOut = Field(description="Captured, waiting for the provider's settlement.")
    due: FlowOut = Field(description="Due by the end of today (overdue included).")
    overdue: FlowOut = Field(description="Past their J+N settlement due time.")
    expected: ExpectedOut = Field(description="What settling all of them moves on the bank account.")
    oldest_captured_at: str | None
    oldest_settlement_due: str | None


class BacklogOut(BaseModel):
    as_of: str
    items: list[BacklogItemOut]


@router.post(
    "",
    response_model=SettlementOut,
    responses=problem_responses(
        "validation_error",
        "invalid_settlement_request",
        "unknown_provider",
        "idempotency_key_missing",
        "idempotency_key_invalid",
        "idempotency_key_reused",
        "idempotency_request_in_progress",
        "not_authenticated",
        "forbidden",
    ),
)
async def settle(
    body: SettlementIn, admin: Admin, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Settle a provider's captured payments (clearing → settlement bank, CAPTURED → SETTLED):
    those named (from the provider's report), or all captured on or before `through`, a UTC day
    that has ended (today or later is refused: `invalid_settlement_request`). Each payment settles at most once;
    running the same report again settles nothing twice. Answers the counts, the totals per
    direction (compare `net` with the bank statement) and each payment's outcome."""
    if not idempotency_key:
        raise IdempotencyKeyMissing("the Idempotency-Key header is required for this request")
    result = await services(request).payments.settle(
        body.provider,
        body.currency,
        payment_ids=body.payment_ids,
        through=body.through,
        actor=f"user:{admin.user_id}",
        reference=body.reference,
        idempotency_key=idempotency_key,
        correlation_id=get_correlation_id(),
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(result.body, headers=headers)


@router.get(
    "/due",
    response_model=BacklogOut,
    responses=problem_responses("validation_error", "not_authenticated", "forbidden"),
)
async def settlements_due(
    _on_call: OnCall,
    request: Request,
    provider: Annotated[str | None, Query(pattern=PROVIDER_PATTERN)] = None,
    currency: Annotated[str | None, Query(pattern=CURRENCY_PATTERN)] = None,
) -> Any:
    """Captured provider payments still waiting for settlement, per provider and currency: how
    many and how much, how many are due today and overdue, and the oldest due time — late
    settlements at a glance. Also refreshes the overdue gauges."""
    return await services(request).payments.settlement_backlog(provider=provider, currency=currency)
