"""The composition root's side of the risk engine: the payments module's `PaymentRisk` port on
the risk module (`kora.risk`), and the review-queue gauges. The two modules never import each
other (import contracts); this is where a payment becomes a `RiskRequest` and a decision a
`RiskVerdict` (ADR 0028)."""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.kernel import Clock
from kora.payments.domain.model import Payment
from kora.payments.domain.model import PaymentType as PaymentKind
from kora.payments.domain.risk import ALLOWED, ReviewDecision, RiskOutcome, RiskVerdict
from kora.payments.ports import PaymentsUnitOfWork
from kora.platform.settings import ConfigurationError, Settings
from kora.risk import (
    DEFAULT_POLICY_PATH,
    FilePolicySource,
    PaymentType,
    PolicyError,
    Reservation,
    ReservationError,
    RiskMetrics,
    RiskRequest,
    SqlRiskActivity,
    SqlRiskReviews,
)

# The payment types risk judges; others (refunds, corrections) move money back, not out.
_RISK_TYPES = {
    PaymentKind.P2P: PaymentType.P2P,
    PaymentKind.CASH_IN: PaymentType.CASH_IN,
    PaymentKind.CASH_OUT: PaymentType.CASH_OUT,
    PaymentKind.MERCHANT: PaymentType.MERCHANT,
}


def _connection(uow: PaymentsUnitOfWork) -> Any:
    """The SQL unit of work's connection: the reservation commits with the payment."""
    return uow.connection  # type: ignore[attr-defined]


def risk_device(device_id: str) -> str:
    """A device id in risk's shape (at most 64 characters): longer ones by their SHA-256."""
    return device_id if len(device_id) <= 64 else hashlib.sha256(device_id.encode()).hexdigest()


def risk_parties(payment: Payment) -> tuple[str, str]:
    """Payer and payee as risk counts them: the customer's wallet on both sides of a provider
    move (a cash-in is the customer's activity too), the provider as the counterparty."""
    provider = f"provider:{payment.provider or 'unknown'}"
    if payment.type is PaymentKind.CASH_IN:
        return str(payment.payee_wallet_id), provider
    if payment.type is PaymentKind.CASH_OUT:
        return str(payment.payer_wallet_id), provider
    return str(payment.payer_wallet_id), str(payment.payee_wallet_id)


def _after_commit(uow: PaymentsUnitOfWork, callback: Callable[[], None]) -> None:
    """Run `callback` once the payment's transaction commits (now, with a unit of work that
    cannot tell)."""
    register = getattr(uow, "after_commit", None)
    if register is None:
        callback()
    else:
        register(callback)


class SqlPaymentRisk:
    """`PaymentRisk` on `SqlRiskActivity`, in the payment's transaction. `tier` is the KYC tier
    every customer is judged under until identity records one per customer. With `assessing`
    off (KORA_RISK_ENABLED=false) every payment is allowed and nothing is reserved, but payments
    held before can still be decided, explained and listed: turning risk off must not strand
    held funds."""

    def __init__(
        self,
        activity: SqlRiskActivity,
        reviews: SqlRiskReviews,
        *,
        tier: str,
        metrics: RiskMetrics,
        clock: Clock,
        assessing: bool = True,
    ) -> None:
        self._activity = activity
        self._reviews = reviews
        self._tier = tier
        self._metrics = metrics
        self._clock = clock
        self.assessing = assessing

    async def assess_many(self, uow: PaymentsUnitOfWork, payments: Sequence[tuple[Payment, str]]) -> list[RiskVerdict]:
        """The store's batch: every payer's lock in one round trip and in its key order (two
        transactions never take two payers' locks in opposite orders), the writes batched; each
        payment judged as `assess` would, its batch-mates of the same payer counted. The time
        the batch took is spread evenly over its payments in the latency metric."""
        judged: list[tuple[int, RiskRequest]] = []
        for i, (payment, device) in enumerate(payments):
            request = self._request(payment, device)
            if request is not None:
                judged.append((i, request))
        verdicts = [ALLOWED] * len(payments)
        if not judged:
            return verdicts
        started = time.perf_counter()
        reservations = await self._activity.assess_and_reserve_many(
            [(str(payments[i][0].id), request) for i, request in judged], connection=_connection(uow)
        )
        seconds = (time.perf_counter() - started) / len(judged)
        for (i, request), reservation in zip(judged, reservations, strict=True):
            verdicts[i] = self._verdict(uow, reservation, request.type.value, seconds)
        return verdicts

    def _request(self, payment: Payment, device_id: str) -> RiskRequest | None:
        """The payment as risk judges it; None for a type risk does not judge, or the engine off."""
        kind = _RISK_TYPES.get(payment.type)
        if kind is None or not self.assessing:
            return None
        payer, payee = risk_parties(payment)
        return RiskRequest(
            payer_id=payer,
            payee_id=payee,
            amount=payment.money.amount,
            currency=payment.money.currency,
            type=kind,
            device_id=risk_device(device_id),
            tier=self._tier,
            at=payment.created_at,
        )

    def _verdict(self, uow: PaymentsUnitOfWork, reservation: Reservation, kind: str, seconds: float) -> RiskVerdict:
        decision = reservation.decision
        rules = tuple(sorted(decision.rules))
        if not reservation.replayed:
            outcome = decision.outcome.label
            _after_commit(uow, lambda: self._metrics.assessed(outcome, kind, rules, seconds))
        return RiskVerdict(RiskOutcome(decision.outcome.label), rules, decision.score, decision.policy_version)

    async def assess(
        self, uow: PaymentsUnitOfWork, payment: Payment, *, device_id: str, settles_now: bool = False
    ) -> RiskVerdict:
        request = self._request(payment, device_id)
        if request is None:
            return ALLOWED
        started = time.perf_counter()
        reservation = await self._activity.assess_and_reserve(
            str(payment.id), request, connection=_connection(uow), settles_now=settles_now
        )
        return self._verdict(uow, reservation, request.type.value, time.perf_counter() - started)

    async def review_decision(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> ReviewDecision | None:
        found = await self._reviews.decision(str(payment_id), connection=_connection(uow))
        return None if found is None else ReviewDecision(found)

    async def captured(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> None:
        if not self.assessing:
            return
        # never assessed (risk was off, or a type risk does not judge): nothing to commit
        with contextlib.suppress(ReservationError):
            await self._activity.commit(str(payment_id), connection=_connection(uow))

    async def captured_many(self, uow: PaymentsUnitOfWork, payment_ids: Sequence[uuid.UUID]) -> None:
        if self.assessing:
            await self._activity.commit_many([str(i) for i in payment_ids], connection=_connection(uow))

    async def released(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> None:
        if not self.assessing:
            return
        # never assessed, or already committed (then the payment did not fail): nothing to release
        with contextlib.suppress(ReservationError):
            await self._activity.release(str(payment_id), connection=_connection(uow))

    async def record_review(
        self,
        uow: PaymentsUnitOfWork,
        payment_id: uuid.UUID,
        decision: ReviewDecision,
        *,
        analyst: str,
        note: str | None,
    ) -> None:
        try:
            rules = await self._reviews.record_decision(
                str(payment_id),
                decision.value,
                analyst=analyst,
                note=note,
                at=self._clock.now(),
                connection=_connection(uow),
            )
        except LookupError:
            return
        _after_commit(uow, lambda: self._metrics.reviewed(decision.value, rules))

    # --- reads for people (the risk review routes) -------------------------------------------

    async def review_queue(self, *, limit: int, after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
        return await self._reviews.queue(limit=limit, after=after)

    async def explain(self, payment_id: uuid.UUID) -> dict[str, Any] | None:
        return await self._reviews.explain(str(payment_id))

    async def review_outcomes(self) -> dict[str, dict[str, int]]:
        return await self._reviews.review_outcomes()

    @property
    def policy_version(self) -> str:
        return self._activity.policy_version

    async def refresh_queue_gauges(self) -> None:
        """Set the review queue's size and oldest age (the API process does it on a schedule)."""
        stats = await self._reviews.queue_stats()
        self._metrics.queue(stats.size, stats.oldest_held_at, self._clock.now())


def build_payment_risk(
    settings: Settings, engine: AsyncEngine, registry: CollectorRegistry, clock: Clock
) -> SqlPaymentRisk:
    """The risk gate from the settings. A policy file that does not load, or a default tier it
    does not define, stops the start: running without limits is not a safe default. With the
    engine off the gate still decides and explains what was held before (on the shipped policy,
    which is never read to judge)."""
    configured = settings.risk_policy_file if settings.risk_enabled else None
    path = Path(configured) if configured else DEFAULT_POLICY_PATH
    try:
        policies = FilePolicySource(path)
        policy = policies.current()
    except (OSError, PolicyError) as exc:
        raise ConfigurationError(f"risk policy {path}: {exc}") from exc
    if settings.risk_default_tier not in policy.tiers:
        raise ConfigurationError(
            f"KORA_RISK_DEFAULT_TIER={settings.risk_default_tier!r} is not a tier of risk policy {policy.version}"
        )
    return SqlPaymentRisk(
        SqlRiskActivity(engine, policies, clock=clock),
        SqlRiskReviews(engine),
        tier=settings.risk_default_tier,
        metrics=RiskMetrics(registry),
        clock=clock,
        assessing=settings.risk_enabled,
    )
