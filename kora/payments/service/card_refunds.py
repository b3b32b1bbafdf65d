"""Money going back to a card: a merchant's refunds (ADR 0014) and the acquirer's chargebacks.

Refund: a new REFUND payment with `parent_id`, AUTHORIZED while the acquirer is asked, with a
hold on the merchant's account for the amount (so it stays covered). When the acquirer confirms,
the hold is captured by the posting debit merchant account / credit acquirer clearing, the
original counts the refund (`Payment.record_refund`, under its row lock: never more than was
captured) and the refund is CAPTURED, settled J+N with the acquirer's settlement. A refusal
releases the hold. An unknown answer leaves it pending: refunds are not deduplicated by every
acquirer, so it is never re-sent; the resolution job reads the authorization's refunded total.
For that reading to be exact, a payment has at most one refund pending at the acquirer at a time
(another is refused `card_operation_in_progress` meanwhile).

Chargeback: the acquirer's signed notification moves the payment CAPTURED/SETTLED →
CHARGED_BACK and posts debit merchant account / credit acquirer clearing. A merchant account is
never overdrawn (the ledger and a database trigger refuse it), so what it cannot cover is debited
to the suspense account instead, audited and logged for a person to recover from the merchant.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.kernel import Money
from kora.ledger import AccountKind, Direction, LedgerError, Leg
from kora.payments.domain.errors import PaymentNotFound
from kora.payments.domain.idempotency import IdempotencyRequest, Outcome, fingerprint, validate_key
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType, RefundNotAllowed
from kora.payments.ports import CardAcquirerRegistry, PaymentsUnitOfWork
from kora.payments.service.base import PaymentResult, PaymentsBase
from kora.payments.service.card_common import (
    REFUND_UNRESOLVED,
    CardMetrics,
    CardOperationInProgress,
    CardRefundCommand,
    NullCardMetrics,
    acquirer_named,
    call_acquirer,
    card_view,
    merchants_card_payment,
)
from kora.payments.service.card_disputes import ChargebackBook
from kora.payments.service.provider_answers import settlement_due
from kora.providers import AuthorizationState, CardOutcome, CardResult, Chargeback

_tracer = trace.get_tracer("kora.payments")


class CardRefunds(PaymentsBase):
    """Refunds of card payments, and the acquirer's chargebacks."""

    def __init__(self, *, acquirers: CardAcquirerRegistry, **deps: Any) -> None:
        super().__init__(**deps)
        self._acquirers = acquirers
        self._card_metrics: CardMetrics = self._metrics if isinstance(self._metrics, CardMetrics) else NullCardMetrics()
        self._chargebacks = ChargebackBook(uow_factory=self._uow, clock=self._clock, metrics=self._card_metrics)

    # ----------------------------------------------------------------- refunds
    async def refund(self, cmd: CardRefundCommand) -> PaymentResult:
        """Refund (part of) a captured card payment to the card. Refused, and stored against the
        key: not the merchant's payment (payment_not_found), more than is left
        (refund_not_allowed), a merchant balance short of it (insufficient_funds), a refund of
        it still pending at the acquirer (card_operation_in_progress)."""
        money = self._money(cmd.amount, self._config.wallet_currency)
        idem = IdempotencyRequest(
            f"user:{cmd.merchant_user_id}",
            validate_key(cmd.idempotency_key),
            fingerprint("card_refund", cmd.fingerprint_body()),
        )
        actor = f"user:{cmd.merchant_user_id}"
        with _tracer.start_as_current_span("payments.card.refund") as span:
            refused = False

            def on_refused(_: Exception) -> None:
                nonlocal refused
                refused = True
                self._card_metrics.card_operation("refund", "refused")

            started = await self._under_key(
                idem,
                lambda: self._begin_refund(cmd, money, idem, actor),
                refusals=(LedgerError, PaymentNotFound, RefundNotAllowed, CardOperationInProgress),
                payment_type=PaymentType.REFUND,
                actor=actor,
                correlation_id=cmd.correlation_id,
                on_refused=on_refused,
            )
            if isinstance(started, PaymentResult):
                if refused:
                    span.set_attribute("kora.payment.refused", str(started.body.get("code")))
                return started
            refund, original = started
            return await asyncio.shield(self._refund_at(refund, original, idem, cmd.correlation_id))

    async def _begin_refund(
        self, cmd: CardRefundCommand, money: Money, idem: IdempotencyRequest, actor: str
    ) -> PaymentResult | tuple[Payment, Payment]:
        async with self._uow() as uow:
            at = self._clock.now()
            refund = Payment.initiate(
                type=PaymentType.REFUND,
                money=money,
                at=at,
                initiated_by=cmd.merchant_user_id,
                actor=actor,
                payer_user_id=cmd.merchant_user_id,
                correlation_id=cmd.correlation_id,
                parent_id=cmd.payment_id,
            )
            replay = await self._start(uow, idem, refund.id)
            if replay is not None:
                return replay
            # Locked until commit: refunds of one payment are counted one after the other.
            original = merchants_card_payment(
                await uow.payments.get(cmd.payment_id, for_update=True), cmd.merchant_user_id
            )
            if original.pending_operation == "refund":
                raise CardOperationInProgress("a refund of this payment is still pending at the acquirer")
            if original.money.currency != money.currency:
                raise RefundNotAllowed(f"the payment was made in {original.money.currency}")
            if not 0 < money.amount <= original.refundable:
                raise RefundNotAllowed(f"at most {original.refundable} can still be refunded")
            assert original.payee_wallet_id is not None
            await uow.ledger.place_hold(original.payee_wallet_id, money, payment_id=refund.id)
            refund.payer_wallet_id = original.payee_wallet_id
            refund.provider = original.provider
            refund.transition(PaymentStatus.AUTHORIZED, at=at, reason=f"refund: {cmd.reason.value}", actor=actor)
            refund.pending_operation = original.pending_operation = "refund"
            original.updated_at = at
            await uow.payments.add(refund)
            await uow.payments.save(original)
            await uow.audit.record(
                actor=actor,
                action="payment.refund.authorized",
                subject=f"payment:{refund.id}",
                correlation_id=cmd.correlation_id,
                details={
                    "amount": money.amount,
                    "currency": money.currency,
                    "parent_id": str(original.id),
                    "reason": cmd.reason.value,
                },
            )
            await uow.commit()
        return refund, original

    async def _refund_at(
        self, refund: Payment, original: Payment, idem: IdempotencyRequest, correlation_id: str | None
    ) -> PaymentResult:
        acquirer = acquirer_named(self._acquirers, original.provider)
        authorization_id = original.provider_ref or ""
        result = await call_acquirer(
            acquirer,
            "refund",
            lambda: acquirer.refund(authorization_id, refund.money, reference=refund.id, correlation_id=correlation_id),
            self._card_metrics,
        )
        done = await self.record_refund(refund.id, result, actor=f"acquirer:{acquirer.name}", idem=idem)
        return PaymentResult(Outcome.SUCCEEDED, card_view(done))

    async def record_refund(
        self, refund_id: uuid.UUID, result: CardResult, *, actor: str, idem: IdempotencyRequest | None = None
    ) -> Payment:
        """The acquirer's word on a pending refund: confirmed (posted, counted on the original,
        CAPTURED), refused (hold released, FAILED) or still unknown (left as it is)."""
        async with self._uow() as uow:
            refund = await uow.payments.get(refund_id)
            if refund is None or refund.parent_id is None:  # pragma: no cover - committed before
                raise PaymentNotFound(str(refund_id))
            # The original first, then the refund: ids are time-ordered, so this is id order,
            # the order every other path locks payment rows in.
            original = await uow.payments.get(refund.parent_id, for_update=True)
            refund = await uow.payments.get(refund_id, for_update=True)
            assert original is not None
            assert refund is not None
            changed = refund.status is PaymentStatus.AUTHORIZED and result.outcome is not CardOutcome.PENDING
            if changed:
                if result.outcome is CardOutcome.SUCCEEDED:
                    await self._confirm(uow, refund, original, result, actor)
                else:
                    await self._refused(uow, refund, original, result.failure_code or "refund_declined", actor)
                await uow.payments.save(original)
                await uow.payments.save(refund)
            elif refund.status is PaymentStatus.FAILED and result.outcome is CardOutcome.SUCCEEDED:
                # The acquirer paid a refund we had given up on (its hold is released): the
                # shopper may be paid twice if the merchant refunds again. Never silent.
                logger.error("acquirer confirmed a refund recorded as failed", refund_id=str(refund.id))
                await self._audit(uow, refund, original, actor, "payment.refund.conflicting_answer")
            view = card_view(refund)
            if idem is None:  # the job: the creating request's replay says how it ended
                record = await uow.idempotency.find_by_payment(refund.id)
                idem = None if record is None else IdempotencyRequest(record.scope, record.key, record.fingerprint)
            if idem is not None:
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
            await uow.commit()
        if changed:
            if refund.status is PaymentStatus.CAPTURED:
                self._metrics.ledger_posted("card.refund", uow.ledger.last_posting_seconds)
            self._finished(refund)
        return refund

    async def _confirm(
        self, uow: PaymentsUnitOfWork, refund: Payment, original: Payment, result: CardResult, actor: str
    ) -> None:
        at = self._clock.now()
        money = refund.money
        assert refund.payer_wallet_id is not None
        clearing = await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, money.currency, refund.provider or "")
        hold = await uow.ledger.active_hold_for_payment(refund.id)
        await uow.ledger.post(
            kind="card.refund",
            legs=[Leg(refund.payer_wallet_id, Direction.DEBIT, money), Leg(clearing.id, Direction.CREDIT, money)],
            payment_id=refund.id,
            correlation_id=refund.correlation_id,
            capture_holds=[hold.id] if hold is not None else (),
        )
        if money.amount <= original.refundable:
            original.record_refund(money.amount)
        else:  # e.g. charged back meanwhile: the money did go out, so it is posted — and flagged
            logger.error("refund confirmed beyond what the payment still allows", refund_id=str(refund.id))
            await self._audit(uow, refund, original, actor, "payment.refund.conflicting_answer")
        original.pending_operation = refund.pending_operation = None
        refund.provider_ref = result.reference or refund.provider_ref
        due = settlement_due(at, self._providers.settlement_days(refund.provider or ""))
        refund.capture(at=at, reason="refunded at the acquirer", actor=actor, settlement_due=due)
        await self._audit(uow, refund, original, actor, "payment.refund.captured")

    async def _refused(
        self, uow: PaymentsUnitOfWork, refund: Payment, original: Payment, code: str, actor: str
    ) -> None:
        hold = await uow.ledger.active_hold_for_payment(refund.id)
        if hold is not None:
            await uow.ledger.release_hold(hold.id)
        original.pending_operation = refund.pending_operation = None
        original.updated_at = self._clock.now()
        refund.fail(at=self._clock.now(), code=code, actor=actor)
        await self._audit(uow, refund, original, actor, "payment.refund.failed")

    async def _audit(
        self, uow: PaymentsUnitOfWork, refund: Payment, original: Payment, actor: str, action: str
    ) -> None:
        await uow.audit.record(
            actor=actor,
            action=action,
            subject=f"payment:{refund.id}",
            correlation_id=refund.correlation_id,
            outcome="failure" if refund.status is PaymentStatus.FAILED else "success",
            details={
                "amount": refund.money.amount,
                "currency": refund.money.currency,
                "parent_id": str(original.id),
                "refunded_amount": original.refunded_amount,
                "code": refund.failure_code,
            },
        )

    async def resolve_refund(self, refund: Payment, *, now: datetime, give_up_after: timedelta) -> str:
        """A refund left pending: the acquirer's refunded total for the authorization says
        whether it happened. Exactly our confirmed refunds plus this one: confirmed. Exactly our
        confirmed refunds: not (yet) done there; after `give_up_after` it ends FAILED
        (`refund_unresolved`, hold released). Anything else contradicts our books: flagged."""
        original = await self._get(refund.parent_id)
        if original is None or not original.provider_ref or refund.status is not PaymentStatus.AUTHORIZED:
            return "still_pending"
        acquirer = acquirer_named(self._acquirers, original.provider)
        with _tracer.start_as_current_span(f"acquirer.{acquirer.name}.status"):
            status = await acquirer.status(original.provider_ref, correlation_id=refund.correlation_id)
        if not status.known:
            return "unreachable" if status.state is AuthorizationState.UNREACHABLE else "still_pending"
        actor = f"acquirer:{acquirer.name}"
        if status.refunded_amount == original.refunded_amount + refund.money.amount:
            await self.record_refund(refund.id, CardResult(CardOutcome.SUCCEEDED), actor=actor)
            self._metrics.late_confirmation(PaymentType.REFUND.value)
            return "refunded"
        if status.refunded_amount != original.refunded_amount:
            logger.error(
                "acquirer refunded total contradicts our refunds",
                payment_id=str(original.id),
                refund_id=str(refund.id),
                acquirer_refunded=status.refunded_amount,
                recorded=original.refunded_amount,
            )
            return "conflict"
        if now - refund.created_at < give_up_after:
            return "still_pending"
        await self.record_refund(
            refund.id, CardResult(CardOutcome.FAILED, failure_code=REFUND_UNRESOLVED), actor="system"
        )
        return "gave_up"

    async def _get(self, payment_id: uuid.UUID | None) -> Payment | None:
        if payment_id is None:
            return None
        async with self._uow() as uow:
            return await uow.payments.get(payment_id)

    # ----------------------------------------------------------------- chargebacks
    async def record_chargeback(self, chargeback: Chargeback, *, acquirer: str, correlation_id: str | None) -> str:
        """Apply an acquirer's chargeback once; see `ChargebackBook.record`."""
        return await self._chargebacks.record(chargeback, acquirer=acquirer, correlation_id=correlation_id)
