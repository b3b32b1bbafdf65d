"""A risk analyst's decision on a payment the risk policy held for review (issue #6).

Approve: a P2P or merchant payment is posted at once against its held funds; a cash-out or
cash-in is sent to its provider, as it would have been without the review, and ends the way the
provider answers. Reject: the hold is released and the payment ends FAILED (`risk_rejected`).
Either way the decision is stored with the assessment it was about and audited."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.kernel import Money
from kora.ledger import AccountKind, Direction, Leg
from kora.payments.domain.errors import PaymentNotFound
from kora.payments.domain.idempotency import IdempotencyRequest, Outcome
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType
from kora.payments.domain.risk import RISK_REVIEW, ReviewAlreadyDecided, ReviewDecision, ReviewNotFound
from kora.payments.ports import PaymentsUnitOfWork
from kora.payments.service.base import PaymentResult, PaymentsBase
from kora.payments.service.merchant import merchant_view
from kora.payments.service.provider_moves import ProviderMoves
from kora.providers import ProviderRequest

_tracer = trace.get_tracer("kora.payments")

REJECTED = "risk_rejected"


class RiskReviews(PaymentsBase):
    """Approve or reject a payment held for review. Only one decision per payment: the second
    gets ReviewAlreadyDecided (the payment's row lock orders two analysts deciding at once)."""

    def __init__(self, *, moves: ProviderMoves, **deps: Any) -> None:
        super().__init__(**deps)
        self._moves = moves

    async def decide(
        self,
        payment_id: uuid.UUID,
        decision: ReviewDecision,
        *,
        analyst: str,
        note: str | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """Apply `decision` by `analyst` (an audit actor, `user:<id>`); returns the payment's
        view after it (a provider move approved: after its provider's answer)."""
        with _tracer.start_as_current_span("payments.risk_review", attributes={"kora.risk.decision": decision.value}):
            async with self._uow() as uow:
                payment = await uow.payments.get(payment_id, for_update=True)
                if payment is None:
                    raise ReviewNotFound("no payment with this id is waiting for a risk review")
                if payment.pending_operation != RISK_REVIEW:
                    if await self._risk.review_decision(uow, payment.id) is not None:
                        raise ReviewAlreadyDecided("this payment's risk review is already decided")
                    raise ReviewNotFound("no payment with this id is waiting for a risk review")
                payment.pending_operation = None
                await self._risk.record_review(uow, payment.id, decision, analyst=analyst, note=note)
                hold = await uow.ledger.active_hold_for_payment(payment.id)
                if decision is ReviewDecision.REJECT:
                    if hold is not None:
                        await uow.ledger.release_hold(hold.id)
                    await self._risk.released(uow, payment.id)
                    payment.fail(at=self._clock.now(), code=REJECTED, actor=analyst)
                elif payment.type in (PaymentType.P2P, PaymentType.MERCHANT):
                    await self._post_held(uow, payment, hold.id if hold else None, analyst)
                    await self._risk.captured(uow, payment.id)
                else:  # a provider move: the provider is asked below, once this is committed
                    payment.updated_at = payment.provider_asked_at = self._clock.now()
                await uow.payments.save(payment)
                verb = "approved" if decision is ReviewDecision.APPROVE else "rejected"
                await uow.audit.record(
                    actor=analyst,
                    action=f"payment.{payment.type.value}.risk_{verb}",
                    subject=f"payment:{payment.id}",
                    correlation_id=correlation_id or payment.correlation_id,
                    details={"amount": payment.money.amount, "currency": payment.money.currency},
                )
                record = await uow.idempotency.find_by_payment(payment.id)
                idem = None if record is None else IdempotencyRequest(record.scope, record.key, record.fingerprint)
                if idem is not None:  # a retry of the customer's request answers the payment as it is now
                    body = merchant_view(payment) if payment.type is PaymentType.MERCHANT else payment.view()
                    await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=body)
                await uow.commit()
            logger.info(
                "risk review decided",
                payment_id=str(payment.id),
                payment_type=payment.type.value,
                decision=decision.value,
            )
            if payment.status.is_final or payment.status is PaymentStatus.CAPTURED:
                self._finished(payment)
                return payment.view()
            result = await asyncio.shield(self._send_to_provider(payment, hold.id if hold else None, idem))
            return result.body

    async def _post_held(
        self, uow: PaymentsUnitOfWork, payment: Payment, hold_id: uuid.UUID | None, analyst: str
    ) -> None:
        """Post an approved internal payment against its hold: P2P payer → payee; a merchant
        payment payer → merchant less the fee → fee revenue. It settles at once."""
        assert payment.payer_wallet_id is not None
        assert payment.payee_wallet_id is not None
        money, at = payment.money, self._clock.now()
        legs = [
            Leg(payment.payer_wallet_id, Direction.DEBIT, money),
            Leg(payment.payee_wallet_id, Direction.CREDIT, Money(money.amount - payment.fee, money.currency)),
        ]
        if payment.fee:
            revenue = await uow.ledger.system_account(AccountKind.FEE_REVENUE, money.currency)
            legs.append(Leg(revenue.id, Direction.CREDIT, Money(payment.fee, money.currency)))
        await uow.ledger.post(
            kind=payment.type.value,
            legs=legs,
            payment_id=payment.id,
            correlation_id=payment.correlation_id,
            capture_holds=[hold_id] if hold_id else (),
        )
        if payment.type is PaymentType.MERCHANT:
            payment.capture(at=at, reason="approved by risk review", actor=analyst, settlement_due=None)
        else:
            payment.transition(PaymentStatus.CAPTURED, at=at, reason="approved by risk review", actor=analyst)
        payment.transition(PaymentStatus.SETTLED, at=at, reason="internal payment settles at once", actor="system")

    async def _send_to_provider(
        self, payment: Payment, hold_id: uuid.UUID | None, idem: IdempotencyRequest | None
    ) -> PaymentResult:
        """An approved cash-in or cash-out goes to the provider it was meant for (no fallback:
        the route was chosen when it was made); an ambiguous answer is left to the sweeper."""
        gateway = self._providers.get(payment.provider or "")
        if gateway is None:
            raise PaymentNotFound(f"provider {payment.provider!r} is no longer configured")
        user = payment.payer_user_id if payment.type is PaymentType.CASH_OUT else payment.payee_user_id
        account = await self._directory.mobile_money_number(user or payment.initiated_by)
        request = ProviderRequest(payment.id, payment.money, account_ref=account, correlation_id=payment.correlation_id)
        return await self._moves.send_approved(gateway, payment.type, request, hold_id, idem, payment.correlation_id)
