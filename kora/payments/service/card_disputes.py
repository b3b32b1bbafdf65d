"""Chargebacks: the card scheme takes a payment back from the merchant, for the cardholder.

Applied once per payment: CAPTURED/SETTLED → CHARGED_BACK under the payment's row lock (a
second notification finds it CHARGED_BACK: a no-op), and the ledger's unique (payment, step)
index refuses a second `card.chargeback` posting. The posting credits acquirer clearing (the
acquirer took the money back) and debits the merchant's account. A merchant account is never
overdrawn — the ledger refuses it and so does a database trigger — so when it cannot cover the
whole amount, it is debited what it has and the shortfall is debited to the suspense account: a
receivable from the merchant that a person recovers, audited (`payment.card.chargeback_shortfall`)
and logged at ERROR. A chargeback that does not fit our books (more than was captured and not
refunded, another currency, a payment not captured) is flagged and not applied.
"""

from __future__ import annotations

from loguru import logger
from opentelemetry import trace

from kora.audit import AuditEvent
from kora.kernel import Clock, Money
from kora.ledger import AccountKind, Direction, InsufficientFunds, Leg
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType
from kora.payments.ports import PaymentsUnitOfWork, PaymentsUnitOfWorkFactory
from kora.payments.service.card_common import CardMetrics
from kora.providers import Chargeback

_tracer = trace.get_tracer("kora.payments")


class ChargebackBook:
    def __init__(self, *, uow_factory: PaymentsUnitOfWorkFactory, clock: Clock, metrics: CardMetrics) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._metrics = metrics

    async def record(self, chargeback: Chargeback, *, acquirer: str, correlation_id: str | None) -> str:
        """Returns `applied`, `duplicate` (already CHARGED_BACK), `unknown_payment` (not a card
        payment of this acquirer with this authorization) or `conflict` (flagged)."""
        with _tracer.start_as_current_span("payments.card.chargeback", attributes={"kora.acquirer": acquirer}) as span:
            outcome = await self._record(chargeback, acquirer, correlation_id)
            span.set_attribute("kora.chargeback.outcome", outcome)
        self._metrics.card_operation("chargeback", outcome)
        return outcome

    async def _record(self, chargeback: Chargeback, acquirer: str, correlation_id: str | None) -> str:
        if chargeback.payment_id is None:
            return "unknown_payment"
        async with self._uow() as uow:
            payment = await uow.payments.get(chargeback.payment_id, for_update=True)
            if not _is_acquirers(payment, acquirer, chargeback.authorization_id):
                return "unknown_payment"
            assert payment is not None
            if payment.status is PaymentStatus.CHARGED_BACK:
                # The same event id never gets here (its webhook receipt stops it): this is a
                # second dispute of the payment. Not applied, but never silently lost.
                await self._flag(uow, payment, chargeback, acquirer, "already_charged_back", correlation_id)
                await uow.commit()
                return "conflict"
            problem = _misfit(payment, chargeback)
            if problem is not None:
                await self._flag(uow, payment, chargeback, acquirer, problem, correlation_id)
                await uow.commit()
                return "conflict"
            covered = await self._post(uow, payment, chargeback, acquirer, correlation_id)
            payment.transition(
                PaymentStatus.CHARGED_BACK,
                at=self._clock.now(),
                reason=f"chargeback: {chargeback.reason}",
                actor=f"acquirer:{acquirer}",
            )
            await uow.payments.save(payment)
            shortfall = chargeback.amount - covered
            await uow.audit.record_many(_events(payment, chargeback, acquirer, covered, shortfall, correlation_id))
            await uow.commit()
        if shortfall:
            self._metrics.chargeback_shortfall(chargeback.currency, shortfall)
            logger.error(
                "chargeback exceeds the merchant's balance: shortfall debited to suspense",
                payment_id=str(payment.id),
                amount=chargeback.amount,
                shortfall=shortfall,
                currency=chargeback.currency,
            )
        logger.info(
            "card payment charged back", payment_id=str(payment.id), amount=chargeback.amount, reason=chargeback.reason
        )
        return "applied"

    async def _post(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        chargeback: Chargeback,
        acquirer: str,
        correlation_id: str | None,
    ) -> int:
        """Post the chargeback; returns how much the merchant's account covered."""
        code = payment.money.currency
        money = Money(chargeback.amount, code)
        merchant = payment.payee_wallet_id
        assert merchant is not None
        clearing = await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, code, acquirer)
        credit = Leg(clearing.id, Direction.CREDIT, money)
        try:
            await uow.ledger.post(
                kind="card.chargeback",
                legs=[Leg(merchant, Direction.DEBIT, money), credit],
                payment_id=payment.id,
                correlation_id=correlation_id,
            )
            return chargeback.amount
        except InsufficientFunds:
            pass  # nothing was written; the accounts stay locked, so the balance read next holds
        available = max((await uow.ledger.balance(merchant)).available, 0)
        covered = min(available, chargeback.amount)
        suspense = await uow.ledger.system_account(AccountKind.SUSPENSE, code)
        legs = [credit, Leg(suspense.id, Direction.DEBIT, Money(chargeback.amount - covered, code))]
        if covered:
            legs.append(Leg(merchant, Direction.DEBIT, Money(covered, code)))
        await uow.ledger.post(kind="card.chargeback", legs=legs, payment_id=payment.id, correlation_id=correlation_id)
        return covered

    async def _flag(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        chargeback: Chargeback,
        acquirer: str,
        problem: str,
        correlation_id: str | None,
    ) -> None:
        logger.error("chargeback does not fit the payment: not applied", payment_id=str(payment.id), problem=problem)
        await uow.audit.record(
            actor=f"acquirer:{acquirer}",
            action="payment.card.chargeback_conflict",
            subject=f"payment:{payment.id}",
            correlation_id=correlation_id,
            outcome="denied",
            details={
                "problem": problem,
                "amount": chargeback.amount,
                "currency": chargeback.currency,
                "recorded": payment.status.value,
                "event_id": chargeback.event_id[:64],
            },
        )


def _is_acquirers(payment: Payment | None, acquirer: str, authorization_id: str) -> bool:
    return (
        payment is not None
        and payment.type is PaymentType.CARD
        and payment.provider == acquirer
        and payment.provider_ref == authorization_id
        and payment.payee_wallet_id is not None
    )


def _misfit(payment: Payment, chargeback: Chargeback) -> str | None:
    if payment.status not in (PaymentStatus.CAPTURED, PaymentStatus.SETTLED):
        return "not_captured"
    if chargeback.currency != payment.money.currency:
        return "other_currency"
    if payment.pending_operation == "refund":
        # A refund is out at the acquirer: what the merchant still owes is not known until it
        # ends (applying both could claw back more than was paid). A person decides.
        return "refund_pending"
    if not 0 < chargeback.amount <= payment.refundable:
        return "amount_above_captured"
    return None


def _events(
    payment: Payment, chargeback: Chargeback, acquirer: str, covered: int, shortfall: int, correlation_id: str | None
) -> list[AuditEvent]:
    actor = f"acquirer:{acquirer}"
    details: dict[str, int | str | None] = {
        "amount": chargeback.amount,
        "currency": chargeback.currency,
        "reason": chargeback.reason,
        "merchant_covered": covered,
        "shortfall": shortfall,
        "event_id": chargeback.event_id[:64],
    }
    subject = f"payment:{payment.id}"
    events = [
        AuditEvent(
            actor=actor,
            action="payment.card.charged_back",
            subject=subject,
            correlation_id=correlation_id,
            details=details,
        )
    ]
    if shortfall:
        events.append(
            AuditEvent(
                actor=actor,
                action="payment.card.chargeback_shortfall",
                subject=subject,
                correlation_id=correlation_id,
                outcome="failure",
                details={
                    "shortfall": shortfall,
                    "currency": chargeback.currency,
                    "merchant_user_id": str(payment.payee_user_id),
                },
            )
        )
    return events
