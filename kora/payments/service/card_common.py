"""What the card payment use cases share: commands, the view, refusals, metrics and the call to
an acquirer (with its span, its metric and "an exception is an unknown outcome")."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from loguru import logger
from opentelemetry import trace

from kora.payments.domain.errors import PaymentNotFound, UnknownProvider
from kora.payments.domain.model import Payment, PaymentError, PaymentStatus, PaymentType
from kora.payments.ports import CardAcquirerRegistry
from kora.payments.service.merchant import RefundReason
from kora.providers import CardAcquirer, CardOutcome, CardResult

_tracer = trace.get_tracer("kora.payments")
T = TypeVar("T")

# A card token as the acquirer's vault issues it: opaque letters and digits, never logged.
CARD_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{12,64}$"  # noqa: S105 (a format, not a secret)
CARD_TOKEN = re.compile(CARD_TOKEN_PATTERN)
# Reasons a card payment ends FAILED without a decline (the acquirer's declines pass through).
VOIDED = "voided"
UNRESOLVED = "authorization_unresolved"
REFUND_UNRESOLVED = "refund_unresolved"


class InvalidCardToken(PaymentError):
    code = "invalid_card_token"


class CardOperationInProgress(PaymentError):
    code = "card_operation_in_progress"


@runtime_checkable
class CardMetrics(Protocol):
    def card_operation(self, operation: str, outcome: str) -> None:
        """An operation on a card payment ended (`operation`: authorize, capture, void, refund,
        chargeback, expiry; `outcome`: succeeded, declined, pending, unavailable, refused...)."""
        ...

    def chargeback_shortfall(self, currency: str, amount: int) -> None:
        """A chargeback the merchant's account could not cover: `amount` went to suspense."""
        ...


class NullCardMetrics:
    def card_operation(self, operation: str, outcome: str) -> None:
        pass

    def chargeback_shortfall(self, currency: str, amount: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class CardPaymentCommand:
    """A merchant takes a card payment: authorize `amount` on the card the token names."""

    merchant_user_id: uuid.UUID
    amount: int
    currency: str
    card_token: str = field(repr=False)  # sensitive: to the acquirer only
    idempotency_key: str | None = None
    reference: str | None = None
    acquirer: str | None = None
    correlation_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        # Only the token's last four characters: the stored fingerprint must not let anyone
        # test guesses of a card number against it.
        return {
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
            "acquirer": self.acquirer,
            "card": self.card_token[-4:],
        }


@dataclass(frozen=True, slots=True)
class CardOperationCommand:
    """Capture (`amount` None: all that was authorized) or void a card payment."""

    merchant_user_id: uuid.UUID
    payment_id: uuid.UUID
    idempotency_key: str | None
    amount: int | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class CardRefundCommand:
    merchant_user_id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    idempotency_key: str | None
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER
    correlation_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {"payment_id": str(self.payment_id), "amount": self.amount, "reason": self.reason.value}


def card_view(payment: Payment) -> dict[str, Any]:
    """The payment's view plus what a card payment adds: the merchant's order reference, the
    acquirer's authorization id and expiry, and the operation still pending at the acquirer
    (the route answers 202 while there is one)."""
    view = payment.view()
    view["reference"] = payment.merchant_reference
    view["authorization_id"] = payment.provider_ref if payment.type is PaymentType.CARD else None
    expires = payment.authorization_expires_at
    view["authorization_expires_at"] = expires.isoformat() if expires else None
    view["pending_operation"] = payment.pending_operation
    return view


def is_merchants_card_payment(payment: Payment | None, merchant_user_id: uuid.UUID) -> bool:
    return (
        payment is not None
        and payment.type is PaymentType.CARD
        and payment.payee_user_id == merchant_user_id
        and payment.payee_wallet_id is not None
    )


def merchants_card_payment(payment: Payment | None, merchant_user_id: uuid.UUID) -> Payment:
    """`payment` when it is a card payment of this merchant; PaymentNotFound otherwise (another
    merchant's payment is not found either: no hint that it exists)."""
    if payment is None or not is_merchants_card_payment(payment, merchant_user_id):
        raise PaymentNotFound("no such card payment")
    return payment


def acquirer_named(acquirers: CardAcquirerRegistry, name: str | None) -> CardAcquirer:
    chosen = name or acquirers.default
    acquirer = acquirers.get(chosen) if chosen else None
    if acquirer is None:
        raise UnknownProvider(
            f"card acquirer {chosen!r} is not configured" if chosen else "no card acquirer configured"
        )
    return acquirer


def failure(code: str, detail: str) -> dict[str, Any]:
    return {"code": code, "detail": detail}


def outcome_word(result: CardResult) -> str:
    """The metric's outcome label for an acquirer's answer."""
    if result.outcome is CardOutcome.FAILED:
        return "unavailable" if result.not_accepted else "declined"
    return result.outcome.value


async def call_acquirer(
    acquirer: CardAcquirer, operation: str, call: Callable[[], Awaitable[CardResult]], metrics: CardMetrics
) -> CardResult:
    """One acquirer call in its span. An exception out of the adapter is an unknown outcome:
    PENDING, never a failure (the request may have reached the acquirer)."""
    with _tracer.start_as_current_span(f"acquirer.{acquirer.name}.{operation}") as span:
        try:
            result = await call()
        except Exception as exc:
            logger.opt(exception=exc).warning("card acquirer call ended without an answer", acquirer=acquirer.name)
            result = CardResult(CardOutcome.PENDING)
        span.set_attribute("kora.acquirer.outcome", result.outcome.value)
        if result.failure_code:
            span.set_attribute("kora.acquirer.failure", result.failure_code)
    metrics.card_operation(operation, outcome_word(result))
    return result


def unresolved(payment: Payment) -> bool:
    return payment.status in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED)
