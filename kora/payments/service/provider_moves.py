"""Cash-in and cash-out through mobile-money providers (ADR 0011 for ambiguous outcomes)."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.kernel import Money
from kora.ledger import (
    AccountKind,
    Direction,
    LedgerError,
    Leg,
)
from kora.payments.domain.errors import (
    PaymentNotFound,
    UnknownProvider,
    WalletNotFound,
)
from kora.payments.domain.idempotency import (
    IdempotencyRequest,
    Outcome,
    fingerprint,
    validate_key,
)
from kora.payments.domain.model import (
    PROVIDER_CONTRADICTION,
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentType,
)
from kora.payments.ports import (
    PaymentsUnitOfWork,
)
from kora.payments.service.base import (
    DuplicateInFlight,
    PaymentResult,
    PaymentsBase,
    business_error,
)
from kora.providers import (
    ProviderGateway,
    ProviderOperation,
    ProviderOutcome,
    ProviderRequest,
    ProviderResult,
)

_tracer = trace.get_tracer("kora.payments")

_OPERATION = {PaymentType.CASH_IN: ProviderOperation.COLLECT, PaymentType.CASH_OUT: ProviderOperation.DISBURSE}


@dataclass(frozen=True, slots=True)
class ProviderMoveCommand:
    user_id: uuid.UUID
    amount: int
    currency: str
    idempotency_key: str | None
    provider: str | None = None
    correlation_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency, "provider": self.provider}


class ProviderMoves(PaymentsBase):
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
        operation = _OPERATION[kind]
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
                self._metrics.provider_fallback(_OPERATION[kind].value, gateway.name, result.failure_code or "")
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
                details={"amount": money.amount, "currency": money.currency, "provider": provider},
            )
            await uow.commit()
        return payment, hold_id

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
        if payment is None or payment.type not in _OPERATION:
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
                    changed = True
                elif result.outcome is ProviderOutcome.FAILED or give_up:
                    if hold_id is not None:
                        await uow.ledger.release_hold(hold_id)
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
