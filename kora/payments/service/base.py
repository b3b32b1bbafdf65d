"""Shared plumbing of the payment use cases: dependencies, idempotency, validation, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from loguru import logger
from opentelemetry import trace

from kora.kernel import Clock, InvalidAmount, Money, UnknownCurrency
from kora.ledger import (
    InsufficientFunds,
    LedgerError,
    LedgerStorageRefused,
)
from kora.payments.domain.errors import (
    FundsUnavailable,
    InvalidPaymentAmount,
    WrongCurrency,
)
from kora.payments.domain.failures import failure_cause
from kora.payments.domain.idempotency import (
    IdempotencyRequest,
    IdempotencyRequestInProgress,
    Outcome,
    decide,
)
from kora.payments.domain.model import (
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentType,
)
from kora.payments.domain.risk import ALLOWED, RISK_REVIEW, ReviewDecision, RiskDenied, RiskVerdict
from kora.payments.ports import (
    PaymentRisk,
    PaymentsUnitOfWork,
    PaymentsUnitOfWorkFactory,
    ProviderRegistry,
    RecipientDirectory,
)

_tracer = trace.get_tracer("kora.payments")


_Started = TypeVar("_Started")


class PaymentMetrics(Protocol):
    def payment_finished(self, payment_type: str, status: str) -> None: ...

    def payment_failed(self, payment_type: str, cause: str) -> None:
        """A payment ended FAILED; ``cause`` is a `FailureCause` value."""
        ...

    def amount_moved(self, payment_type: str, currency: str, amount: int) -> None: ...

    def idempotent_replay(self, route: str) -> None: ...

    def idempotency_conflict(self, reason: str) -> None: ...

    def ledger_posted(self, kind: str, seconds: float) -> None: ...

    def group_commit(self, size: int) -> None: ...

    def group_commit_fallback(self) -> None: ...

    def late_confirmation(self, payment_type: str) -> None: ...

    def provider_fallback(self, operation: str, from_provider: str, reason: str) -> None: ...

    def payment_settled(self, provider: str, payment_type: str, delay_seconds: float) -> None:
        """A captured provider payment SETTLED, `delay_seconds` after its capture."""
        ...

    def settlement_rejected(self, provider: str, reason: str) -> None:
        """A payment a settlement run was asked to settle and could not."""
        ...

    def settlement_overdue(self, provider: str, currency: str, payments: int, amount: int) -> None:
        """How many captured payments (and how much) are past their settlement due time now."""
        ...


class NullPaymentMetrics:
    def payment_finished(self, payment_type: str, status: str) -> None:
        pass

    def payment_failed(self, payment_type: str, cause: str) -> None:
        pass

    def amount_moved(self, payment_type: str, currency: str, amount: int) -> None:
        pass

    def idempotent_replay(self, route: str) -> None:
        pass

    def idempotency_conflict(self, reason: str) -> None:
        pass

    def ledger_posted(self, kind: str, seconds: float) -> None:
        pass

    def group_commit(self, size: int) -> None:
        pass

    def group_commit_fallback(self) -> None:
        pass

    def late_confirmation(self, payment_type: str) -> None:
        pass

    def provider_fallback(self, operation: str, from_provider: str, reason: str) -> None:
        pass

    def payment_settled(self, provider: str, payment_type: str, delay_seconds: float) -> None:
        pass

    def settlement_rejected(self, provider: str, reason: str) -> None:
        pass

    def settlement_overdue(self, provider: str, currency: str, payments: int, amount: int) -> None:
        pass


class NoRisk:
    """The payment path without a risk engine (unit tests, or KORA_RISK_ENABLED=false): every
    payment is allowed and nothing is reserved."""

    async def assess(
        self, uow: PaymentsUnitOfWork, payment: Payment, *, device_id: str, settles_now: bool = False
    ) -> RiskVerdict:
        return ALLOWED

    async def captured_many(self, uow: PaymentsUnitOfWork, payment_ids: Sequence[uuid.UUID]) -> None:
        pass

    async def assess_many(self, uow: PaymentsUnitOfWork, payments: Sequence[tuple[Payment, str]]) -> list[RiskVerdict]:
        return [ALLOWED for _ in payments]

    async def review_decision(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> ReviewDecision | None:
        return None

    async def captured(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> None:
        pass

    async def released(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> None:
        pass

    async def record_review(
        self,
        uow: PaymentsUnitOfWork,
        payment_id: uuid.UUID,
        decision: ReviewDecision,
        *,
        analyst: str,
        note: str | None,
    ) -> None:
        pass


# The device of a request that came without one (a service call): risk still judges it, as a
# device it has never seen (its cooling-period limits apply).
UNKNOWN_DEVICE = "unknown-device"


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """The answer to a money-moving request: the payment view on success, or the stored
    failure `{code, detail}`; `replayed` when it comes from an earlier request's record."""

    outcome: Outcome
    body: dict[str, Any]
    replayed: bool = False


class DuplicateInFlight(Exception):
    """A concurrent request with the same key committed first."""


@dataclass(frozen=True, slots=True)
class PaymentsConfig:
    wallet_currency: str = "XOF"
    idempotency_ttl: timedelta = timedelta(hours=24)
    # Concurrent transfers share one transaction (group commit), at most this many at once;
    # 0 (the default here; the service's settings turn it on) means one transaction each.
    group_commit_max: int = 0
    # The largest correction a service may post for a reconciliation case (minor units).
    correction_max_amount: int = 1_000_000


class PaymentsBase:
    """The dependencies and helpers every payment use case shares."""

    def __init__(
        self,
        *,
        uow_factory: PaymentsUnitOfWorkFactory,
        directory: RecipientDirectory,
        providers: ProviderRegistry,
        clock: Clock,
        config: PaymentsConfig | None = None,
        metrics: PaymentMetrics | None = None,
        risk: PaymentRisk | None = None,
    ) -> None:
        self._uow = uow_factory
        self._directory = directory
        self._providers = providers
        self._clock = clock
        self._config = config or PaymentsConfig()
        self._metrics: PaymentMetrics = metrics or NullPaymentMetrics()
        self._risk: PaymentRisk = risk or NoRisk()

    # ----------------------------------------------------------------- validation helpers
    def _money(self, amount: int, code: str) -> Money:
        try:
            money = Money.payable(amount, code)
        except UnknownCurrency as exc:
            raise WrongCurrency(str(exc)) from exc
        except InvalidAmount as exc:
            raise InvalidPaymentAmount(str(exc)) from exc
        if money.currency != self._config.wallet_currency:
            raise WrongCurrency(f"wallets are held in {self._config.wallet_currency}; {money.currency} is refused")
        return money

    async def _wallet_id(self, uow: PaymentsUnitOfWork, user_id: uuid.UUID) -> uuid.UUID:
        account = await uow.ledger.open_wallet(user_id, self._config.wallet_currency)
        return account.id

    # ----------------------------------------------------------------- idempotency plumbing
    async def _start(
        self, uow: PaymentsUnitOfWork, idem: IdempotencyRequest, payment_id: uuid.UUID
    ) -> PaymentResult | None:
        """Inside the use case's transaction: replay a known key, or claim it (in flight)."""
        now = self._clock.now()

        async def claim() -> bool:
            return await uow.idempotency.insert(
                idem,
                outcome=Outcome.IN_FLIGHT,
                body=None,
                payment_id=payment_id,
                at=now,
                expires_at=now + self._config.idempotency_ttl,
            )

        # Claim first (the common case, one statement); on PostgreSQL a concurrent claim of the
        # same key waits here until the other transaction ends.
        if await claim():
            return None
        record = await uow.idempotency.get(idem.scope, idem.key)
        if record is None:
            raise DuplicateInFlight
        if record.is_expired(now) and record.outcome is not Outcome.IN_FLIGHT:
            # An in-flight key never expires: its payment may still be moving at a provider.
            await uow.idempotency.delete(idem.scope, idem.key)
            if await claim():
                return None
            raise DuplicateInFlight
        return self._replay(decide(record, idem))

    def _replay(self, stored: Any) -> PaymentResult:
        self._metrics.idempotent_replay("money")
        return PaymentResult(stored.outcome, stored.body, replayed=True)

    async def _replay_after_race(self, idem: IdempotencyRequest) -> PaymentResult:
        async with self._uow() as uow:
            record = await uow.idempotency.get(idem.scope, idem.key)
        if record is None:  # the other request failed and released the key; tell the caller to retry
            raise IdempotencyRequestInProgress("a concurrent request with this key did not complete")
        try:
            return self._replay(decide(record, idem))
        except PaymentError as exc:
            self._metrics.idempotency_conflict(exc.code)
            raise

    async def _store_failure(
        self,
        idem: IdempotencyRequest,
        exc: Exception,
        *,
        payment_type: PaymentType,
        actor: str,
        correlation_id: str | None,
    ) -> PaymentResult:
        code = getattr(exc, "code", "payment_failed")
        body = {"code": code, "detail": str(exc)}
        now = self._clock.now()
        async with self._uow() as uow:
            inserted = await uow.idempotency.insert(
                idem,
                outcome=Outcome.FAILED,
                body=body,
                payment_id=None,
                at=now,
                expires_at=now + self._config.idempotency_ttl,
            )
            if not inserted:
                return await self._replay_after_race(idem)
            await uow.audit.record(
                actor=actor,
                action=f"payment.{payment_type.value}.refused",
                subject=actor,
                correlation_id=correlation_id,
                outcome="failure",
                details={"code": code},
            )
            await uow.commit()
        self._metrics.payment_finished(payment_type.value, "REFUSED")
        logger.info("payment refused", payment_type=payment_type.value, code=code)
        return PaymentResult(Outcome.FAILED, body)

    async def _under_key(
        self,
        idem: IdempotencyRequest,
        begin: Callable[[], Awaitable[_Started]],
        *,
        refusals: tuple[type[Exception], ...] = (),
        payment_type: PaymentType,
        actor: str,
        correlation_id: str | None,
        on_refused: Callable[[Exception], None] | None = None,
    ) -> _Started | PaymentResult:
        """Run ``begin`` (the first transaction of a keyed payment) and settle what the key
        says: a concurrent request holding the key → its answer, replayed; a business refusal
        (one of ``refusals``) → stored against the key in the payment's words and answered
        FAILED; any other PaymentError (the key reused for another request) → counted and
        raised, nothing stored."""
        try:
            return await begin()
        except DuplicateInFlight:
            return await self._replay_after_race(idem)
        except refusals as exc:
            if on_refused is not None:
                on_refused(exc)
            return await self._store_failure(
                idem, business_error(exc), payment_type=payment_type, actor=actor, correlation_id=correlation_id
            )
        except PaymentError as exc:
            self._metrics.idempotency_conflict(exc.code)
            raise

    # ----------------------------------------------------------------- risk outcomes
    async def _refuse_for_risk(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        verdict: RiskVerdict,
        idem: IdempotencyRequest,
        actor: str,
    ) -> PaymentResult:
        """Inside the payment's transaction: the risk policy denied it. The payment is kept,
        FAILED (`risk_denied`), so support can explain the decision; nothing was held or
        posted; the key answers the refusal from now on. Commits."""
        payment.fail(at=self._clock.now(), code=RiskDenied.code, actor="risk")
        await uow.payments.add(payment)
        body = risk_denied_body(payment)
        await uow.idempotency.complete(idem, outcome=Outcome.FAILED, body=body)
        await uow.audit.record(
            actor="risk",
            action=f"payment.{payment.type.value}.risk_denied",
            subject=f"payment:{payment.id}",
            correlation_id=payment.correlation_id,
            outcome="failure",
            details={"amount": payment.money.amount, "currency": payment.money.currency, **verdict.audit_details()},
        )
        await uow.commit()
        self._finished(payment)
        logger.info(
            "payment refused by risk",
            payment_id=str(payment.id),
            payment_type=payment.type.value,
            rules=list(verdict.rules),
            policy_version=verdict.policy_version,
        )
        return PaymentResult(Outcome.FAILED, body)

    async def _hold_for_review(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        verdict: RiskVerdict,
        idem: IdempotencyRequest,
        *,
        hold_funds: bool,
        view: Callable[[Payment], dict[str, Any]] | None = None,
    ) -> PaymentResult:
        """Inside the payment's transaction: the risk policy wants a person to look. The payer's
        funds are held (`hold_funds`; raises InsufficientFunds when they are short), the payment
        waits AUTHORIZED (cash-in: INITIATED, nothing to hold) with `pending_operation`
        `risk_review` until a risk analyst approves or rejects it. Commits."""
        at = self._clock.now()
        if hold_funds:
            assert payment.payer_wallet_id is not None
            await uow.ledger.place_hold(payment.payer_wallet_id, payment.money, payment_id=payment.id)
            if payment.status is PaymentStatus.INITIATED:
                payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="held for risk review", actor="risk")
        payment.pending_operation = RISK_REVIEW
        payment.updated_at = at
        await uow.payments.add(payment)
        body = payment.view() if view is None else view(payment)
        await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=body)
        await uow.audit.record(
            actor="risk",
            action=f"payment.{payment.type.value}.held_for_review",
            subject=f"payment:{payment.id}",
            correlation_id=payment.correlation_id,
            details={"amount": payment.money.amount, "currency": payment.money.currency, **verdict.audit_details()},
        )
        await uow.commit()
        logger.info(
            "payment held for risk review",
            payment_id=str(payment.id),
            payment_type=payment.type.value,
            rules=list(verdict.rules),
            policy_version=verdict.policy_version,
        )
        return PaymentResult(Outcome.SUCCEEDED, body)

    def _finished(self, payment: Payment) -> None:
        self._metrics.payment_finished(payment.type.value, payment.status.value)
        if payment.status is PaymentStatus.FAILED:
            self._metrics.payment_failed(payment.type.value, failure_cause(payment.failure_code).value)
        if payment.status in (PaymentStatus.CAPTURED, PaymentStatus.SETTLED):  # money moved in our books
            self._metrics.amount_moved(payment.type.value, payment.money.currency, payment.money.amount)
        logger.info(
            "payment {status}",
            status=payment.status.value,
            payment_id=str(payment.id),
            payment_type=payment.type.value,
            amount=payment.money.amount,
            currency=payment.money.currency,
        )


def risk_denied_body(payment: Payment) -> dict[str, Any]:
    """What a payment the risk policy denied answers (and its Idempotency-Key keeps answering)."""
    return {
        "code": RiskDenied.code,
        "detail": f"this payment is refused by the risk policy (payment {payment.id})",
        "payment_id": str(payment.id),
    }


def business_error(exc: Exception) -> PaymentError:
    """Ledger refusals are reported in the payment's words. A refusal by the database itself
    (a guard tripped: a bug or corruption, never the customer's doing) is not a business
    outcome: it propagates, nothing is stored against the key, and the caller gets a 500."""
    if isinstance(exc, LedgerStorageRefused):
        raise exc
    if isinstance(exc, PaymentError):
        return exc
    if isinstance(exc, InsufficientFunds):
        return FundsUnavailable("the wallet's available balance does not cover this payment")
    if isinstance(exc, LedgerError):
        error = PaymentError(str(exc) or "the ledger refused the posting")
        error.code = "ledger_refused"
        return error
    raise exc


async def postpone(uow_factory: PaymentsUnitOfWorkFactory, clock: Clock, payment: Payment) -> None:
    """Move an unresolved payment to the back of a sweeper's work list (its last-changed time
    becomes now), so one that keeps failing cannot starve the others. A payment that ended
    meanwhile is left as it is."""
    async with uow_factory() as uow:
        current = await uow.payments.get(payment.id, for_update=True)
        if current is None or current.status.is_final:
            return
        current.updated_at = clock.now()
        await uow.payments.save(current)
        await uow.commit()


async def resolve_each(
    work: Sequence[Payment],
    resolve: Callable[[Payment], Awaitable[str]],
    *,
    counts: dict[str, int],
    stop: asyncio.Event | None,
    failure_log: str,
    after_error: Callable[[Payment], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """A sweeper's pass over its work list: ``resolve`` each payment and count the word it
    returns. Stops between payments once ``stop`` is set (the rest waits for the next pass). A
    payment whose resolution raises is logged and counted as ``errors``, then ``after_error``
    runs (best effort) — one bad payment must not starve the others."""
    for payment in work:
        if stop is not None and stop.is_set():
            break
        try:
            word = await resolve(payment)
        except Exception as exc:
            logger.opt(exception=exc).error(failure_log, payment_id=str(payment.id))
            counts["errors"] = counts.get("errors", 0) + 1
            if after_error is not None:
                with contextlib.suppress(Exception):
                    await after_error(payment)
            continue
        counts[word] = counts.get(word, 0) + 1
    return counts
