"""The `recon` consumer: folds the core's `payment.status_changed` v1 events into
`recon_payments` in the reconciliation database (the service never reads the core's).

Run by the core's consumer runtime on the reconciliation engine: the runtime records each
event in that database's `processed_events` in the transaction of this effect, so a
redelivered event changes nothing. Events of one payment may still arrive out of order (a
redelivery after a newer one, a replay): the stored row only moves to a higher `sequence`.
Payments without a provider (internal transfers) are left out: no report lists them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events.domain import Envelope
from kora.events.ports import ConsumerSpec
from kora.kernel import Clock
from kora.reconciliation.adapters.view_store import upsert_payment
from kora.reconciliation.domain.view import internal_txn

PAYMENT_STATUS_CHANGED_SUBJECT = "kora.events.payment.status_changed.v1"


class ReconFeedHandler:
    """An `EventHandler` (kora.events.runtime) named `recon`."""

    spec = ConsumerSpec("recon", (PAYMENT_STATUS_CHANGED_SUBJECT,))
    handles = frozenset({("payment.status_changed", 1)})

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        txn = internal_txn(event.payload)
        if txn is None:
            return
        await upsert_payment(conn, txn, sequence=int(event.payload["sequence"]), at=self._clock.now())
