"""The card resolution job: card payments and refunds whose acquirer answer is not known, and
authorizations past their expiry. Run from the sweeper loop (`Kora.run_sweeper`)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from loguru import logger
from opentelemetry import trace

from kora.kernel import Clock
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType
from kora.payments.ports import CardAcquirerRegistry, PaymentsUnitOfWorkFactory
from kora.payments.service.base import postpone, resolve_each
from kora.payments.service.card_common import CardMetrics, acquirer_named
from kora.payments.service.card_records import CardRecords
from kora.payments.service.card_refunds import CardRefunds

_tracer = trace.get_tracer("kora.payments")
# The metric's outcome for what the job did to an authorization.
_EXPIRY_OUTCOMES = {"expired", "voided", "captured", "failed"}


class CardSweeper:
    def __init__(
        self,
        *,
        records: CardRecords,
        refunds: CardRefunds,
        acquirers: CardAcquirerRegistry,
        uow_factory: PaymentsUnitOfWorkFactory,
        clock: Clock,
        metrics: CardMetrics,
    ) -> None:
        self._records = records
        self._refunds = refunds
        self._acquirers = acquirers
        self._uow = uow_factory
        self._clock = clock
        self._metrics = metrics

    async def sweep(
        self,
        *,
        older_than: timedelta,
        give_up_after: timedelta,
        limit: int = 500,
        stop: asyncio.Event | None = None,
    ) -> dict[str, int]:
        """One pass: for each card payment or refund left unresolved for `older_than` (or whose
        authorization lapsed), ask the acquirer and record its answer — never a guess. An
        authorization whose answer never came ends FAILED (it cannot be asked about: acquirers
        find authorizations by id); a capture, void or refund still not done at the acquirer
        after `give_up_after` is no longer pending. Returns counts by what happened."""
        now = self._clock.now()
        async with self._uow() as uow:
            work = await uow.payments.find_card_work(now=now, updated_before=now - older_than, limit=limit)
        with _tracer.start_as_current_span("payments.card.sweep") as span:
            counts = await resolve_each(
                work,
                lambda payment: self._one(payment, now, give_up_after),
                counts={},
                stop=stop,
                failure_log="resolving a card payment failed",
                after_error=lambda payment: postpone(self._uow, self._clock, payment),
            )
            span.set_attribute("kora.card.swept", len(work))
        if work:
            logger.info("card payments swept", **counts)
        return counts

    async def _one(self, payment: Payment, now: datetime, give_up_after: timedelta) -> str:
        if payment.type is PaymentType.REFUND:
            return await self._refunds.resolve_refund(payment, now=now, give_up_after=give_up_after)
        if payment.status is PaymentStatus.INITIATED:
            await self._records.give_up_authorization(payment.id)
            self._metrics.card_operation("authorize", "gave_up")
            return "gave_up"
        acquirer = acquirer_named(self._acquirers, payment.provider)
        word = await self._records.resolve_from_status(acquirer, payment.id, now=now, give_up_after=give_up_after)
        if word in _EXPIRY_OUTCOMES:
            self._metrics.card_operation("expiry" if payment.pending_operation is None else "resolve", word)
        return word
