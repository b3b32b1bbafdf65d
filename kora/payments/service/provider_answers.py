"""Recording what providers answer about cash-ins and cash-outs: capture on success, release
the hold on failure, flag contradictions — idempotently, under the payment's row lock
(ADR 0011, 0013, 0017)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, time, timedelta

from loguru import logger

from kora.ledger import (
    AccountKind,
    Direction,
    Leg,
)
from kora.payments.domain.errors import (
    PaymentNotFound,
)
from kora.payments.domain.idempotency import (
    IdempotencyRequest,
    Outcome,
)
from kora.payments.domain.model import (
    PROVIDER_CONTRADICTION,
    Payment,
    PaymentStatus,
    PaymentType,
)
from kora.payments.ports import (
    PaymentsUnitOfWork,
)
from kora.payments.service.base import (
    PaymentResult,
    PaymentsBase,
)
from kora.providers import (
    ProviderOperation,
    ProviderOutcome,
    ProviderResult,
)

PROVIDER_OPERATION = {PaymentType.CASH_IN: ProviderOperation.COLLECT, PaymentType.CASH_OUT: ProviderOperation.DISBURSE}


class ProviderAnswers(PaymentsBase):
    """Records a provider's answer on a payment it was asked to move, from the request itself,
    the sweeper or a webhook."""

    async def record_provider_answer(
        self,
        payment_id: uuid.UUID,
        result: ProviderResult,
        *,
        provider: str,
        correlation_id: str | None = None,
    ) -> bool:
        """A provider told us (webhook, or the answer to a status query a callback prompted)
        what became of a payment it was asked to move. False when no cash-in/out of that
        provider has this id (the caller drops the message). Idempotent: a duplicate answer
        changes nothing; one that contradicts a definite state is flagged, never applied."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
        if payment is None or payment.type not in PROVIDER_OPERATION:
            return False
        if result.outcome is not ProviderOutcome.PENDING:
            # The provider is checked again under the row lock: a payment re-pointed to another
            # provider (fallback) flags an answer from the one it left instead of applying it.
            await self.record_answer(
                payment.id, None, result, None, f"provider:{provider}", correlation_id, expected_provider=provider
            )
        return True

    async def record_answer(
        self,
        payment_id: uuid.UUID,
        hold_id: uuid.UUID | None,
        result: ProviderResult,
        idem: IdempotencyRequest | None,
        actor: str,
        correlation_id: str | None,
        *,
        give_up: bool = False,
        expected_provider: str | None = None,
    ) -> PaymentResult:
        """Record a provider's answer on a payment it was asked to move. Idempotent: a payment
        already in a definite state is left as it is (the request, the sweeper and a webhook may
        all get an answer). A success captures the payment (money moves in our books; the
        provider settles it J+N, see `Settlements`); a failure releases the hold. With
        `give_up`, a payment still PENDING past its maximum age ends FAILED
        (`provider_unresolved`), its hold released; reconciliation will catch a late success.
        With `expected_provider`, an answer from a provider the payment no longer waits on (it
        was re-routed) is flagged, never applied. A definite answer contradicting a definite
        state is flagged too, and a captured payment so flagged is kept out of settlement."""
        changed = False
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id, for_update=True)
            if payment is None:  # pragma: no cover - committed just before
                raise PaymentNotFound(str(payment_id))
            provider_actor = f"provider:{payment.provider}"
            at = self._clock.now()
            if idem is None:  # the sweeper or a webhook: find the key of the request that created it
                record = await uow.idempotency.find_by_payment(payment.id)
                idem = None if record is None else IdempotencyRequest(record.scope, record.key, record.fingerprint)
            if expected_provider is not None and payment.provider != expected_provider:
                if result.outcome is not ProviderOutcome.PENDING:
                    await self._flag_contradiction(
                        uow,
                        payment,
                        result,
                        provider_actor=f"provider:{expected_provider}",
                        correlation_id=correlation_id,
                    )
            elif payment.status in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED):
                if hold_id is None:
                    hold = await uow.ledger.active_hold_for_payment(payment.id)
                    hold_id = None if hold is None else hold.id
                payment.provider_ref = _bounded_ref(result.provider_ref) or payment.provider_ref
                if result.outcome is ProviderOutcome.SUCCEEDED:
                    await self._capture(uow, payment, hold_id, provider_actor, correlation_id)
                    await self._risk.captured(uow, payment.id)
                    changed = True
                elif result.outcome is ProviderOutcome.FAILED or give_up:
                    if hold_id is not None:
                        await uow.ledger.release_hold(hold_id)
                    await self._risk.released(uow, payment.id)
                    code = _bounded_code(result.failure_code) or "provider_declined"
                    if result.outcome is not ProviderOutcome.FAILED:
                        code, provider_actor = "provider_unresolved", "system"
                    payment.fail(at=at, code=code, actor=provider_actor)
                    changed = True
                await uow.payments.save(payment)
                if changed:
                    await uow.audit.record(
                        actor=provider_actor,
                        action=f"payment.{payment.type.value}.{payment.status.value.lower()}",
                        subject=f"payment:{payment.id}",
                        correlation_id=correlation_id,
                        outcome="failure" if payment.failure_code else "success",
                        details={"amount": payment.money.amount, "currency": payment.money.currency},
                    )
            elif _contradicts(payment.status, result.outcome):
                await self._flag_contradiction(
                    uow, payment, result, provider_actor=provider_actor, correlation_id=correlation_id
                )
            view = payment.view()
            if idem is not None:
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
            await uow.commit()
        if changed or payment.status in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED):
            self._finished(payment)
        return PaymentResult(Outcome.SUCCEEDED, view)

    async def _flag_contradiction(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        result: ProviderResult,
        *,
        provider_actor: str,
        correlation_id: str | None,
    ) -> None:
        """A provider says the opposite of what we recorded (a success after we gave up, a
        reversal after capture) or answers for a payment that moved to another provider. Never
        silently ignored, never applied: logged at ERROR, audited, and a captured payment is
        marked (`failure_code`) so settlement refuses it until a person decides (ADR 0014)."""
        logger.error(
            "provider answer contradicts the payment",
            payment_id=str(payment.id),
            recorded=payment.status.value,
            provider=provider_actor,
            provider_outcome=result.outcome.value,
        )
        if payment.status is PaymentStatus.CAPTURED and payment.failure_code is None:
            payment.failure_code = PROVIDER_CONTRADICTION
            payment.updated_at = self._clock.now()
            await uow.payments.save(payment)
        await uow.audit.record(
            actor=provider_actor,
            action=f"payment.{payment.type.value}.conflicting_answer",
            subject=f"payment:{payment.id}",
            correlation_id=correlation_id,
            outcome="denied",
            details={
                "recorded": payment.status.value,
                "recorded_provider": payment.provider,
                "provider_outcome": result.outcome.value,
                "provider_code": _bounded_code(result.failure_code),
            },
        )

    async def _capture(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        hold_id: uuid.UUID | None,
        actor: str,
        correlation_id: str | None,
    ) -> None:
        """The provider confirmed: post the capture (provider clearing ↔ customer wallet) and
        set when the provider owes its settlement (J+N). Settling moves clearing to the
        settlement bank later, on the provider's settlement (ADR 0013)."""
        at = self._clock.now()
        provider = payment.provider or "unknown"
        money = payment.money
        clearing = await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, money.currency, provider)
        if payment.type is PaymentType.CASH_IN:
            assert payment.payee_wallet_id is not None
            payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="provider confirmed collection", actor=actor)
            legs = [Leg(clearing.id, Direction.DEBIT, money), Leg(payment.payee_wallet_id, Direction.CREDIT, money)]
        else:
            assert payment.payer_wallet_id is not None
            legs = [Leg(payment.payer_wallet_id, Direction.DEBIT, money), Leg(clearing.id, Direction.CREDIT, money)]
        await uow.ledger.post(
            kind=f"{payment.type.value}.capture",
            legs=legs,
            payment_id=payment.id,
            correlation_id=correlation_id,
            capture_holds=[hold_id] if hold_id else (),
        )
        due = settlement_due(at, self._providers.settlement_days(provider))
        payment.capture(at=at, reason="provider confirmed", actor=actor, settlement_due=due)


def settlement_due(captured_at: datetime, days: int) -> datetime:
    """J+N: the end of the N-th UTC day after the capture (a provider's settlement for day J
    arrives during J+N; past that the payment is late)."""
    day = (captured_at.astimezone(UTC) + timedelta(days=days)).date()
    return datetime.combine(day, time.max, tzinfo=UTC)


_CODE = re.compile(r"[^a-z0-9_.:-]+")


def _bounded_code(code: str | None) -> str | None:
    """A provider's failure code in our column's shape: lower-case word characters, at most 64
    (a provider may send anything; an unsavable answer would leave the payment stuck)."""
    if not code:
        return None
    return _CODE.sub("_", code.strip().lower())[:64] or None


def _bounded_ref(reference: str | None) -> str | None:
    """A provider's reference, at most 128 characters (the column's size); longer ones are
    logged and cut rather than left unsavable."""
    if reference is None or len(reference) <= 128:
        return reference
    logger.warning("provider reference longer than 128 characters, cut", length=len(reference))
    return reference[:128]


def _contradicts(recorded: PaymentStatus, outcome: ProviderOutcome) -> bool:
    if outcome is ProviderOutcome.SUCCEEDED:
        return recorded is PaymentStatus.FAILED
    if outcome is ProviderOutcome.FAILED:
        return recorded in (PaymentStatus.CAPTURED, PaymentStatus.SETTLED)
    return False
