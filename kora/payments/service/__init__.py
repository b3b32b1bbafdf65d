"""Payment use cases: P2P transfers, cash-in and cash-out, the pending sweeper, reads.

Each use case owns its unit of work: the payment row, its status history, its ledger
postings, its audit record and its idempotency record commit together or not at all. A
provider is never called while a transaction is open: cash-in/out commit the intent first,
call the provider, then record the outcome in a second transaction.

`PaymentsService` is the module's one entry point; it composes the use-case classes, each in
its own file.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from kora.kernel import Clock
from kora.payments.domain.corrections import CorrectionCommand
from kora.payments.domain.risk import ReviewDecision
from kora.payments.ports import (
    CardAcquirerRegistry,
    PaymentRisk,
    PaymentsUnitOfWorkFactory,
    ProviderRegistry,
    RecipientDirectory,
)
from kora.payments.service.base import NullPaymentMetrics, PaymentMetrics, PaymentResult, PaymentsConfig
from kora.payments.service.card_common import (
    CardMetrics,
    CardOperationCommand,
    CardOperationInProgress,
    CardPaymentCommand,
    CardRefundCommand,
    InvalidCardToken,
    NullCardMetrics,
)
from kora.payments.service.card_refunds import CardRefunds
from kora.payments.service.card_sweeper import CardSweeper
from kora.payments.service.cards import CardPayments
from kora.payments.service.corrections import Corrections
from kora.payments.service.merchant import (
    FeeSchedule,
    InvalidReference,
    MerchantPaymentCommand,
    MerchantPayments,
    RefundCommand,
    RefundReason,
)
from kora.payments.service.provider_moves import ProviderMoveCommand, ProviderMoves
from kora.payments.service.queries import PaymentQueries, ProviderStatusQuery
from kora.payments.service.risk_reviews import RiskReviews
from kora.payments.service.settlement import InvalidSettlementRequest, SettlementCommand, Settlements
from kora.payments.service.settlement_backlog import SettlementBacklog
from kora.payments.service.sweeper import PendingSweeper, ProviderQueryAnswer
from kora.payments.service.transfers import TransferCommand, Transfers
from kora.providers import Chargeback, ProviderResult, StaticCardAcquirers

__all__ = [
    "CardOperationCommand",
    "CardOperationInProgress",
    "CardPaymentCommand",
    "CardRefundCommand",
    "FeeSchedule",
    "InvalidCardToken",
    "InvalidReference",
    "InvalidSettlementRequest",
    "MerchantPaymentCommand",
    "PaymentMetrics",
    "PaymentResult",
    "PaymentsConfig",
    "PaymentsService",
    "ProviderMoveCommand",
    "ProviderQueryAnswer",
    "RefundCommand",
    "RefundReason",
    "SettlementCommand",
    "TransferCommand",
]


class PaymentsService:
    def __init__(
        self,
        *,
        uow_factory: PaymentsUnitOfWorkFactory,
        directory: RecipientDirectory,
        providers: ProviderRegistry,
        clock: Clock,
        config: PaymentsConfig | None = None,
        metrics: PaymentMetrics | None = None,
        merchant_fees: FeeSchedule | None = None,
        acquirers: CardAcquirerRegistry | None = None,
        card_fees: FeeSchedule | None = None,
        risk: PaymentRisk | None = None,
    ) -> None:
        metrics = metrics or NullPaymentMetrics()
        deps: dict[str, Any] = {
            "uow_factory": uow_factory,
            "directory": directory,
            "providers": providers,
            "clock": clock,
            "config": config or PaymentsConfig(),
            "metrics": metrics,
            "risk": risk,
        }
        self.transfers = Transfers(**deps)
        self.provider_moves = ProviderMoves(**deps)
        self.risk_reviews = RiskReviews(moves=self.provider_moves, **deps)
        self.sweeper = PendingSweeper(
            self.provider_moves,
            providers=providers,
            directory=directory,
            clock=clock,
            uow_factory=uow_factory,
            metrics=metrics,
        )
        self.queries = PaymentQueries(**deps)
        self.corrections = Corrections(**deps, max_amount=deps["config"].correction_max_amount)
        acquirers = acquirers or StaticCardAcquirers(())
        self.settlements = Settlements(**deps, acquirers=acquirers)
        self.backlog = SettlementBacklog(**deps)
        self.merchant = MerchantPayments(**deps, fees=merchant_fees)
        self.cards = CardPayments(**deps, acquirers=acquirers, fees=card_fees)
        self.card_refunds = CardRefunds(**deps, acquirers=acquirers)
        self.card_sweeper = CardSweeper(
            records=self.cards.records,
            refunds=self.card_refunds,
            acquirers=acquirers,
            uow_factory=uow_factory,
            clock=clock,
            metrics=metrics if isinstance(metrics, CardMetrics) else NullCardMetrics(),
        )

    async def transfer(self, cmd: TransferCommand) -> PaymentResult:
        """Move money between two customer wallets at once (settles immediately)."""
        return await self.transfers.transfer(cmd)

    async def decide_risk_review(
        self,
        payment_id: uuid.UUID,
        decision: ReviewDecision,
        *,
        analyst: str,
        note: str | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """A risk analyst approves or rejects a payment held for review; see `RiskReviews.decide`."""
        return await self.risk_reviews.decide(
            payment_id, decision, analyst=analyst, note=note, correlation_id=correlation_id
        )

    async def cash_in(self, cmd: ProviderMoveCommand) -> PaymentResult:
        """Fund the wallet from the customer's mobile-money account through a provider."""
        return await self.provider_moves.cash_in(cmd)

    async def cash_out(self, cmd: ProviderMoveCommand) -> PaymentResult:
        """Withdraw to the customer's mobile-money account (funds held until the provider answers)."""
        return await self.provider_moves.cash_out(cmd)

    async def record_provider_answer(
        self,
        payment_id: uuid.UUID,
        result: ProviderResult,
        *,
        provider: str,
        correlation_id: str | None = None,
    ) -> bool:
        """A provider's word (webhook, or a status it was asked for after a callback) on a
        cash-in/out; False when it has no such payment. See `ProviderMoves.record_provider_answer`."""
        return await self.provider_moves.record_provider_answer(
            payment_id, result, provider=provider, correlation_id=correlation_id
        )

    async def sweep_pending(
        self,
        *,
        older_than: timedelta,
        give_up_after: timedelta,
        limit: int = 500,
        stop: asyncio.Event | None = None,
    ) -> dict[str, int]:
        """One pass of the pending-payment sweeper; see `PendingSweeper.sweep_pending`."""
        return await self.sweeper.sweep_pending(
            older_than=older_than, give_up_after=give_up_after, limit=limit, stop=stop
        )

    async def pay_merchant(self, cmd: MerchantPaymentCommand) -> PaymentResult:
        """Pay a merchant from the customer's wallet, less a fee; settles at once."""
        return await self.merchant.pay_merchant(cmd)

    async def refund(self, cmd: RefundCommand) -> PaymentResult:
        """A merchant refunds (part of) a payment it received; settles at once."""
        return await self.merchant.refund(cmd)

    async def open_merchant_account(self, merchant_user_id: uuid.UUID) -> uuid.UUID:
        return await self.merchant.open_merchant_account(merchant_user_id)

    async def merchant_balance(self, merchant_user_id: uuid.UUID) -> dict[str, Any]:
        return await self.merchant.merchant_balance(merchant_user_id)

    async def merchant_payments(
        self, merchant_user_id: uuid.UUID, *, limit: int, cursor: uuid.UUID | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self.merchant.merchant_payments(merchant_user_id, limit=limit, cursor=cursor)

    async def authorize_card_payment(self, cmd: CardPaymentCommand) -> PaymentResult:
        """A merchant takes a card payment: the acquirer authorizes it (no money moves yet)."""
        return await self.cards.authorize(cmd)

    async def capture_card_payment(self, cmd: CardOperationCommand) -> PaymentResult:
        """Capture (part of) an authorized card payment, once; the merchant is credited less the fee."""
        return await self.cards.capture(cmd)

    async def void_card_payment(self, cmd: CardOperationCommand) -> PaymentResult:
        """Release an authorized card payment's hold; it ends FAILED (`voided`)."""
        return await self.cards.void(cmd)

    async def refund_card_payment(self, cmd: CardRefundCommand) -> PaymentResult:
        """Refund (part of) a captured card payment to the card, up to what was captured."""
        return await self.card_refunds.refund(cmd)

    async def card_payment(self, merchant_user_id: uuid.UUID, payment_id: uuid.UUID) -> dict[str, Any]:
        return await self.cards.card_payment(merchant_user_id, payment_id)

    async def record_chargeback(self, chargeback: Chargeback, *, acquirer: str, correlation_id: str | None) -> str:
        """An acquirer's chargeback notification, applied once (see `ChargebackBook`)."""
        return await self.card_refunds.record_chargeback(chargeback, acquirer=acquirer, correlation_id=correlation_id)

    async def sweep_card_payments(
        self,
        *,
        older_than: timedelta,
        give_up_after: timedelta,
        limit: int = 500,
        stop: asyncio.Event | None = None,
    ) -> dict[str, int]:
        """One pass of the card resolution job; see `CardSweeper.sweep`."""
        return await self.card_sweeper.sweep(older_than=older_than, give_up_after=give_up_after, limit=limit, stop=stop)

    async def settle(
        self,
        provider: str,
        currency: str,
        *,
        payment_ids: Sequence[uuid.UUID] | None = None,
        through: date | None = None,
        actor: str,
        reference: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> PaymentResult:
        """Settle a provider's captured payments (J+N: clearing → settlement bank); see
        `Settlements.settle`. The body reports counts, per-direction totals and outcomes."""
        return await self.settlements.settle(
            SettlementCommand(
                provider=provider,
                currency=currency,
                actor=actor,
                reference=reference,
                payment_ids=tuple(payment_ids) if payment_ids is not None else None,
                through=through,
                idempotency_key=idempotency_key,
                correlation_id=correlation_id,
            )
        )

    async def settlement_backlog(self, *, provider: str | None = None, currency: str | None = None) -> dict[str, Any]:
        """Captured payments awaiting settlement, due and overdue; see `SettlementBacklog`."""
        return await self.backlog.settlement_backlog(provider=provider, currency=currency)

    async def get_payment(self, payment_id: uuid.UUID, *, viewer: uuid.UUID, privileged: bool) -> dict[str, Any]:
        return await self.queries.get_payment(payment_id, viewer=viewer, privileged=privileged)

    async def service_payment(self, payment_id: uuid.UUID) -> dict[str, Any]:
        """A payment as another Kora service sees it (no PII, no wallet ids); PaymentNotFound."""
        return await self.queries.service_view(payment_id)

    async def query_provider_now(
        self, payment_id: uuid.UUID, *, actor: str, correlation_id: str | None = None
    ) -> dict[str, Any]:
        """Ask the provider now about a cash-in/out and record its answer; the payment as it
        stands after (service view) plus `provider_answer`. See `PendingSweeper.query_now`."""
        payment, answer = await self.sweeper.query_now(payment_id, actor=actor, correlation_id=correlation_id)
        return payment.service_view() | {"provider_answer": answer}

    async def post_correction(self, cmd: CorrectionCommand) -> PaymentResult:
        """Post a reconciliation case's approved correction; see `Corrections.post_correction`."""
        return await self.corrections.post_correction(cmd)

    async def status_query(self, payment_id: uuid.UUID, provider: str) -> ProviderStatusQuery | None:
        """How to ask `provider` about one of our cash-ins/outs there; see `PaymentQueries`."""
        return await self.queries.status_query(payment_id, provider)

    async def list_payments(
        self, user_id: uuid.UUID, *, limit: int, cursor: uuid.UUID | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self.queries.list_payments(user_id, limit=limit, cursor=cursor)

    async def wallet(self, user_id: uuid.UUID) -> dict[str, Any]:
        return await self.queries.wallet(user_id)

    async def wallet_entries(
        self, user_id: uuid.UUID, *, limit: int, cursor: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self.queries.wallet_entries(user_id, limit=limit, cursor=cursor)
