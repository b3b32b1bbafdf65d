"""The pending-payment sweeper: status queries for ambiguous provider outcomes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Literal

from loguru import logger
from opentelemetry import trace

from kora.kernel import Clock
from kora.payments.domain.errors import (
    PaymentNotFound,
    UnknownProvider,
)
from kora.payments.domain.model import (
    Payment,
    PaymentStatus,
    PaymentType,
)
from kora.payments.ports import (
    PaymentsUnitOfWorkFactory,
    ProviderRegistry,
    RecipientDirectory,
)
from kora.payments.service.base import (
    PaymentMetrics,
    postpone,
    resolve_each,
)
from kora.payments.service.provider_moves import ProviderMoves
from kora.providers import (
    STATUS_UNREACHABLE,
    ProviderOperation,
    ProviderOutcome,
    ProviderRequest,
    ProviderResult,
)

_tracer = trace.get_tracer("kora.payments")

ProviderQueryAnswer = Literal["succeeded", "failed", "pending", "unreachable"]


def _answer_word(result: ProviderResult) -> ProviderQueryAnswer:
    if result.outcome is ProviderOutcome.SUCCEEDED:
        return "succeeded"
    if result.outcome is ProviderOutcome.FAILED:
        return "failed"
    return "unreachable" if result.failure_code == STATUS_UNREACHABLE else "pending"


class PendingSweeper:
    """Resolves provider payments left pending, by status query (late confirmations)."""

    def __init__(
        self,
        moves: ProviderMoves,
        *,
        providers: ProviderRegistry,
        directory: RecipientDirectory,
        clock: Clock,
        uow_factory: PaymentsUnitOfWorkFactory,
        metrics: PaymentMetrics,
    ) -> None:
        self._moves = moves
        self._providers = providers
        self._directory = directory
        self._clock = clock
        self._uow = uow_factory
        self._metrics = metrics

    async def sweep_pending(
        self,
        *,
        older_than: timedelta,
        give_up_after: timedelta,
        limit: int = 500,
        stop: asyncio.Event | None = None,
    ) -> dict[str, int]:
        """Resolve provider payments left INITIATED/AUTHORIZED (a timeout, a crash between the
        two transactions, a provider still deciding): ask the provider for the status of each
        (never guess, never re-send), record the answer, and end those still undecided after
        `give_up_after` as FAILED. Stops between payments once `stop` is set. Returns counts by
        what happened."""
        now = self._clock.now()
        async with self._uow() as uow:
            pending = await uow.payments.find_unresolved(updated_before=now - older_than, limit=limit)

        async def resolve(payment: Payment) -> str:
            outcome = await self._sweep_one(payment, now, give_up_after)
            if outcome == "errors":  # the provider could not be asked: back of the queue
                await postpone(self._uow, self._clock, payment)
            return outcome

        counts = await resolve_each(
            pending,
            resolve,
            counts={"confirmed": 0, "failed": 0, "still_pending": 0, "gave_up": 0, "errors": 0},
            stop=stop,
            failure_log="sweeping a pending payment failed",
            after_error=lambda payment: postpone(self._uow, self._clock, payment),
        )
        if pending:
            logger.info("pending payments swept", **counts)
        return counts

    async def query_now(
        self, payment_id: uuid.UUID, *, actor: str, correlation_id: str | None
    ) -> tuple[Payment, ProviderQueryAnswer]:
        """Ask the provider now what became of one of our cash-ins or cash-outs (a
        reconciliation case wants a late confirmation, ADR 0011) and record a definite answer
        as the sweeper would: a payment still waiting is captured or failed; one already
        definite is left as it is, or flagged when the provider contradicts it. Never gives up
        on a payment, never re-sends it. Audited as `actor`'s query. Returns the payment as it
        stands after, and what the provider said (`unreachable` when it could not be asked).
        Raises PaymentNotFound (no provider cash-in/out with this id), UnknownProvider."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
        if payment is None or payment.type not in (PaymentType.CASH_IN, PaymentType.CASH_OUT) or not payment.provider:
            raise PaymentNotFound("no provider cash-in or cash-out with this id")
        try:
            result = await self._ask(payment)
        except UnknownProvider:
            raise
        except Exception as exc:  # the provider could not be asked: nothing is recorded
            logger.opt(exception=exc).warning("provider status query failed", provider=payment.provider)
            result = ProviderResult(ProviderOutcome.PENDING, failure_code=STATUS_UNREACHABLE)
        answer = _answer_word(result)
        if result.outcome is not ProviderOutcome.PENDING:
            await self._moves.record_answer(
                payment.id, None, result, None, actor, correlation_id or payment.correlation_id
            )
        async with self._uow() as uow:
            after = await uow.payments.get(payment.id)
            await uow.audit.record(
                actor=actor,
                action=f"payment.{payment.type.value}.provider_queried",
                subject=f"payment:{payment.id}",
                correlation_id=correlation_id,
                details={"provider": payment.provider, "provider_answer": answer},
            )
            await uow.commit()
        assert after is not None
        return after, answer

    async def _ask(self, payment: Payment) -> ProviderResult:
        """The provider's status of one of our cash-ins/outs (the request as it was sent)."""
        gateway = self._providers.get(payment.provider or "")
        if gateway is None:
            raise UnknownProvider(f"provider {payment.provider!r} is not configured")
        operation = ProviderOperation.COLLECT if payment.type is PaymentType.CASH_IN else ProviderOperation.DISBURSE
        account = await self._directory.mobile_money_number(payment.initiated_by)
        request = ProviderRequest(payment.id, payment.money, account_ref=account, correlation_id=payment.correlation_id)
        with _tracer.start_as_current_span(f"provider.{gateway.name}.status"):
            return await gateway.status(request, operation)

    async def _sweep_one(self, payment: Payment, now: datetime, give_up_after: timedelta) -> str:
        result = await self._ask(payment)
        if result.outcome is ProviderOutcome.PENDING:
            # Give up only on what the provider itself said (still pending, or never heard of
            # it) past the maximum age — never because it could not be asked.
            expired = now - (payment.provider_asked_at or payment.created_at) >= give_up_after
            if not expired or result.failure_code == STATUS_UNREACHABLE:
                return "still_pending" if result.failure_code != STATUS_UNREACHABLE else "errors"
            await self._moves.record_answer(
                payment.id, None, result, None, "system", payment.correlation_id, give_up=True
            )
            return "gave_up"
        finished = await self._moves.record_answer(payment.id, None, result, None, "system", payment.correlation_id)
        if finished.body.get("status") == PaymentStatus.CAPTURED.value and result.outcome is ProviderOutcome.SUCCEEDED:
            self._metrics.late_confirmation(payment.type.value)
            return "confirmed"
        return "failed"
