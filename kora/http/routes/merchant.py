"""Merchant routes: customers pay merchants; merchants refund, list what they received and read
their balance; admins grant the merchant role. Money-moving POSTs need Idempotency-Key."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kora.http.antireplay import fresh_request_required, with_anti_replay_errors
from kora.http.container import services
from kora.http.problems import problem_responses
from kora.http.routes.controls import operation_open, with_control_errors
from kora.http.routes.money import CURRENCY_PATTERN, IdempotencyKey, StatusChangeOut, payment_answer
from kora.http.security import require_role
from kora.identity import Principal, Role
from kora.observability import get_correlation_id
from kora.operations import Operation
from kora.payments import MerchantPaymentCommand, RefundCommand, RefundReason

router = APIRouter(prefix="/v1", tags=["merchant"])

REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}$"


class MerchantPaymentOut(BaseModel):
    id: str
    type: str = Field(description="`merchant` for a payment to a merchant, `refund` for a refund of one.")
    status: str
    amount: int
    currency: str
    fee: int = Field(description="Kept as fee revenue; the merchant's account got `amount - fee`.")
    reference: str | None = Field(description="The merchant's order reference, if one was given.")
    parent_id: str | None = Field(description="On a refund: the payment it refunds.")
    refunded_amount: int = Field(description="On a merchant payment: how much of it was refunded so far.")
    payer_wallet_id: str | None
    payee_wallet_id: str | None
    created_at: str
    updated_at: str
    status_history: list[StatusChangeOut]


class MerchantPaymentPage(BaseModel):
    items: list[MerchantPaymentOut]
    next_cursor: str | None = Field(description="null at the end; a page may be short before the end.")


class MerchantBalanceOut(BaseModel):
    merchant_id: str = Field(description="The merchant's account id: what customers pay to.")
    currency: str
    balance: int
    available_balance: int


class MerchantPaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_id: uuid.UUID = Field(description="The merchant's account id (GET /v1/merchant/balance shows it).")
    amount: StrictInt = Field(gt=0, description="Minor units (XOF has none).")
    currency: str = Field(default="XOF", pattern=CURRENCY_PATTERN)
    reference: str | None = Field(
        default=None,
        pattern=REFERENCE_PATTERN,
        description="The merchant's order reference: 1-64 letters, digits or . _ : / # - (never personal data).",
    )


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0, description="Minor units; at most what is left to refund of the payment.")
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER


class RoleGrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["merchant"]


class RoleGrantOut(BaseModel):
    user_id: str
    role: str
    granted: bool = Field(description="false when the user already held the role.")
    merchant_id: str = Field(description="The merchant's account id, opened with the role.")


PAY_ERRORS = problem_responses(
    "validation_error",
    "idempotency_key_missing",
    "idempotency_key_reused",
    "idempotency_request_in_progress",
    "insufficient_funds",
    "recipient_not_found",
    "invalid_fee",
    "not_authenticated",
    "forbidden",
)
REFUND_ERRORS = problem_responses(
    "validation_error",
    "idempotency_key_missing",
    "idempotency_key_reused",
    "idempotency_request_in_progress",
    "payment_not_found",
    "refund_not_allowed",
    "insufficient_funds",
    "not_authenticated",
    "forbidden",
)
READ_ERRORS = problem_responses("not_authenticated", "forbidden")

Customer = Annotated[Principal, Depends(require_role(Role.CUSTOMER))]
Merchant = Annotated[Principal, Depends(require_role(Role.MERCHANT))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]


@router.post(
    "/merchant-payments",
    status_code=201,
    response_model=MerchantPaymentOut,
    responses=with_control_errors(with_anti_replay_errors(PAY_ERRORS)),
    # debits the customer's wallet, like a transfer (ADR 0012)
    dependencies=[operation_open(Operation.MERCHANT_PAYMENT), fresh_request_required(MerchantPaymentIn)],
)
async def pay_merchant(
    body: MerchantPaymentIn, principal: Customer, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Pay a merchant from the wallet. The fee (KORA_MERCHANT_FEE_BPS of the amount, rounded half
    up, at least KORA_MERCHANT_FEE_MIN) is kept; the merchant gets the rest. Settles at once."""
    result = await services(request).payments.pay_merchant(
        MerchantPaymentCommand(
            user_id=principal.user_id,
            merchant_id=body.merchant_id,
            amount=body.amount,
            currency=body.currency,
            idempotency_key=idempotency_key,
            reference=body.reference,
            correlation_id=get_correlation_id(),
            device_id=principal.device_id,
        )
    )
    return payment_answer(result)


@router.post(
    "/merchant/payments/{payment_id}/refunds",
    status_code=201,
    response_model=MerchantPaymentOut,
    responses=with_anti_replay_errors(REFUND_ERRORS),
    dependencies=[fresh_request_required(RefundIn)],  # debits the merchant's account (ADR 0012)
)
async def refund_payment(
    payment_id: uuid.UUID,
    body: RefundIn,
    principal: Merchant,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Refund (part of) a payment the merchant received, to the customer's wallet; repeatable up
    to the amount paid. The fee is not given back: a full refund debits the merchant the full
    amount. Settles at once."""
    result = await services(request).payments.refund(
        RefundCommand(
            merchant_user_id=principal.user_id,
            payment_id=payment_id,
            amount=body.amount,
            idempotency_key=idempotency_key,
            reason=body.reason,
            correlation_id=get_correlation_id(),
        )
    )
    return payment_answer(result)


@router.get("/merchant/payments", response_model=MerchantPaymentPage, responses=READ_ERRORS)
async def list_merchant_payments(
    principal: Merchant,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")] = None,
) -> Any:
    """Payments the merchant received and the refunds it made, newest first."""
    items, next_cursor = await services(request).payments.merchant_payments(
        principal.user_id, limit=limit, cursor=cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/merchant/balance", response_model=MerchantBalanceOut, responses=READ_ERRORS)
async def merchant_balance(principal: Merchant, request: Request) -> Any:
    """The merchant's account: its id (what customers pay to) and balance."""
    return await services(request).payments.merchant_balance(principal.user_id)


@router.post(
    "/admin/users/{user_id}/roles",
    response_model=RoleGrantOut,
    tags=["admin"],
    responses=problem_responses("validation_error", "user_not_found", "not_authenticated", "forbidden"),
)
async def grant_role(user_id: uuid.UUID, body: RoleGrantIn, principal: Admin, request: Request) -> Any:
    """Make a customer a merchant (audited) and open its merchant account. Idempotent. The role
    is in the user's access tokens from its next login or token refresh."""
    kora = services(request)
    granted = await kora.identity.grant_role(
        user_id, Role(body.role), actor=principal.actor, correlation_id=get_correlation_id()
    )
    merchant_id = await kora.payments.open_merchant_account(user_id)
    return {"user_id": str(user_id), "role": body.role, "granted": granted, "merchant_id": str(merchant_id)}
