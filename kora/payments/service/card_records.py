"""Recording what an acquirer said about a card payment, one short transaction each, under the
payment's row lock. Shared by the requests (capture, void...) and the resolution job, so every
path applies the same rules. Each method is idempotent: a payment already in a definite state
is left as it is, and an answer contradicting it is flagged for a person, never applied."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from kora.audit import AuditEvent
from kora.kernel import Clock, Money
from kora.ledger import AccountKind, Direction, Leg
from kora.payments.domain.errors import PaymentNotFound
from kora.payments.domain.failures import failure_cause
from kora.payments.domain.idempotency import IdempotencyRequest, Outcome
from kora.payments.domain.model import InvalidFee, Payment, PaymentStatus
from kora.payments.ports import PaymentsUnitOfWork, PaymentsUnitOfWorkFactory, ProviderRegistry
from kora.payments.service.base import PaymentMetrics
from kora.payments.service.card_common import UNRESOLVED, VOIDED, card_view, unresolved
from kora.payments.service.merchant import FeeMetrics, FeeSchedule
from kora.payments.service.provider_answers import settlement_due
from kora.providers import AuthorizationState, CardAcquirer, CardOutcome, CardResult

# What the resolution job reports for an authorization, by what the acquirer says of it.
_ENDING = {
    AuthorizationState.VOIDED: (VOIDED, "voided"),
    AuthorizationState.EXPIRED: ("authorization_expired", "expired"),
}


class CardRecords:
    def __init__(
        self,
        *,
        uow_factory: PaymentsUnitOfWorkFactory,
        clock: Clock,
        providers: ProviderRegistry,
        fees: FeeSchedule,
        metrics: PaymentMetrics,
        fee_metrics: FeeMetrics | None,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._providers = providers
        self._fees = fees
        self._metrics = metrics
        self._fee_metrics = fee_metrics

    # ----------------------------------------------------------------- fees
    def fee_for(self, amount: int) -> int:
        """The card fee on a capture of `amount`; InvalidFee when it would not be less."""
        fee = self._fees.fee_for(amount)
        if fee >= amount:
            raise InvalidFee(f"the captured amount must be more than the card fee ({fee})")
        return fee

    def _fee_within(self, amount: int) -> int:
        # An amount the acquirer captured is posted whatever it is; the fee never reaches it.
        return min(self._fees.fee_for(amount), amount - 1)

    # ----------------------------------------------------------------- reads and keys
    async def reload(self, payment_id: uuid.UUID) -> Payment:
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
        if payment is None:  # pragma: no cover - committed before
            raise PaymentNotFound(str(payment_id))
        return payment

    async def complete(self, idem: IdempotencyRequest, outcome: Outcome, body: dict[str, Any]) -> None:
        async with self._uow() as uow:
            await uow.idempotency.complete(idem, outcome=outcome, body=body)
            await uow.commit()

    async def _locked(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> Payment:
        payment = await uow.payments.get(payment_id, for_update=True)
        if payment is None:  # pragma: no cover - committed before
            raise PaymentNotFound(str(payment_id))
        return payment

    # ----------------------------------------------------------------- authorization
    async def record_authorization(
        self, payment_id: uuid.UUID, result: CardResult, *, correlation_id: str | None, idem: IdempotencyRequest
    ) -> tuple[Payment, str | None]:
        """The acquirer's answer to an authorization. Returns the payment and, when it was
        authorized after we gave up on it, that stray authorization's id (to void)."""
        stray: str | None = None
        async with self._uow() as uow:
            payment = await self._locked(uow, payment_id)
            actor = f"acquirer:{payment.provider}"
            at = self._clock.now()
            action = None
            if payment.status is PaymentStatus.INITIATED and result.outcome is not CardOutcome.PENDING:
                payment.provider_ref = result.authorization_id
                payment.pending_operation = None
                if result.outcome is CardOutcome.SUCCEEDED:
                    payment.authorization_expires_at = result.expires_at
                    payment.transition(
                        PaymentStatus.AUTHORIZED, at=at, reason="authorized by the card issuer", actor=actor
                    )
                else:
                    payment.fail(at=at, code=result.failure_code or "card_declined", actor=actor)
                action = f"payment.card.{payment.status.value.lower()}"
                await uow.payments.save(payment)
            elif result.outcome is CardOutcome.SUCCEEDED and payment.status is PaymentStatus.FAILED:
                stray, action = result.authorization_id, "payment.card.conflicting_answer"
                logger.error("card authorized after it was given up", payment_id=str(payment.id))
            if action is not None:
                await uow.audit.record(
                    actor=actor,
                    action=action,
                    subject=f"payment:{payment.id}",
                    correlation_id=correlation_id,
                    outcome="failure" if payment.status is PaymentStatus.FAILED else "success",
                    details={
                        "amount": payment.money.amount,
                        "currency": payment.money.currency,
                        "code": payment.failure_code,
                    },
                )
            await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=card_view(payment))
            await uow.commit()
        if action is not None and stray is None:
            self._finished(payment)
        return payment, stray

    async def give_up_authorization(self, payment_id: uuid.UUID) -> Payment:
        """An authorization whose answer never came: the payment ends FAILED
        (`authorization_unresolved`) and will never be captured. Acquirers find authorizations by
        their id only, and without the card token it cannot be re-sent; if the acquirer did
        authorize it, the hold lapses at its expiry (no money moved)."""
        async with self._uow() as uow:
            payment = await self._locked(uow, payment_id)
            if payment.status is PaymentStatus.INITIATED:
                payment.fail(at=self._clock.now(), code=UNRESOLVED, actor="system")
                payment.pending_operation = None
                await uow.payments.save(payment)
                await self._audit(uow, payment, "system", "payment.card.failed", payment.correlation_id)
                record = await uow.idempotency.find_by_payment(payment.id)
                if record is not None:  # the creating request's replay now says how it ended
                    request = IdempotencyRequest(record.scope, record.key, record.fingerprint)
                    await uow.idempotency.complete(request, outcome=Outcome.SUCCEEDED, body=card_view(payment))
                await uow.commit()
                logger.warning("card authorization left unresolved; given up", payment_id=str(payment.id))
                self._finished(payment)
        return payment

    # ----------------------------------------------------------------- capture
    async def record_capture(
        self,
        payment_id: uuid.UUID,
        amount: int,
        *,
        actor: str,
        correlation_id: str | None,
        idem: IdempotencyRequest | None = None,
    ) -> Payment:
        """The acquirer captured `amount`: post it (clearing ↔ merchant account and fee revenue),
        CAPTURED with the acquirer's settlement due date."""
        fee = 0
        changed = False
        async with self._uow() as uow:
            payment = await self._locked(uow, payment_id)
            if payment.status is PaymentStatus.AUTHORIZED:
                fee = self._fee_within(amount)
                await self._post_capture(uow, payment, amount, fee, correlation_id)
                at = self._clock.now()
                acquirer = payment.provider or "unknown"
                payment.fee = fee
                payment.capture(
                    at=at,
                    reason="captured at the acquirer",
                    actor=actor,
                    settlement_due=settlement_due(at, self._providers.settlement_days(acquirer)),
                    amount=amount,
                )
                payment.pending_operation = None
                await uow.payments.save(payment)
                await self._audit(uow, payment, actor, "payment.card.captured", correlation_id, fee=fee)
                changed = True
            elif payment.status is PaymentStatus.FAILED:
                await self._conflict(uow, payment, actor, "captured", correlation_id)
            if idem is not None:
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=card_view(payment))
            await uow.commit()
        if changed:
            self._metrics.ledger_posted("card.capture", uow.ledger.last_posting_seconds)
            if fee and self._fee_metrics is not None:
                self._fee_metrics.fee_collected(payment.money.currency, fee)
            self._finished(payment)
        return payment

    async def _post_capture(
        self, uow: PaymentsUnitOfWork, payment: Payment, amount: int, fee: int, correlation_id: str | None
    ) -> None:
        code = payment.money.currency
        assert payment.payee_wallet_id is not None
        clearing = await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, code, payment.provider or "unknown")
        legs = [
            Leg(clearing.id, Direction.DEBIT, Money(amount, code)),
            Leg(payment.payee_wallet_id, Direction.CREDIT, Money(amount - fee, code)),
        ]
        if fee:
            revenue = await uow.ledger.system_account(AccountKind.FEE_REVENUE, code)
            legs.append(Leg(revenue.id, Direction.CREDIT, Money(fee, code)))
        await uow.ledger.post(kind="card.capture", legs=legs, payment_id=payment.id, correlation_id=correlation_id)

    # ----------------------------------------------------------------- endings
    async def record_end(
        self,
        payment_id: uuid.UUID,
        reason: str,
        *,
        actor: str,
        correlation_id: str | None,
        idem: IdempotencyRequest | None = None,
    ) -> Payment:
        """The authorization is over without a capture (voided, expired, declined): the payment
        ends FAILED with `reason`; no money moved, so nothing is posted."""
        changed = False
        async with self._uow() as uow:
            payment = await self._locked(uow, payment_id)
            if unresolved(payment):
                payment.fail(at=self._clock.now(), code=reason, actor=actor)
                payment.pending_operation = None
                await uow.payments.save(payment)
                await self._audit(uow, payment, actor, f"payment.card.{_ending_word(reason)}", correlation_id)
                changed = True
            elif payment.status in (PaymentStatus.CAPTURED, PaymentStatus.SETTLED):
                await self._conflict(uow, payment, actor, reason, correlation_id)
            if idem is not None:
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=card_view(payment))
            await uow.commit()
        if changed:
            self._finished(payment)
        return payment

    async def clear_pending(self, payment_id: uuid.UUID, *, idem: IdempotencyRequest | None) -> Payment:
        """The operation asked of the acquirer certainly did not happen: nothing is pending."""
        async with self._uow() as uow:
            payment = await self._locked(uow, payment_id)
            if payment.pending_operation in ("capture", "void"):
                payment.pending_operation = None
                payment.updated_at = self._clock.now()
                await uow.payments.save(payment)
            if idem is not None:
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=card_view(payment))
            await uow.commit()
        return payment

    async def resolve_from_status(
        self, acquirer: CardAcquirer, payment_id: uuid.UUID, *, now: datetime, give_up_after: timedelta | None
    ) -> str:
        """Ask the acquirer what became of an AUTHORIZED payment's authorization and record it.
        A capture or void still not done there after `give_up_after` is no longer pending (the
        merchant may ask again: the acquirer does each at most once). Returns what happened."""
        payment = await self.reload(payment_id)
        if payment.status is not PaymentStatus.AUTHORIZED or not payment.provider_ref:
            return "still_pending"
        status = await acquirer.status(payment.provider_ref, correlation_id=payment.correlation_id)
        actor = f"acquirer:{acquirer.name}"
        if status.state is AuthorizationState.CAPTURED and status.captured_amount > 0:
            await self.record_capture(
                payment.id, status.captured_amount, actor=actor, correlation_id=payment.correlation_id
            )
            self._metrics.late_confirmation("card")
            return "captured"
        if status.state in _ENDING:
            reason, word = _ENDING[status.state]
            await self.record_end(payment.id, reason, actor=actor, correlation_id=payment.correlation_id)
            return word
        if status.state is AuthorizationState.DECLINED:
            await self.record_end(
                payment.id, status.decline_code or "card_declined", actor=actor, correlation_id=payment.correlation_id
            )
            return "failed"
        if status.state is AuthorizationState.UNREACHABLE:
            return "unreachable"
        if status.state is AuthorizationState.UNKNOWN:
            logger.warning("the acquirer does not know an authorization we hold", payment_id=str(payment.id))
        stale = give_up_after is not None and now - payment.updated_at >= give_up_after
        if status.state is AuthorizationState.AUTHORIZED and payment.pending_operation and stale:
            await self.clear_pending(payment.id, idem=None)
            logger.warning(
                "card operation not done at the acquirer; no longer pending",
                payment_id=str(payment.id),
                operation=payment.pending_operation,
            )
            return "gave_up"
        return "still_pending"

    # ----------------------------------------------------------------- helpers
    async def _audit(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        actor: str,
        action: str,
        correlation_id: str | None,
        **extra: int | str | None,
    ) -> None:
        details: dict[str, int | str | None] = {
            "amount": payment.captured_amount or payment.money.amount,
            "currency": payment.money.currency,
            "acquirer": payment.provider,
            "code": payment.failure_code,
            **extra,
        }
        failed = payment.status is PaymentStatus.FAILED
        await uow.audit.record_many(
            [
                AuditEvent(
                    actor=actor,
                    action=action,
                    subject=f"payment:{payment.id}",
                    correlation_id=correlation_id,
                    outcome="failure" if failed else "success",
                    details=details,
                )
            ]
        )

    async def _conflict(
        self, uow: PaymentsUnitOfWork, payment: Payment, actor: str, said: str, correlation_id: str | None
    ) -> None:
        """The acquirer says the opposite of a definite state: never applied, flagged for a person."""
        logger.error(
            "acquirer answer contradicts a definite card payment",
            payment_id=str(payment.id),
            recorded=payment.status.value,
            acquirer_says=said,
        )
        await uow.audit.record(
            actor=actor,
            action="payment.card.conflicting_answer",
            subject=f"payment:{payment.id}",
            correlation_id=correlation_id,
            outcome="denied",
            details={"recorded": payment.status.value, "acquirer_says": said},
        )

    def _finished(self, payment: Payment) -> None:
        self._metrics.payment_finished(payment.type.value, payment.status.value)
        if payment.status is PaymentStatus.FAILED:
            self._metrics.payment_failed(payment.type.value, failure_cause(payment.failure_code).value)
        if payment.status is PaymentStatus.CAPTURED:
            amount = payment.captured_amount or payment.money.amount
            self._metrics.amount_moved(payment.type.value, payment.money.currency, amount)
        logger.info(
            "card payment {status}",
            status=payment.status.value,
            payment_id=str(payment.id),
            amount=payment.money.amount,
            currency=payment.money.currency,
            code=payment.failure_code,
        )


def _ending_word(reason: str) -> str:
    return {VOIDED: "voided", "authorization_expired": "expired"}.get(reason, "failed")
