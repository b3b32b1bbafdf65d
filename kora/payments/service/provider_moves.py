"""Cash-in and cash-out through mobile-money providers (ADR 0011 for ambiguous outcomes)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.kernel import Money
from kora.ledger import (
    LedgerError,
)
from kora.payments.domain.errors import (
    UnknownProvider,
    WalletNotFound,
)
from kora.payments.domain.idempotency import (
    IdempotencyRequest,
    fingerprint,
    validate_key,
)
from kora.payments.domain.model import (
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentType,
)
from kora.payments.domain.risk import RiskOutcome
from kora.payments.service.base import (
    UNKNOWN_DEVICE,
    DuplicateInFlight,
    PaymentResult,
    business_error,
)
from kora.payments.service.provider_answers import PROVIDER_OPERATION, ProviderAnswers
from kora.providers import (
    ProviderGateway,
    ProviderOutcome,
    ProviderRequest,
    ProviderResult,
)

_tracer = trace.get_tracer("kora.payments")


@dataclass(frozen=True, slots=True)
class ProviderMoveCommand:
    user_id: uuid.UUID
    amount: int
    currency: str
    idempotency_key: str | None
    provider: str | None = None
    correlation_id: str | None = None
    # The caller's device (from its session): the risk engine's device binding.
    device_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency, "provider": self.provider}


class ProviderMoves(ProviderAnswers):
    """Cash-in and cash-out through a provider: commit the intent, call the provider with no
    transaction open, record its answer in a second transaction."""

    # ----------------------------------------------------------------- cash-in / cash-out
    async def cash_in(self, cmd: ProviderMoveCommand) -> PaymentResult:
        """Fund the wallet from the customer's mobile-money account through a provider."""
        return await self._provider_move(cmd, PaymentType.CASH_IN)

    async def cash_out(self, cmd: ProviderMoveCommand) -> PaymentResult:
        """Withdraw from the wallet to the customer's mobile-money account; funds are held
        (AUTHORIZED) before the provider is called and captured when it confirms."""
        return await self._provider_move(cmd, PaymentType.CASH_OUT)

    def _route(self, cmd: ProviderMoveCommand, kind: PaymentType, money: Money) -> list[ProviderGateway]:
        """The providers to try in order: the one the client named (no fallback: it chose), else
        the routing table's route for this operation and currency."""
        operation = PROVIDER_OPERATION[kind]
        names = (cmd.provider,) if cmd.provider else self._providers.route(operation.value, money.currency)
        gateways: list[ProviderGateway] = []
        for name in names:
            gateway = self._providers.get(name)
            if gateway is None:
                raise UnknownProvider(f"provider {name!r} is not configured")
            gateways.append(gateway)
        return gateways

    async def _provider_move(self, cmd: ProviderMoveCommand, kind: PaymentType) -> PaymentResult:
        money = self._money(cmd.amount, cmd.currency)
        gateways = self._route(cmd, kind, money)
        op = kind.value
        idem = IdempotencyRequest(
            f"user:{cmd.user_id}", validate_key(cmd.idempotency_key), fingerprint(op, cmd.fingerprint_body())
        )
        actor = f"user:{cmd.user_id}"
        # Looked up before anything is committed: a failure (or a cancellation) here must not
        # leave funds held for a provider call that never happens.
        account = await self._directory.mobile_money_number(cmd.user_id)
        with _tracer.start_as_current_span(f"payments.{op}", attributes={"kora.provider": gateways[0].name}):
            try:
                started = await self._begin_provider_move(cmd, kind, money, gateways[0].name, idem, actor)
            except DuplicateInFlight:
                return await self._replay_after_race(idem)
            except (LedgerError, WalletNotFound) as exc:
                return await self._store_failure(
                    idem,
                    business_error(exc),
                    payment_type=kind,
                    actor=actor,
                    correlation_id=cmd.correlation_id,
                )
            except PaymentError as exc:
                self._metrics.idempotency_conflict(exc.code)
                raise
            if isinstance(started, PaymentResult):
                return started
            payment, hold_id = started
            request = ProviderRequest(payment.id, money, account_ref=account, correlation_id=cmd.correlation_id)
            # Once the intent is committed, the call and its outcome run to the end even if the
            # client goes away (shielded): the payment must not be left half-done by a disconnect.
            return await asyncio.shield(
                self._call_providers_and_finish(gateways, kind, request, hold_id, idem, actor, cmd.correlation_id)
            )

    async def _call_providers_and_finish(
        self,
        gateways: list[ProviderGateway],
        kind: PaymentType,
        request: ProviderRequest,
        hold_id: uuid.UUID | None,
        idem: IdempotencyRequest,
        actor: str,
        correlation_id: str | None,
    ) -> PaymentResult:
        """Call the route's providers in order. Move to the next one only when the last
        certainly did not accept the request (`not_accepted`); any other answer, including an
        ambiguous one (PENDING), is recorded and ends the routing — a timeout is resolved by
        status query at that provider, never by asking another (ADR 0017)."""
        result = ProviderResult(ProviderOutcome.PENDING)
        answered_by = gateways[0].name
        for position, gateway in enumerate(gateways):
            if position > 0 and not await self._reroute(request.payment_id, gateways[position - 1].name, gateway.name):
                # Someone else already resolved the payment: leave it as it is (a PENDING answer
                # changes nothing and returns the payment's current view).
                result = ProviderResult(ProviderOutcome.PENDING)
                break
            answered_by = gateway.name
            result = await self._call(gateway, kind, request)
            last = position == len(gateways) - 1
            if result.outcome is ProviderOutcome.FAILED and result.not_accepted and not last:
                self._metrics.provider_fallback(PROVIDER_OPERATION[kind].value, gateway.name, result.failure_code or "")
                logger.warning(
                    "provider did not accept; trying the next one",
                    provider=gateway.name,
                    next_provider=gateways[position + 1].name,
                    code=result.failure_code,
                )
                continue
            break
        return await self.record_answer(
            request.payment_id, hold_id, result, idem, actor, correlation_id, expected_provider=answered_by
        )

    async def send_approved(
        self,
        gateway: ProviderGateway,
        kind: PaymentType,
        request: ProviderRequest,
        hold_id: uuid.UUID | None,
        idem: IdempotencyRequest | None,
        correlation_id: str | None,
    ) -> PaymentResult:
        """A cash-in or cash-out a risk analyst approved: ask its provider now and record the
        answer, as the request would have without the review (`RiskReviews`)."""
        result = await self._call(gateway, kind, request)
        return await self.record_answer(
            request.payment_id, hold_id, result, idem, "system", correlation_id, expected_provider=gateway.name
        )

    async def _call(self, gateway: ProviderGateway, kind: PaymentType, request: ProviderRequest) -> ProviderResult:
        with _tracer.start_as_current_span(f"provider.{gateway.name}.{kind.value}") as span:
            try:
                if kind is PaymentType.CASH_IN:
                    result = await gateway.collect(request)
                else:
                    result = await gateway.disburse(request)
            except Exception as exc:  # an ambiguous outcome: never guess, keep it pending
                logger.opt(exception=exc).warning("provider call ended without an answer", provider=gateway.name)
                result = ProviderResult(ProviderOutcome.PENDING)
            span.set_attribute("kora.provider.outcome", result.outcome.value)
        return result

    async def _reroute(self, payment_id: uuid.UUID, from_provider: str, to_provider: str) -> bool:
        """Point the payment at the next provider before calling it (committed first, so a
        crash leaves the sweeper asking the provider that may have it). False when the payment
        is no longer waiting on `from_provider`."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id, for_update=True)
            if (
                payment is None
                or payment.provider != from_provider
                or payment.status not in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED)
            ):
                return False
            payment.provider = to_provider
            payment.updated_at = self._clock.now()
            await uow.payments.save(payment)
            await uow.audit.record(
                actor="system",
                action=f"payment.{payment.type.value}.rerouted",
                subject=f"payment:{payment.id}",
                correlation_id=payment.correlation_id,
                details={"from_provider": from_provider, "to_provider": to_provider},
            )
            await uow.commit()
        return True

    async def _begin_provider_move(
        self,
        cmd: ProviderMoveCommand,
        kind: PaymentType,
        money: Money,
        provider: str,
        idem: IdempotencyRequest,
        actor: str,
    ) -> PaymentResult | tuple[Payment, uuid.UUID | None]:
        async with self._uow() as uow:
            at = self._clock.now()
            wallet = await self._wallet_id(uow, cmd.user_id)
            payment = Payment.initiate(
                type=kind,
                money=money,
                at=at,
                initiated_by=cmd.user_id,
                actor=actor,
                payer_wallet_id=wallet if kind is PaymentType.CASH_OUT else None,
                payee_wallet_id=wallet if kind is PaymentType.CASH_IN else None,
                payer_user_id=cmd.user_id if kind is PaymentType.CASH_OUT else None,
                payee_user_id=cmd.user_id if kind is PaymentType.CASH_IN else None,
                provider=provider,
                correlation_id=cmd.correlation_id,
            )
            replay = await self._start(uow, idem, payment.id)
            if replay is not None:
                return replay
            verdict = await self._risk.assess(uow, payment, device_id=cmd.device_id or UNKNOWN_DEVICE)
            if verdict.outcome is RiskOutcome.DENY:
                return await self._refuse_for_risk(uow, payment, verdict, idem, actor)
            if verdict.outcome is RiskOutcome.REVIEW:
                # No provider is asked until a risk analyst approves (`RiskReviews`).
                return await self._hold_for_review(uow, payment, verdict, idem, hold_funds=kind is PaymentType.CASH_OUT)
            hold_id: uuid.UUID | None = None
            if kind is PaymentType.CASH_OUT:
                hold = await uow.ledger.place_hold(wallet, money, payment_id=payment.id)
                hold_id = hold.id
                payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="funds held", actor=actor)
            await uow.payments.add(payment)
            await uow.audit.record(
                actor=actor,
                action=f"payment.{kind.value}.{payment.status.value.lower()}",
                subject=f"payment:{payment.id}",
                correlation_id=cmd.correlation_id,
                details={
                    "amount": money.amount,
                    "currency": money.currency,
                    "provider": provider,
                    **verdict.audit_details(),
                },
            )
            await uow.commit()
        return payment, hold_id
