"""Card payment routes: a merchant takes a card payment through the card acquirer (authorize),
captures (partly) or voids it, refunds it, and reads it. Every POST takes an Idempotency-Key.

Answers: 201 (authorize, refund) or 200 (capture, void) with the payment; 202 with the payment
while the acquirer's answer is unknown (`pending_operation` says which operation; the payment
is resolved by the card resolution job, and a capture or void may be retried with the same key).
A card payment the acquirer declined is answered 201 with `status: FAILED` and the reason in
`failure_code`, like a declined cash-in. The acquirer's chargebacks arrive at
`POST /v1/webhooks/acquirers/{acquirer}` (webhooks.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kora.http.antireplay import fresh_request_required, with_anti_replay_errors
from kora.http.container import services
from kora.http.problems import problem_responses
from kora.http.routes.merchant import REFERENCE_PATTERN
from kora.http.routes.money import CURRENCY_PATTERN, IdempotencyKey, StatusChangeOut, payment_answer
from kora.http.security import require_role
from kora.identity import Principal, Role
from kora.observability import get_correlation_id
from kora.payments import (
    CardOperationCommand,
    CardPaymentCommand,
    CardRefundCommand,
    PaymentResult,
    RefundReason,
)

router = APIRouter(prefix="/v1/card-payments", tags=["card payments"])

CARD_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{12,64}$"  # noqa: S105 (a format, not a secret)
_PENDING_STATUSES = ("INITIATED", "AUTHORIZED")


class CardPaymentOut(BaseModel):
    id: str
    type: str = Field(description="`card` for a card payment, `refund` for a refund of one.")
    status: str = Field(description="INITIATED, AUTHORIZED, CAPTURED, SETTLED, FAILED or CHARGED_BACK.")
    amount: int = Field(description="Authorized (card payment) or refunded (refund) amount, minor units.")
    currency: str
    captured_amount: int | None = Field(description="What was captured (at most `amount`).")
    fee: int = Field(description="Card fee kept on the capture; the merchant got `captured_amount - fee`.")
    refunded_amount: int = Field(description="How much of a card payment was refunded so far.")
    failure_code: str | None = Field(
        description="Why it FAILED: the issuer's decline (`insufficient_funds`, `do_not_honor`...), `voided`, "
        "`authorization_expired`, `authorization_unresolved`."
    )
    reference: str | None = Field(description="The merchant's order reference, if one was given.")
    authorization_id: str | None = Field(description="The acquirer's authorization id.")
    authorization_expires_at: str | None = Field(description="When the acquirer's authorization lapses.")
    pending_operation: str | None = Field(
        description="An operation whose answer from the acquirer is not known yet (`authorize`, `capture`, "
        "`void`, `refund`); null when nothing is pending."
    )
    parent_id: str | None = Field(description="On a refund: the card payment it refunds.")
    settlement_due: str | None = Field(description="When the acquirer is due to settle the captured amount (J+N).")
    created_at: str
    updated_at: str
    status_history: list[StatusChangeOut]


class CardPaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0, description="Minor units (XOF has none).")
    currency: str = Field(default="XOF", pattern=CURRENCY_PATTERN)
    card_token: str = Field(
        pattern=CARD_TOKEN_PATTERN,
        repr=False,
        description="The card as the acquirer's vault tokenized it (12-64 letters, digits, _ or -). Sent to "
        "the acquirer only: never stored, logged or echoed back.",
    )
    reference: str | None = Field(
        default=None,
        pattern=REFERENCE_PATTERN,
        description="The merchant's order reference: 1-64 letters, digits or . _ : / # - (never personal data).",
    )
    acquirer: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Which acquirer; the default one if omitted."
    )


class CaptureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(
        default=None, gt=0, description="Minor units, at most the authorized amount; omitted: all of it."
    )


class CardRefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0, description="Minor units; at most what is left to refund of the capture.")
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER


_KEY_ERRORS = ("idempotency_key_missing", "idempotency_key_reused", "idempotency_request_in_progress")
AUTHORIZE_ERRORS = problem_responses(
    "validation_error", *_KEY_ERRORS, "invalid_reference", "unknown_provider", "not_authenticated", "forbidden"
)
OPERATION_ERRORS = problem_responses(
    "validation_error",
    *_KEY_ERRORS,
    "payment_not_found",
    "illegal_transition",
    "invalid_capture",
    "invalid_fee",
    "authorization_expired",
    "card_operation_refused",
    "acquirer_unavailable",
    "not_authenticated",
    "forbidden",
)
REFUND_ERRORS = problem_responses(
    "validation_error",
    *_KEY_ERRORS,
    "payment_not_found",
    "refund_not_allowed",
    "insufficient_funds",
    "card_operation_in_progress",
    "not_authenticated",
    "forbidden",
)
_PENDING: dict[int | str, dict[str, Any]] = {
    202: {"model": CardPaymentOut, "description": "The acquirer's answer is not known yet."}
}

Merchant = Annotated[Principal, Depends(require_role(Role.MERCHANT))]


def _answer(result: PaymentResult, status_code: int) -> Response:
    pending = result.body.get("pending_operation") and result.body.get("status") in _PENDING_STATUSES
    return payment_answer(result, 202 if pending else status_code)


@router.post("", status_code=201, response_model=CardPaymentOut, responses={**AUTHORIZE_ERRORS, **_PENDING})
async def authorize_card_payment(
    body: CardPaymentIn, principal: Merchant, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Take a card payment: the acquirer authorizes the amount on the card (a hold at the
    issuer; no money moves yet). AUTHORIZED, or FAILED with the decline in `failure_code`."""
    result = await services(request).payments.authorize_card_payment(
        CardPaymentCommand(
            merchant_user_id=principal.user_id,
            amount=body.amount,
            currency=body.currency,
            card_token=body.card_token,
            idempotency_key=idempotency_key,
            reference=body.reference,
            acquirer=body.acquirer,
            correlation_id=get_correlation_id(),
        )
    )
    return _answer(result, 201)


@router.get(
    "/{payment_id}",
    response_model=CardPaymentOut,
    responses=problem_responses("payment_not_found", "not_authenticated", "forbidden"),
)
async def get_card_payment(payment_id: uuid.UUID, principal: Merchant, request: Request) -> Any:
    """One of the merchant's card payments (another merchant's is not found)."""
    return await services(request).payments.card_payment(principal.user_id, payment_id)


@router.post(
    "/{payment_id}/capture",
    response_model=CardPaymentOut,
    responses={**OPERATION_ERRORS, **_PENDING},
)
async def capture_card_payment(
    payment_id: uuid.UUID,
    principal: Merchant,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    body: CaptureIn | None = None,
) -> Response:
    """Capture an AUTHORIZED card payment, once, in full or in part: the merchant's account is
    credited the captured amount less the card fee (KORA_CARD_FEE_BPS, at least
    KORA_CARD_FEE_MIN). CAPTURED, settled by the acquirer J+N."""
    result = await services(request).payments.capture_card_payment(
        CardOperationCommand(
            merchant_user_id=principal.user_id,
            payment_id=payment_id,
            idempotency_key=idempotency_key,
            amount=body.amount if body is not None else None,
            correlation_id=get_correlation_id(),
        )
    )
    return _answer(result, 200)


@router.post("/{payment_id}/void", response_model=CardPaymentOut, responses={**OPERATION_ERRORS, **_PENDING})
async def void_card_payment(
    payment_id: uuid.UUID, principal: Merchant, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Release an AUTHORIZED card payment's hold: it ends FAILED (`voided`); no money moved."""
    result = await services(request).payments.void_card_payment(
        CardOperationCommand(
            merchant_user_id=principal.user_id,
            payment_id=payment_id,
            idempotency_key=idempotency_key,
            correlation_id=get_correlation_id(),
        )
    )
    return _answer(result, 200)


@router.post(
    "/{payment_id}/refunds",
    status_code=201,
    response_model=CardPaymentOut,
    responses=with_anti_replay_errors({**REFUND_ERRORS, **_PENDING}),
    dependencies=[fresh_request_required(CardRefundIn)],  # debits the merchant's account (ADR 0012)
)
async def refund_card_payment(
    payment_id: uuid.UUID,
    body: CardRefundIn,
    principal: Merchant,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Refund (part of) a captured card payment to the card, repeatable up to the captured
    amount; one refund at a time may be pending at the acquirer. The card fee is not given back.
    The merchant's account is debited when the acquirer confirms (the amount is held meanwhile)."""
    result = await services(request).payments.refund_card_payment(
        CardRefundCommand(
            merchant_user_id=principal.user_id,
            payment_id=payment_id,
            amount=body.amount,
            idempotency_key=idempotency_key,
            reason=body.reason,
            correlation_id=get_correlation_id(),
        )
    )
    return _answer(result, 201)
