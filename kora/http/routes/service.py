"""The core's service API (ADR 0023): what other Kora services (the reconciliation service) may
ask of the core, each route under its own scope, with a service token rather than a user's.

- `GET /v1/service/payments/{id}` (`payments:read`): a payment, without PII.
- `POST /v1/service/payments/{id}/provider-query` (`payments:query`): ask the provider now.
- `POST /v1/service/corrections` (`ledger:correct`): post an approved case's correction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from loguru import logger
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kora.http.container import services
from kora.http.problems import problem_responses
from kora.http.routes.money import CURRENCY_PATTERN, IdempotencyKey
from kora.http.service_security import require_service_scope
from kora.identity import ServiceCaller
from kora.observability import get_correlation_id
from kora.payments import CorrectionCommand, CorrectionKind, IdempotencyKeyMissing, PaymentError, PaymentResult

router = APIRouter(prefix="/v1/service", tags=["service"])
_tracer = trace.get_tracer("kora.http.service")

PaymentsReader = Annotated[ServiceCaller, Depends(require_service_scope("payments:read"))]
PaymentsQuerier = Annotated[ServiceCaller, Depends(require_service_scope("payments:query"))]
LedgerCorrector = Annotated[ServiceCaller, Depends(require_service_scope("ledger:correct"))]

_AUTH_PROBLEMS = ("service_token_invalid", "service_scope_missing")
# Operator ids are opaque (kept in step with kora.payments' own check): no name, e-mail or
# formatted phone number fits.
OPERATOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class ServicePaymentOut(BaseModel):
    id: str
    type: str
    status: str
    amount: int = Field(description="Minor units.")
    currency: str
    provider: str | None
    provider_ref: str | None


class ProviderQueryOut(ServicePaymentOut):
    provider_answer: Literal["succeeded", "failed", "pending", "unreachable"] = Field(
        description="What the provider said now (`unreachable`: it could not be asked; nothing recorded)."
    )


class CorrectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: uuid.UUID = Field(description="The reconciliation case; also the request's Idempotency-Key.")
    payment_id: uuid.UUID
    kind: Literal["write_off", "manual_credit", "manual_debit"] = Field(
        description="write_off: the payment's provider clearing ↔ suspense (closes what its capture left open); "
        "manual_credit: suspense → the payment's customer wallet; manual_debit: that wallet → suspense."
    )
    amount: StrictInt = Field(
        description="Minor units, > 0, at most the payment's amount and KORA_CORRECTION_MAX_AMOUNT."
    )
    currency: str = Field(pattern=CURRENCY_PATTERN, description="The payment's currency.")
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="Why (the case's note). Bound to the request; the core audits only its SHA-256, never the text.",
    )
    proposed_by: str = Field(pattern=OPERATOR_PATTERN, description="The operator who proposed it (the core user's id).")
    approved_by: str = Field(
        pattern=OPERATOR_PATTERN, description="The operator who approved it: another person than the proposer."
    )


class AccountRefOut(BaseModel):
    account_id: str
    account_kind: str


class CorrectionOut(BaseModel):
    case_id: str
    payment_id: str
    kind: str
    amount: int
    currency: str
    transaction_id: str = Field(description="The compensating journal transaction.")
    debit: AccountRefOut
    credit: AccountRefOut
    posted_at: str


@asynccontextmanager
async def _observed(request: Request, caller: ServiceCaller, operation: str) -> AsyncIterator[dict[str, str]]:
    """A span, a log line and the call metric around one service operation; the body may set
    `outcome` (default ok)."""
    metrics = services(request).service_metrics
    state = {"outcome": "ok"}
    started = time.perf_counter()
    attributes = {"kora.service": caller.service, "kora.service.operation": operation}
    with _tracer.start_as_current_span(f"service.{operation}", attributes=attributes) as span:
        try:
            yield state
        except PaymentError as exc:
            state["outcome"] = "refused"
            span.set_attribute("kora.refusal", exc.code)
            raise
        except BaseException:
            state["outcome"] = "error"
            raise
        finally:
            seconds = time.perf_counter() - started
            metrics.call(caller.service, operation, state["outcome"], seconds)
            span.set_attribute("kora.outcome", state["outcome"])
            logger.info(
                "service call",
                caller_service=caller.service,
                operation=operation,
                outcome=state["outcome"],
                token_id=caller.token_id,
                duration_ms=round(seconds * 1000, 1),
            )


@router.get(
    "/payments/{payment_id}",
    response_model=ServicePaymentOut,
    responses=problem_responses("payment_not_found", "validation_error", *_AUTH_PROBLEMS),
)
async def service_payment(payment_id: uuid.UUID, caller: PaymentsReader, request: Request) -> ServicePaymentOut:
    """A payment as the core knows it now: type, status, amount, provider and its reference.
    No PII and no wallet ids. Scope `payments:read`."""
    async with _observed(request, caller, "payment_read"):
        view = await services(request).payments.service_payment(payment_id)
    return ServicePaymentOut(**view)


@router.post(
    "/payments/{payment_id}/provider-query",
    response_model=ProviderQueryOut,
    responses=problem_responses("payment_not_found", "unknown_provider", "validation_error", *_AUTH_PROBLEMS),
)
async def provider_query(payment_id: uuid.UUID, caller: PaymentsQuerier, request: Request) -> ProviderQueryOut:
    """Ask the payment's provider now what became of it (a cash-in or cash-out), and record a
    definite answer as the pending-payment sweeper would: a payment still waiting is captured
    or failed, one already definite is kept (and flagged if the provider contradicts it). Never
    re-sends the payment. Answers the payment as it stands after. Scope `payments:query`."""
    async with _observed(request, caller, "provider_query"):
        view = await services(request).payments.query_provider_now(
            payment_id, actor=caller.actor, correlation_id=get_correlation_id()
        )
    return ProviderQueryOut(**view)


@router.post(
    "/corrections",
    status_code=201,
    response_model=CorrectionOut,
    responses=problem_responses(
        "validation_error",
        "idempotency_key_missing",
        "idempotency_key_invalid",
        "idempotency_key_reused",
        "idempotency_request_in_progress",
        "maker_checker_violation",
        "invalid_correction",
        "invalid_amount",
        "currency_mismatch",
        "payment_not_found",
        "correction_not_applicable",
        "correction_already_posted",
        "insufficient_funds",
        *_AUTH_PROBLEMS,
    ),
)
async def post_correction(
    body: CorrectionIn, caller: LedgerCorrector, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Post the correction an approved reconciliation case decided: ONE compensating, balanced
    journal transaction on the payment (entries are never edited). The proposer and the
    approver must be two different people; the amount at most the payment's and the
    configured maximum; a debit never takes the wallet below zero. The Idempotency-Key is the
    case id: a retry with the same body replays the answer (`Idempotent-Replayed: true`).
    Audited with the service, the case, the proposer and the approver; the posting announces
    itself as `ledger.transaction_posted` (kind `correction.<kind>`). Scope `ledger:correct`."""
    if not idempotency_key:
        raise IdempotencyKeyMissing("the Idempotency-Key header (the case id) is required")
    async with _observed(request, caller, "correction") as state:
        try:
            result = await _post(request, body, caller, idempotency_key)
        except PaymentError:
            services(request).service_metrics.correction(body.kind, "refused")
            raise
        if result.replayed:
            state["outcome"] = "replayed"
    services(request).service_metrics.correction(
        body.kind, "replayed" if result.replayed else "posted", currency=body.currency, amount=body.amount
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(result.body, status_code=201, headers=headers)


async def _post(request: Request, body: CorrectionIn, caller: ServiceCaller, key: str) -> PaymentResult:
    return await services(request).payments.post_correction(
        CorrectionCommand(
            case_id=body.case_id,
            payment_id=body.payment_id,
            kind=CorrectionKind(body.kind),
            amount=body.amount,
            currency=body.currency,
            reason=body.reason,
            proposed_by=body.proposed_by,
            approved_by=body.approved_by,
            actor=caller.actor,
            idempotency_scope=caller.idempotency_scope,
            idempotency_key=key,
            correlation_id=get_correlation_id(),
        )
    )
