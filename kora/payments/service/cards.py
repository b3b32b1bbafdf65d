"""Card payments taken by a merchant through a card acquirer: authorize, capture, void (ADR 0013,
0014). Refunds and chargebacks are in card_refunds.py, the resolution job in card_sweeper.py.

- Authorize: no posting in our books (the hold is on the shopper's card, at the issuer). The
  payment is CARD, INITIATED, committed before the acquirer is called; then AUTHORIZED with the
  acquirer's authorization id and expiry, or FAILED with the decline reason.
- Capture (partial allowed, once): debit acquirer clearing by the captured amount, credit the
  merchant's account with it less the card fee, fee revenue with the fee. CAPTURED with a J+N
  settlement due date; the settlement step later moves clearing to the settlement bank.
- Void: the authorization is released; the payment ends FAILED (`voided`). An authorization that
  lapses ends FAILED (`authorization_expired`), found by the resolution job.

A capture or void whose answer is unknown leaves `pending_operation` set; the answer is 202 and
its Idempotency-Key is released (a retry is safe: the acquirer captures or voids an
authorization once). The job resolves it from the acquirer's status, never by guessing.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.kernel import Money, new_id
from kora.payments.domain.errors import PaymentNotFound
from kora.payments.domain.idempotency import IdempotencyRequest, Outcome, decide, fingerprint, validate_key
from kora.payments.domain.model import (
    IllegalTransition,
    InvalidCapture,
    InvalidFee,
    Payment,
    PaymentStatus,
    PaymentType,
)
from kora.payments.ports import CardAcquirerRegistry, PaymentsUnitOfWork
from kora.payments.service.base import DuplicateInFlight, PaymentResult, PaymentsBase
from kora.payments.service.card_common import (
    CARD_TOKEN,
    VOIDED,
    CardMetrics,
    CardOperationCommand,
    CardOperationInProgress,
    CardPaymentCommand,
    InvalidCardToken,
    NullCardMetrics,
    acquirer_named,
    call_acquirer,
    card_view,
    failure,
    merchants_card_payment,
)
from kora.payments.service.card_records import CardRecords
from kora.payments.service.merchant import FeeMetrics, FeeSchedule, InvalidReference
from kora.providers import (
    AUTHORIZATION_CAPTURED,
    AUTHORIZATION_DECLINED,
    AUTHORIZATION_EXPIRED,
    AUTHORIZATION_VOIDED,
    CardAcquirer,
    CardAuthorizationRequest,
    CardOutcome,
    CardResult,
)

_tracer = trace.get_tracer("kora.payments")
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}")
# The acquirer says the authorization is over: the payment ends FAILED for that reason.
_ENDED = {
    AUTHORIZATION_EXPIRED: AUTHORIZATION_EXPIRED,
    AUTHORIZATION_VOIDED: VOIDED,
    AUTHORIZATION_DECLINED: "declined",
}


class CardPayments(PaymentsBase):
    """A merchant's card payments: authorize, capture, void, read."""

    def __init__(self, *, acquirers: CardAcquirerRegistry, fees: FeeSchedule | None = None, **deps: Any) -> None:
        super().__init__(**deps)
        self._acquirers = acquirers
        self._card_metrics: CardMetrics = self._metrics if isinstance(self._metrics, CardMetrics) else NullCardMetrics()
        fee_metrics = self._metrics if isinstance(self._metrics, FeeMetrics) else None
        self.records = CardRecords(
            uow_factory=self._uow,
            clock=self._clock,
            providers=self._providers,
            fees=fees or FeeSchedule(bps=250),
            metrics=self._metrics,
            fee_metrics=fee_metrics,
        )

    # ----------------------------------------------------------------- authorize
    async def authorize(self, cmd: CardPaymentCommand) -> PaymentResult:
        """Authorize a card payment for the merchant. The answer is the payment: AUTHORIZED, or
        FAILED with the decline reason, or INITIATED while the acquirer's answer is unknown
        (the resolution job ends it). Raises on malformed input (nothing stored)."""
        acquirer = acquirer_named(self._acquirers, cmd.acquirer)
        money = self._money(cmd.amount, cmd.currency)
        if cmd.reference is not None and not _REFERENCE.fullmatch(cmd.reference):
            raise InvalidReference("a reference is 1-64 letters, digits or . _ : / # -")
        if not CARD_TOKEN.fullmatch(cmd.card_token):
            raise InvalidCardToken("a card token is 12-64 letters, digits, _ or -")
        idem = IdempotencyRequest(
            f"user:{cmd.merchant_user_id}",
            validate_key(cmd.idempotency_key),
            fingerprint("card_payment", cmd.fingerprint_body()),
        )
        with _tracer.start_as_current_span("payments.card.authorize", attributes={"kora.acquirer": acquirer.name}):
            started = await self._under_key(
                idem,
                lambda: self._begin_authorization(cmd, money, acquirer.name, idem),
                payment_type=PaymentType.CARD,
                actor=f"user:{cmd.merchant_user_id}",
                correlation_id=cmd.correlation_id,
            )
            if isinstance(started, PaymentResult):
                return started
            request = CardAuthorizationRequest(started.id, money, cmd.card_token, cmd.correlation_id)
            # Once the intent is committed, the call and its outcome run to the end even if the
            # client goes away: the payment must not be left half-done by a disconnect.
            return await asyncio.shield(self._authorize_at(acquirer, request, idem))

    async def _begin_authorization(
        self, cmd: CardPaymentCommand, money: Money, acquirer: str, idem: IdempotencyRequest
    ) -> PaymentResult | Payment:
        actor = f"user:{cmd.merchant_user_id}"
        async with self._uow() as uow:
            at = self._clock.now()
            payment_id = new_id()
            replay = await self._start(uow, idem, payment_id)
            if replay is not None:
                return replay
            account = await uow.ledger.open_merchant_account(cmd.merchant_user_id, money.currency)
            payment = Payment.initiate(
                payment_id=payment_id,
                type=PaymentType.CARD,
                money=money,
                at=at,
                initiated_by=cmd.merchant_user_id,
                actor=actor,
                payee_wallet_id=account.id,
                payee_user_id=cmd.merchant_user_id,
                provider=acquirer,
                correlation_id=cmd.correlation_id,
            )
            payment.merchant_reference = cmd.reference
            payment.pending_operation = "authorize"
            await uow.payments.add(payment)
            await uow.audit.record(
                actor=actor,
                action="payment.card.initiated",
                subject=f"payment:{payment.id}",
                correlation_id=cmd.correlation_id,
                details={"amount": money.amount, "currency": money.currency, "acquirer": acquirer},
            )
            await uow.commit()
        return payment

    async def _authorize_at(
        self, acquirer: CardAcquirer, request: CardAuthorizationRequest, idem: IdempotencyRequest
    ) -> PaymentResult:
        result = await call_acquirer(acquirer, "authorize", lambda: acquirer.authorize(request), self._card_metrics)
        payment, stray = await self.records.record_authorization(
            request.payment_id, result, correlation_id=request.correlation_id, idem=idem
        )
        if stray is not None:  # authorized after we gave up on it: release the shopper's hold
            await self._void_stray(acquirer, payment, stray)
        return PaymentResult(Outcome.SUCCEEDED, card_view(payment))

    async def _void_stray(self, acquirer: CardAcquirer, payment: Payment, authorization_id: str) -> None:
        result = await call_acquirer(
            acquirer,
            "void",
            lambda: acquirer.void(authorization_id, reference=payment.id, correlation_id=payment.correlation_id),
            self._card_metrics,
        )
        log = logger.info if result.outcome is CardOutcome.SUCCEEDED else logger.error
        log("stray card authorization voided", payment_id=str(payment.id), outcome=result.outcome.value)

    # ----------------------------------------------------------------- capture and void
    async def capture(self, cmd: CardOperationCommand) -> PaymentResult:
        """Capture `cmd.amount` (default: all that was authorized) of an AUTHORIZED card payment,
        once. Refusals are stored against the Idempotency-Key: not the merchant's payment
        (payment_not_found), not AUTHORIZED (illegal_transition), an amount above the
        authorization (invalid_capture) or not above the card fee (invalid_fee), the acquirer's
        refusal (authorization_expired, card_operation_refused)."""
        return await self._operate(cmd, "capture")

    async def void(self, cmd: CardOperationCommand) -> PaymentResult:
        """Void an AUTHORIZED card payment: it ends FAILED (`voided`), no money moved."""
        return await self._operate(cmd, "void")

    async def _operate(self, cmd: CardOperationCommand, operation: str) -> PaymentResult:
        body = {"payment_id": str(cmd.payment_id), "amount": cmd.amount}
        idem = IdempotencyRequest(
            f"user:{cmd.merchant_user_id}", validate_key(cmd.idempotency_key), fingerprint(f"card_{operation}", body)
        )
        with _tracer.start_as_current_span(f"payments.card.{operation}") as span:

            def on_refused(exc: Exception) -> None:
                self._card_metrics.card_operation(operation, "refused")
                span.set_attribute("kora.payment.refused", getattr(exc, "code", "payment_failed"))

            started = await self._under_key(
                idem,
                lambda: self._begin_operation(cmd, operation, idem),
                refusals=(PaymentNotFound, IllegalTransition, InvalidCapture, InvalidFee),
                payment_type=PaymentType.CARD,
                actor=f"user:{cmd.merchant_user_id}",
                correlation_id=cmd.correlation_id,
                on_refused=on_refused,
            )
            if isinstance(started, PaymentResult):
                return started
            payment, amount = started
            acquirer = acquirer_named(self._acquirers, payment.provider)
            return await asyncio.shield(
                self._operate_at(acquirer, payment, operation, amount, idem, cmd.correlation_id)
            )

    async def _begin_operation(
        self, cmd: CardOperationCommand, operation: str, idem: IdempotencyRequest
    ) -> PaymentResult | tuple[Payment, int]:
        actor = f"user:{cmd.merchant_user_id}"
        async with self._uow() as uow:
            replay = await self._claim(uow, idem)
            if replay is not None:
                return replay
            payment = merchants_card_payment(
                await uow.payments.get(cmd.payment_id, for_update=True), cmd.merchant_user_id
            )
            amount = cmd.amount if cmd.amount is not None else payment.money.amount
            if _already_done(payment, operation, amount):  # capture and void happen once: answer what is
                view = card_view(payment)
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
                await uow.commit()
                return PaymentResult(Outcome.SUCCEEDED, view)
            if payment.status is not PaymentStatus.AUTHORIZED:
                raise IllegalTransition(f"a {payment.status.value} card payment cannot be {operation}d")
            if operation == "capture":
                if not 0 < amount <= payment.money.amount:
                    raise InvalidCapture(f"a capture is more than 0 and at most {payment.money.amount}")
                self.records.fee_for(amount)
            if payment.pending_operation not in (None, operation):
                # Another operation's answer is still unknown: a second one would overwrite the
                # marker the resolution job follows (rolled back with the key's claim).
                raise CardOperationInProgress(f"a {payment.pending_operation} is still pending at the acquirer")
            payment.pending_operation = operation
            payment.updated_at = self._clock.now()
            await uow.payments.save(payment)
            await uow.audit.record(
                actor=actor,
                action=f"payment.card.{operation}_requested",
                subject=f"payment:{payment.id}",
                correlation_id=cmd.correlation_id,
                details={"amount": amount, "currency": payment.money.currency},
            )
            await uow.commit()
        return payment, amount

    async def _operate_at(
        self,
        acquirer: CardAcquirer,
        payment: Payment,
        operation: str,
        amount: int,
        idem: IdempotencyRequest,
        correlation_id: str | None,
    ) -> PaymentResult:
        authorization_id = payment.provider_ref or ""
        if operation == "capture":
            money = Money(amount, payment.money.currency)
            result = await call_acquirer(
                acquirer,
                "capture",
                lambda: acquirer.capture(authorization_id, money, reference=payment.id, correlation_id=correlation_id),
                self._card_metrics,
            )
        else:
            result = await call_acquirer(
                acquirer,
                "void",
                lambda: acquirer.void(authorization_id, reference=payment.id, correlation_id=correlation_id),
                self._card_metrics,
            )
        actor = f"acquirer:{acquirer.name}"
        records = self.records
        if result.outcome is CardOutcome.PENDING:
            await self._release(idem)  # a retry with the same key is safe: capture and void happen once
            return PaymentResult(Outcome.SUCCEEDED, card_view(await records.reload(payment.id)))
        if result.outcome is CardOutcome.SUCCEEDED:
            if operation == "capture":
                done = await records.record_capture(
                    payment.id, result.amount or amount, actor=actor, correlation_id=correlation_id, idem=idem
                )
            else:
                done = await records.record_end(
                    payment.id, VOIDED, actor=actor, correlation_id=correlation_id, idem=idem
                )
            return PaymentResult(Outcome.SUCCEEDED, card_view(done))
        return await self._refused(acquirer, payment, operation, result, idem, correlation_id)

    async def _refused(
        self,
        acquirer: CardAcquirer,
        payment: Payment,
        operation: str,
        result: CardResult,
        idem: IdempotencyRequest,
        correlation_id: str | None,
    ) -> PaymentResult:
        """The acquirer refused the capture or void: say why, and record what it means."""
        code = result.failure_code or "declined"
        actor = f"acquirer:{acquirer.name}"
        if result.not_accepted:  # nothing happened there; the same key may be retried
            await self.records.clear_pending(payment.id, idem=None)
            await self._release(idem)
            return PaymentResult(Outcome.FAILED, failure("acquirer_unavailable", "the card acquirer is unavailable"))
        if code in _ENDED:  # the authorization is over: so is the payment
            done = await self.records.record_end(payment.id, _ENDED[code], actor=actor, correlation_id=correlation_id)
            if operation == "void":  # nothing left to release: what the merchant asked for holds
                await self.records.complete(idem, Outcome.SUCCEEDED, card_view(done))
                return PaymentResult(Outcome.SUCCEEDED, card_view(done))
            body = failure(
                "authorization_expired" if code == AUTHORIZATION_EXPIRED else "illegal_transition",
                f"the card authorization is {_ENDED[code].replace('_', ' ')}",
            )
        elif code == AUTHORIZATION_CAPTURED:  # a void of a captured authorization: learn the capture
            await self.records.resolve_from_status(acquirer, payment.id, now=self._clock.now(), give_up_after=None)
            body = failure("illegal_transition", "the card payment was captured at the acquirer")
        else:
            await self.records.clear_pending(payment.id, idem=None)
            problem = "invalid_capture" if code == "amount_too_large" else "card_operation_refused"
            body = failure(problem, f"the card acquirer refused the {operation}: {code}")
        await self.records.complete(idem, Outcome.FAILED, body)
        logger.info("card operation refused", operation=operation, payment_id=str(payment.id), code=code)
        return PaymentResult(Outcome.FAILED, body)

    # ----------------------------------------------------------------- reads
    async def card_payment(self, merchant_user_id: uuid.UUID, payment_id: uuid.UUID) -> dict[str, Any]:
        """One of the merchant's card payments; PaymentNotFound for anyone else's."""
        async with self._uow() as uow:
            payment = merchants_card_payment(await uow.payments.get(payment_id), merchant_user_id)
        return card_view(payment)

    # ----------------------------------------------------------------- idempotency helpers
    async def _claim(self, uow: PaymentsUnitOfWork, idem: IdempotencyRequest) -> PaymentResult | None:
        """Claim the key for an operation on an existing payment (the key points at no payment:
        only the request that created a payment is found by it)."""
        now = self._clock.now()
        expires = now + self._config.idempotency_ttl
        insert = uow.idempotency.insert
        if await insert(idem, outcome=Outcome.IN_FLIGHT, body=None, payment_id=None, at=now, expires_at=expires):
            return None
        record = await uow.idempotency.get(idem.scope, idem.key)
        if record is None:
            raise DuplicateInFlight
        if record.is_expired(now) and record.outcome is not Outcome.IN_FLIGHT:
            await uow.idempotency.delete(idem.scope, idem.key)
            if await insert(idem, outcome=Outcome.IN_FLIGHT, body=None, payment_id=None, at=now, expires_at=expires):
                return None
            raise DuplicateInFlight
        self._metrics.idempotent_replay("card")
        stored = decide(record, idem)
        return PaymentResult(stored.outcome, stored.body, replayed=True)

    async def _release(self, idem: IdempotencyRequest) -> None:
        async with self._uow() as uow:
            await uow.idempotency.delete(idem.scope, idem.key)
            await uow.commit()


def _already_done(payment: Payment, operation: str, amount: int) -> bool:
    if operation == "capture":
        captured = payment.status in (PaymentStatus.CAPTURED, PaymentStatus.SETTLED)
        return captured and payment.captured_amount == amount
    return payment.status is PaymentStatus.FAILED and payment.failure_code == VOIDED
