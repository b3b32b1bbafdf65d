"""Kora's side of a reconciliation, built from the core's events only (the service never reads
the core's database): each `payment.status_changed` v1 payload folds into the latest
`InternalTxn` of that payment. Events may arrive out of order after a redelivery or a replay;
the payload's `sequence` (how many status changes the payment has had) decides which is newer.

Pure: the payloads come in as mappings, already verified and contract-checked by the consumer
runtime."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kora.reconciliation.domain.matching import InternalTxn


def internal_txn(payload: Mapping[str, Any]) -> InternalTxn | None:
    """The matcher's view of one payment as this event tells it; None for payments that never
    reach a provider's report (internal transfers and merchant payments have no provider)."""
    provider = payload.get("provider")
    if not provider:
        return None
    status = str(payload["status"])
    if status == "FAILED" and payload.get("failure_code") == "reversed":
        # The provider reversed it before we captured it: on both sides nothing moved in the
        # end, which the provider's report shows as a reversal.
        status = "REVERSED"
    return InternalTxn(
        payment_id=str(payload["payment_id"]),
        provider=str(provider),
        provider_ref=_optional(payload.get("provider_ref")),
        # Our payment id is the reference every provider adapter sends (MoMo externalId, Wave
        # client_reference, the card merchant reference).
        our_reference=str(payload["payment_id"]),
        type=str(payload["payment_type"]),
        status=status,
        amount=int(payload["amount"]),
        fee=int(payload.get("fee") or 0),
        currency=str(payload["currency"]),
        captured_at=_time(payload.get("captured_at")),
        settlement_due=_time(payload.get("settlement_due")),
        captured_amount=None if payload.get("captured_amount") is None else int(payload["captured_amount"]),
    )


@dataclass
class InternalView:
    """The latest known state of each provider payment, folded from events in any order."""

    payments: dict[str, InternalTxn] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)

    def apply(self, payload: Mapping[str, Any]) -> bool:
        """Fold one event in; False when it is older than what the view already holds (or the
        payment has no provider)."""
        txn = internal_txn(payload)
        if txn is None:
            return False
        sequence = int(payload["sequence"])
        if sequence <= self.sequences.get(txn.payment_id, 0):
            return False
        self.payments[txn.payment_id] = txn
        self.sequences[txn.payment_id] = sequence
        return True

    def for_provider(self, provider: str) -> list[InternalTxn]:
        return [t for t in self.payments.values() if t.provider == provider]


def _optional(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError("event times carry a time zone")
    return at
