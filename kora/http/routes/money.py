"""Wallet, payments and money-moving routes. Every money-moving POST needs Idempotency-Key."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from kora.http.antireplay import fresh_request_accepted, fresh_request_required, with_anti_replay_errors
from kora.http.container import services
from kora.http.problems import problem_response, problem_responses
from kora.http.routes.controls import operation_open, with_control_errors
from kora.http.security import current_principal, require_role
from kora.identity import Principal
from kora.observability import get_correlation_id
from kora.operations import Operation
from kora.payments import Outcome, PaymentResult, ProviderMoveCommand, TransferCommand

router = APIRouter(prefix="/v1", tags=["money"])

CURRENCY_PATTERN = r"^[A-Z]{3}$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Required on every money-moving POST. Same key + same body replays the first answer.",
    ),
]


class StatusChangeOut(BaseModel):
    status: str
    at: str
    reason: str


class PaymentOut(BaseModel):
    id: str
    type: str
    status: str
    amount: int
    currency: str
    payer_wallet_id: str | None
    payee_wallet_id: str | None
    provider: str | None
    failure_code: str | None
    created_at: str
    updated_at: str
    status_history: list[StatusChangeOut]


class PaymentFlagOut(BaseModel):
    source: str
    case_id: str
    outcome: str
    reason: str | None
    amount: int | None
    currency: str | None
    flagged_at: str


class PaymentDetailOut(PaymentOut):
    # Support and admin only: what reconciliation confirmed wrong with the payment.
    flags: list[PaymentFlagOut] | None = None


class PaymentPage(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None


class WalletOut(BaseModel):
    wallet_id: str
    currency: str
    balance: int
    available_balance: int


class EntryOut(BaseModel):
    id: str
    sequence: int
    direction: str
    amount: int = Field(description="Signed from the wallet's point of view: credits positive.")
    currency: str
    balance_after: int
    payment_id: str | None
    transaction_id: str
    created_at: str


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipient_phone_number: str | None = Field(default=None, pattern=E164_PATTERN)
    recipient_wallet_id: uuid.UUID | None = None
    amount: StrictInt = Field(gt=0, description="Minor units (XOF has none).")
    currency: str = Field(default="XOF", pattern=CURRENCY_PATTERN)
    note: str | None = Field(default=None, max_length=140)


class ProviderMoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0, description="Minor units (XOF has none).")
    currency: str = Field(default="XOF", pattern=CURRENCY_PATTERN)
    provider: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,32}$")


MONEY_ERRORS = problem_responses(
    "validation_error",
    "idempotency_key_missing",
    "idempotency_key_reused",
    "idempotency_request_in_progress",
    "insufficient_funds",
    "risk_denied",
    "not_authenticated",
    "rate_limited",
)

Authenticated = Annotated[Principal, Depends(current_principal)]
# Wallets belong to customers: staff accounts (support, admin) hold none and move no money.
Customer = Annotated[Principal, Depends(require_role("customer"))]


def payment_answer(result: PaymentResult, status_code: int = 201) -> Response:
    """A payment use case's answer over HTTP (money, merchant and card routes): a refusal as
    problem+json, anything else as the payment's view; a replay says so in a header."""
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    if result.outcome is Outcome.FAILED:
        return problem_response(str(result.body.get("code")), result.body.get("detail"), headers=headers)
    return JSONResponse(result.body, status_code=status_code, headers=headers)


@router.post(
    "/transfers",
    status_code=201,
    response_model=PaymentOut,
    responses=with_control_errors(with_anti_replay_errors(MONEY_ERRORS)),
    dependencies=[operation_open(Operation.P2P), fresh_request_required(TransferIn)],
)
async def create_transfer(
    body: TransferIn, principal: Customer, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Send money to another customer's wallet (by phone number or wallet id). Settles at once."""
    result = await services(request).payments.transfer(
        TransferCommand(
            user_id=principal.user_id,
            amount=body.amount,
            currency=body.currency,
            idempotency_key=idempotency_key,
            recipient_phone_number=body.recipient_phone_number,
            recipient_wallet_id=body.recipient_wallet_id,
            note=body.note,
            correlation_id=get_correlation_id(),
            device_id=principal.device_id,
        )
    )
    return payment_answer(result)


# Cash-in debits no account of ours (the provider pays in), so the anti-replay headers are
# checked when sent but not required (ADR 0012).
@router.post(
    "/cash-ins",
    status_code=201,
    response_model=PaymentOut,
    responses=with_control_errors(with_anti_replay_errors(MONEY_ERRORS)),
    dependencies=[operation_open(Operation.CASH_IN, ProviderMoveIn), fresh_request_accepted(ProviderMoveIn)],
)
async def create_cash_in(
    body: ProviderMoveIn, principal: Customer, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Fund the wallet from the customer's mobile-money account through a provider."""
    result = await services(request).payments.cash_in(_provider_command(body, principal, idempotency_key))
    return payment_answer(result)


@router.post(
    "/cash-outs",
    status_code=201,
    response_model=PaymentOut,
    responses=with_control_errors(with_anti_replay_errors(MONEY_ERRORS)),
    dependencies=[operation_open(Operation.CASH_OUT, ProviderMoveIn), fresh_request_required(ProviderMoveIn)],
)
async def create_cash_out(
    body: ProviderMoveIn, principal: Customer, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """Withdraw from the wallet to the customer's mobile-money account through a provider."""
    result = await services(request).payments.cash_out(_provider_command(body, principal, idempotency_key))
    return payment_answer(result)


def _provider_command(body: ProviderMoveIn, principal: Principal, key: str | None) -> ProviderMoveCommand:
    return ProviderMoveCommand(
        user_id=principal.user_id,
        amount=body.amount,
        currency=body.currency,
        idempotency_key=key,
        provider=body.provider,
        correlation_id=get_correlation_id(),
        device_id=principal.device_id,
    )


@router.get("/wallet", response_model=WalletOut, responses=problem_responses("not_authenticated"))
async def get_wallet(principal: Customer, request: Request) -> Any:
    """The caller's wallet: posted balance, and available balance (posted minus active holds)."""
    return await services(request).payments.wallet(principal.user_id)


@router.get("/wallet/entries", response_model=EntryPage, responses=problem_responses("not_authenticated"))
async def list_wallet_entries(
    principal: Customer,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")
    ] = None,
) -> Any:
    """The wallet's ledger entries, newest first."""
    items, next_cursor = await services(request).payments.wallet_entries(
        principal.user_id, limit=limit, cursor=int(cursor) if cursor else None
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/payments", response_model=PaymentPage, responses=problem_responses("not_authenticated"))
async def list_payments(
    principal: Customer,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")] = None,
) -> Any:
    """Payments the caller is a party to, newest first."""
    items, next_cursor = await services(request).payments.list_payments(principal.user_id, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/payments/{payment_id}",
    response_model=PaymentDetailOut,
    response_model_exclude_unset=True,
    responses=problem_responses("payment_not_found", "not_authenticated"),
)
async def get_payment(payment_id: uuid.UUID, principal: Authenticated, request: Request) -> Any:
    """One payment with its status history. Only its parties (or support/admin) may read it;
    support and admin also see its `flags` (mismatches reconciliation confirmed)."""
    privileged = principal.has_role("support") or principal.has_role("admin")
    return await services(request).payments.get_payment(payment_id, viewer=principal.user_id, privileged=privileged)
