"""Merchant payments and refunds. Both are internal: each posts and settles in one transaction.

Postings (DESIGN.md): a merchant payment debits the customer's wallet by the amount and credits
the merchant's account with the amount less the fee, and fee revenue with the fee; a refund
debits the merchant's account and credits the customer's wallet. The fee is not given back on a
refund (common practice: the payment was processed, the cost was incurred), so refunding a
payment in full debits the merchant the full amount. A merchant is paid to its merchant account
id (`merchant_id`), which exists only for users granted the merchant role.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from opentelemetry import trace

from kora.audit import AuditEvent
from kora.kernel import Money, new_id
from kora.ledger import AccountKind, Direction, LedgerError, Leg
from kora.payments.domain.errors import PaymentNotFound, RecipientNotFound, SameWallet
from kora.payments.domain.idempotency import IdempotencyRequest, Outcome, fingerprint, validate_key
from kora.payments.domain.model import (
    InvalidFee,
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentType,
    RefundNotAllowed,
)
from kora.payments.domain.risk import RiskOutcome
from kora.payments.ports import PaymentsUnitOfWork
from kora.payments.service.base import UNKNOWN_DEVICE, PaymentResult, PaymentsBase

_tracer = trace.get_tracer("kora.payments")

# A merchant's order reference: an opaque token, never free text (it must not carry PII).
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}")
# The merchant's list is filtered from the party index; at most this many rows are read a page.
_SCAN_LIMIT = 1_000


class InvalidReference(PaymentError):
    code = "invalid_reference"


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The merchant fee: `bps` basis points (1/100 %) of the amount, rounded half up to a whole
    minor unit, and at least `minimum` minor units. Integer arithmetic only."""

    bps: int = 100
    minimum: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.bps < 10_000:
            raise ValueError("the merchant fee is 0 to 9999 basis points")
        if self.minimum < 0:
            raise ValueError("the minimum merchant fee cannot be negative")

    def fee_for(self, amount: int) -> int:
        return max((amount * self.bps + 5_000) // 10_000, self.minimum)


@runtime_checkable
class FeeMetrics(Protocol):
    def fee_collected(self, currency: str, amount: int) -> None: ...


class RefundReason(enum.StrEnum):
    """Why a merchant refunds: a closed list, so no free text (and no PII) is stored."""

    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class MerchantPaymentCommand:
    user_id: uuid.UUID
    merchant_id: uuid.UUID  # the merchant's account id (GET /v1/merchant/balance shows it)
    amount: int
    currency: str
    idempotency_key: str | None
    reference: str | None = None
    correlation_id: str | None = None
    # The caller's device (from its session): the risk engine's device binding.
    device_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {
            "merchant_id": str(self.merchant_id),
            "amount": self.amount,
            "currency": self.currency,
            "reference": self.reference,
        }


@dataclass(frozen=True, slots=True)
class RefundCommand:
    merchant_user_id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    idempotency_key: str | None
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER
    correlation_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {"payment_id": str(self.payment_id), "amount": self.amount, "reason": self.reason.value}


def merchant_view(payment: Payment) -> dict[str, Any]:
    """The payment's view plus the merchant's order reference (`merchant_reference`; payments
    made before that column existed kept it in `provider_ref`, having no provider)."""
    view = payment.view()
    view["reference"] = (
        (payment.merchant_reference or payment.provider_ref) if payment.type is PaymentType.MERCHANT else None
    )
    return view


class MerchantPayments(PaymentsBase):
    """Paying a merchant, a merchant's refunds, and what a merchant reads."""

    def __init__(self, *, fees: FeeSchedule | None = None, **deps: Any) -> None:
        super().__init__(**deps)
        self._fees = fees or FeeSchedule()
        self._fee_metrics = self._metrics if isinstance(self._metrics, FeeMetrics) else None

    def fee_for(self, amount: int) -> int:
        """The fee a merchant payment of `amount` pays; InvalidFee when it would not be less."""
        fee = self._fees.fee_for(amount)
        if fee >= amount:
            raise InvalidFee(f"the amount must be more than the merchant fee ({fee})")
        return fee

    # ----------------------------------------------------------------- paying a merchant
    async def pay_merchant(self, cmd: MerchantPaymentCommand) -> PaymentResult:
        """Pay a merchant from the customer's wallet; settles at once. The fee is computed now
        and stored on the payment. Refusals (unknown merchant, insufficient funds) are stored
        against the Idempotency-Key and replayed; malformed input raises and stores nothing."""
        money = self._money(cmd.amount, cmd.currency)
        if cmd.reference is not None and not _REFERENCE.fullmatch(cmd.reference):
            raise InvalidReference("a reference is 1-64 letters, digits or . _ : / # -")
        fee = self.fee_for(money.amount)
        idem = IdempotencyRequest(
            f"user:{cmd.user_id}",
            validate_key(cmd.idempotency_key),
            fingerprint("merchant_payment", cmd.fingerprint_body()),
        )
        actor = f"user:{cmd.user_id}"
        with _tracer.start_as_current_span("payments.pay_merchant") as span:
            result = await self._under_key(
                idem,
                lambda: self._pay(cmd, money, fee, idem, actor),
                refusals=(LedgerError, RecipientNotFound, SameWallet),
                payment_type=PaymentType.MERCHANT,
                actor=actor,
                correlation_id=cmd.correlation_id,
            )
            if result.outcome is Outcome.FAILED:
                span.set_attribute("kora.payment.refused", str(result.body.get("code")))
        return result

    async def _pay(
        self, cmd: MerchantPaymentCommand, money: Money, fee: int, idem: IdempotencyRequest, actor: str
    ) -> PaymentResult:
        async with self._uow() as uow:
            at = self._clock.now()
            payment_id = new_id()
            replay = await self._start(uow, idem, payment_id)
            if replay is not None:
                return replay
            account = await uow.ledger.account(cmd.merchant_id)
            if account is None or account.kind is not AccountKind.MERCHANT or account.currency != money.currency:
                raise RecipientNotFound("no merchant with this id")
            merchant_user = uuid.UUID(account.owner_ref)
            if merchant_user == cmd.user_id:
                raise SameWallet("a merchant cannot pay itself")
            wallet = await self._wallet_id(uow, cmd.user_id)
            payment = Payment.initiate(
                payment_id=payment_id,
                type=PaymentType.MERCHANT,
                money=money,
                fee=fee,
                at=at,
                initiated_by=cmd.user_id,
                actor=actor,
                payer_wallet_id=wallet,
                payee_wallet_id=account.id,
                payer_user_id=cmd.user_id,
                payee_user_id=merchant_user,
                correlation_id=cmd.correlation_id,
            )
            payment.merchant_reference = cmd.reference
            verdict = await self._risk.assess(uow, payment, device_id=cmd.device_id or UNKNOWN_DEVICE, settles_now=True)
            if verdict.outcome is RiskOutcome.DENY:
                return await self._refuse_for_risk(uow, payment, verdict, idem, actor)
            if verdict.outcome is RiskOutcome.REVIEW:
                return await self._hold_for_review(uow, payment, verdict, idem, hold_funds=True, view=merchant_view)
            payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="funds checked", actor=actor)
            legs = [
                Leg(wallet, Direction.DEBIT, money),
                Leg(account.id, Direction.CREDIT, Money(money.amount - fee, money.currency)),
            ]
            if fee:
                revenue = await uow.ledger.system_account(AccountKind.FEE_REVENUE, money.currency)
                legs.append(Leg(revenue.id, Direction.CREDIT, Money(fee, money.currency)))
            await uow.ledger.post(kind="merchant", legs=legs, payment_id=payment.id, correlation_id=cmd.correlation_id)
            payment.capture(at=at, reason="posted to ledger", actor=actor, settlement_due=None)
            payment.transition(PaymentStatus.SETTLED, at=at, reason="internal payment settles at once", actor="system")
            await uow.payments.add(payment)
            view = merchant_view(payment)
            await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
            await uow.audit.record_many(
                [
                    AuditEvent(
                        actor=actor,
                        action="payment.merchant.settled",
                        subject=f"payment:{payment.id}",
                        correlation_id=cmd.correlation_id,
                        details={
                            "amount": money.amount,
                            "currency": money.currency,
                            "fee": fee,
                            "merchant_account_id": str(account.id),
                            **verdict.audit_details(),
                        },
                    )
                ]
            )
            await uow.commit()
        self._metrics.ledger_posted("merchant", uow.ledger.last_posting_seconds)
        self._finished(payment)
        if fee and self._fee_metrics is not None:
            self._fee_metrics.fee_collected(money.currency, fee)
        return PaymentResult(Outcome.SUCCEEDED, view)

    # ----------------------------------------------------------------- refunds
    async def refund(self, cmd: RefundCommand) -> PaymentResult:
        """Refund (part of) a merchant payment the caller received, to the customer's wallet; a
        new REFUND payment pointing at it, settled at once. Repeated refunds never exceed what
        was captured (the original payment's row is locked while counting). Refused, and stored
        against the key: not the caller's payment (payment_not_found), more than is left
        (refund_not_allowed), a merchant balance short of the amount (insufficient_funds)."""
        money = self._money(cmd.amount, self._config.wallet_currency)
        idem = IdempotencyRequest(
            f"user:{cmd.merchant_user_id}",
            validate_key(cmd.idempotency_key),
            fingerprint("refund", cmd.fingerprint_body()),
        )
        actor = f"user:{cmd.merchant_user_id}"
        with _tracer.start_as_current_span("payments.refund") as span:
            result = await self._under_key(
                idem,
                lambda: self._refund(cmd, money, idem, actor),
                refusals=(LedgerError, PaymentNotFound, RefundNotAllowed),
                payment_type=PaymentType.REFUND,
                actor=actor,
                correlation_id=cmd.correlation_id,
            )
            if result.outcome is Outcome.FAILED:
                span.set_attribute("kora.payment.refused", str(result.body.get("code")))
        return result

    async def _refund(self, cmd: RefundCommand, money: Money, idem: IdempotencyRequest, actor: str) -> PaymentResult:
        async with self._uow() as uow:
            at = self._clock.now()
            refund_id = new_id()
            replay = await self._start(uow, idem, refund_id)
            if replay is not None:
                return replay
            # Locked until commit: concurrent refunds of one payment are counted one after the other.
            original = await uow.payments.get(cmd.payment_id, for_update=True)
            if (
                original is None
                or original.type is not PaymentType.MERCHANT
                or original.payee_user_id != cmd.merchant_user_id
                or original.payee_wallet_id is None
                or original.payer_wallet_id is None
            ):
                raise PaymentNotFound("no such payment")
            if original.money.currency != money.currency:
                raise RefundNotAllowed(f"the payment was made in {original.money.currency}")
            original.record_refund(money.amount)
            refund = Payment.initiate(
                payment_id=refund_id,
                type=PaymentType.REFUND,
                money=money,
                at=at,
                initiated_by=cmd.merchant_user_id,
                actor=actor,
                payer_wallet_id=original.payee_wallet_id,
                payee_wallet_id=original.payer_wallet_id,
                payer_user_id=cmd.merchant_user_id,
                payee_user_id=original.payer_user_id,
                correlation_id=cmd.correlation_id,
                parent_id=original.id,
            )
            refund.transition(PaymentStatus.AUTHORIZED, at=at, reason=f"refund: {cmd.reason.value}", actor=actor)
            await uow.ledger.post(
                kind="refund",
                legs=[
                    Leg(original.payee_wallet_id, Direction.DEBIT, money),
                    Leg(original.payer_wallet_id, Direction.CREDIT, money),
                ],
                payment_id=refund.id,
                correlation_id=cmd.correlation_id,
            )
            refund.capture(at=at, reason="posted to ledger", actor=actor, settlement_due=None)
            refund.transition(PaymentStatus.SETTLED, at=at, reason="internal refund settles at once", actor="system")
            await uow.payments.add(refund)
            await uow.payments.save(original)
            view = merchant_view(refund)
            await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
            await uow.audit.record_many(_refund_events(cmd, actor, refund, original))
            await uow.commit()
        self._metrics.ledger_posted("refund", uow.ledger.last_posting_seconds)
        self._finished(refund)
        return PaymentResult(Outcome.SUCCEEDED, view)

    # ----------------------------------------------------------------- the merchant's reads
    async def open_merchant_account(self, merchant_user_id: uuid.UUID) -> uuid.UUID:
        """The merchant's account id, opened if absent (when the merchant role is granted)."""
        async with self._uow() as uow:
            account_id = await self._merchant_account_id(uow, merchant_user_id)
            await uow.commit()
        return account_id

    async def merchant_balance(self, merchant_user_id: uuid.UUID) -> dict[str, Any]:
        """The merchant's account id (what customers pay to) and its balance."""
        async with self._uow() as uow:
            account_id = await self._merchant_account_id(uow, merchant_user_id)
            balance = await uow.ledger.balance(account_id)
            await uow.commit()
        return {
            "merchant_id": str(account_id),
            "currency": balance.currency,
            "balance": balance.posted,
            "available_balance": balance.available,
        }

    async def merchant_payments(
        self, merchant_user_id: uuid.UUID, *, limit: int, cursor: uuid.UUID | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Payments the merchant received and refunds it made, newest first. A page may hold
        fewer than `limit` items while `next_cursor` is set: the end is `next_cursor` null."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        page: list[Payment] = []
        scanned = 0
        before = cursor
        batch = min(limit * 2, _SCAN_LIMIT)
        async with self._uow() as uow:
            while True:
                rows = await uow.payments.list_for_user(merchant_user_id, limit=batch, before_id=before)
                exhausted = len(rows) < batch
                for row in rows:
                    scanned += 1
                    before = row.id
                    if _is_merchants(row, merchant_user_id):
                        page.append(row)
                        if len(page) == limit:
                            break
                views = [merchant_view(p) for p in page]
                if len(page) == limit:
                    last_of_all = exhausted and before == rows[-1].id
                    return views, None if last_of_all else str(before)
                if exhausted:
                    return views, None
                if scanned >= _SCAN_LIMIT:  # a short page; the cursor goes on from where it stopped
                    return views, str(before)

    async def _merchant_account_id(self, uow: PaymentsUnitOfWork, merchant_user_id: uuid.UUID) -> uuid.UUID:
        return (await uow.ledger.open_merchant_account(merchant_user_id, self._config.wallet_currency)).id


def _is_merchants(payment: Payment, merchant_user_id: uuid.UUID) -> bool:
    if payment.type in (PaymentType.MERCHANT, PaymentType.CARD):  # what the merchant was paid
        return payment.payee_user_id == merchant_user_id
    return payment.type is PaymentType.REFUND and payment.payer_user_id == merchant_user_id


def _refund_events(cmd: RefundCommand, actor: str, refund: Payment, original: Payment) -> list[AuditEvent]:
    return [
        AuditEvent(
            actor=actor,
            action="payment.refund.settled",
            subject=f"payment:{refund.id}",
            correlation_id=cmd.correlation_id,
            details={
                "amount": refund.money.amount,
                "currency": refund.money.currency,
                "parent_id": str(original.id),
                "reason": cmd.reason.value,
            },
        ),
        AuditEvent(
            actor=actor,
            action="payment.merchant.refunded",
            subject=f"payment:{original.id}",
            correlation_id=cmd.correlation_id,
            details={"refund_id": str(refund.id), "refunded_amount": original.refunded_amount},
        ),
    ]
