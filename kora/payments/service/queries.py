"""Reads of payments and wallets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from kora.ledger import (
    Direction,
)
from kora.payments.domain.errors import (
    PaymentNotFound,
)
from kora.payments.domain.model import PaymentStatus, PaymentType
from kora.payments.service.base import (
    PaymentsBase,
)
from kora.providers import ProviderOperation, ProviderRequest

_tracer = trace.get_tracer("kora.payments")
_OPERATION = {PaymentType.CASH_IN: ProviderOperation.COLLECT, PaymentType.CASH_OUT: ProviderOperation.DISBURSE}


@dataclass(frozen=True, slots=True)
class ProviderStatusQuery:
    """What asking a provider about one of our payments takes: the request as it was sent, which
    operation it was, and whether the payment still waits on the provider (INITIATED/AUTHORIZED)."""

    request: ProviderRequest
    operation: ProviderOperation
    unresolved: bool


class PaymentQueries(PaymentsBase):
    """Read-only views: a payment, a user's payments, the wallet and its entries."""

    # ----------------------------------------------------------------- reads
    async def get_payment(self, payment_id: uuid.UUID, *, viewer: uuid.UUID, privileged: bool) -> dict[str, Any]:
        """The payment's view; PaymentNotFound for anyone who is not a party (or support/admin).
        Support and admin also see its `flags` (reconciliation's confirmed mismatches)."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
            flags = await uow.payments.flags(payment_id) if privileged and payment is not None else []
        if payment is None or not (privileged or payment.is_party(viewer)):
            raise PaymentNotFound("no such payment")
        view = payment.view()
        if privileged:
            view["flags"] = [flag.view() for flag in flags]
        return view

    async def service_view(self, payment_id: uuid.UUID) -> dict[str, Any]:
        """The payment as another Kora service sees it; PaymentNotFound when there is none."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
        if payment is None:
            raise PaymentNotFound("no such payment")
        return payment.service_view()

    async def status_query(self, payment_id: uuid.UUID, provider: str) -> ProviderStatusQuery | None:
        """How to ask `provider` about this payment (a provider's callback names it); None
        unless it is one of our cash-ins or cash-outs at that provider."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
        if payment is None or payment.provider != provider or payment.type not in _OPERATION:
            return None
        account = await self._directory.mobile_money_number(payment.initiated_by)
        request = ProviderRequest(payment.id, payment.money, account_ref=account, correlation_id=payment.correlation_id)
        unresolved = payment.status in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED)
        return ProviderStatusQuery(request, _OPERATION[payment.type], unresolved)

    async def list_payments(
        self, user_id: uuid.UUID, *, limit: int, cursor: uuid.UUID | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        async with self._uow() as uow:
            payments = await uow.payments.list_for_user(user_id, limit=limit + 1, before_id=cursor)
        page = payments[:limit]
        next_cursor = str(page[-1].id) if len(payments) > limit else None
        return [p.view() for p in page], next_cursor

    async def wallet(self, user_id: uuid.UUID) -> dict[str, Any]:
        async with self._uow() as uow:
            wallet_id = await self._wallet_id(uow, user_id)
            balance = await uow.ledger.balance(wallet_id)
            await uow.commit()
        return {
            "wallet_id": str(wallet_id),
            "currency": balance.currency,
            "balance": balance.posted,
            "available_balance": balance.available,
        }

    async def wallet_entries(
        self, user_id: uuid.UUID, *, limit: int, cursor: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        async with self._uow() as uow:
            wallet_id = await self._wallet_id(uow, user_id)
            entries = await uow.ledger.history(wallet_id, limit=limit + 1, before_sequence=cursor)
            await uow.commit()
        page = entries[:limit]
        next_cursor = str(page[-1].sequence) if len(entries) > limit else None
        return [
            {
                "id": str(e.id),
                "sequence": e.sequence,
                "direction": e.direction.value,
                "amount": e.amount if e.direction is Direction.CREDIT else -e.amount,
                "currency": e.currency,
                "balance_after": e.balance_after,
                "payment_id": str(e.payment_id) if e.payment_id else None,
                "transaction_id": str(e.transaction_id),
                "created_at": e.created_at.isoformat(),
            }
            for e in page
        ], next_cursor
