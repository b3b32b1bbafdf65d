"""The feed reconciliation reads (issue #5 builds the engine on it).

For every payment that went through a provider (`provider` set; internal payments have no
counterparty statement to reconcile against and are left out): one row with its latest known
state, and an append-only journal of the status changes seen.

Events of one payment normally arrive in order, but a redelivery can bring an older one after a
newer: the row only moves forward (`sequence` higher than the stored `last_sequence`), and an
older event may only fill a time the row does not know yet (captured_at, settled_at).

`ledger.transaction_posted` is not consumed: the payment event already carries what matching a
provider's statement needs (reference, amount, fee, status, times), and the engine can read the
ledger's own postings through the ledger's interface when it checks the books side.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events.consumers.payload import PAYMENT_STATUS_CHANGED, PAYMENT_STATUS_CHANGED_SUBJECT, PaymentChange
from kora.events.consumers.tables import insert_for, recon_feed_events, recon_feed_payments
from kora.events.domain import Envelope
from kora.events.ports import ConsumerSpec
from kora.kernel import Clock


class ReconFeedConsumer:
    spec = ConsumerSpec("recon-feed", (PAYMENT_STATUS_CHANGED_SUBJECT,))
    handles = frozenset({PAYMENT_STATUS_CHANGED})

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        change = PaymentChange.of(event.payload)
        if change.provider is None:
            return
        await conn.execute(
            insert_for(conn, recon_feed_events)
            .values(
                event_id=event.id,
                payment_id=change.payment_id,
                status=change.status,
                sequence=change.sequence,
                occurred_at=event.occurred_at,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        p = recon_feed_payments
        settled_at = change.reached_at.get("SETTLED")
        insert = insert_for(conn, p)
        await conn.execute(
            insert.values(
                payment_id=change.payment_id,
                payment_type=change.payment_type,
                provider=change.provider,
                provider_ref=change.provider_ref,
                amount=change.amount,
                currency=change.currency,
                fee=change.fee,
                captured_amount=change.captured_amount,
                status=change.status,
                captured_at=change.captured_at,
                settlement_due=change.settlement_due,
                settled_at=settled_at,
                last_event_id=event.id,
                last_sequence=change.sequence,
                updated_at=self._clock.now(),
            ).on_conflict_do_update(
                index_elements=["payment_id"],
                set_={
                    "provider_ref": sa.func.coalesce(insert.excluded.provider_ref, p.c.provider_ref),
                    "amount": insert.excluded.amount,
                    "fee": insert.excluded.fee,
                    "captured_amount": insert.excluded.captured_amount,
                    "status": insert.excluded.status,
                    "captured_at": sa.func.coalesce(insert.excluded.captured_at, p.c.captured_at),
                    "settlement_due": insert.excluded.settlement_due,
                    "settled_at": sa.func.coalesce(p.c.settled_at, insert.excluded.settled_at),
                    "last_event_id": insert.excluded.last_event_id,
                    "last_sequence": insert.excluded.last_sequence,
                    "updated_at": insert.excluded.updated_at,
                },
                where=p.c.last_sequence < insert.excluded.last_sequence,
            )
        )
        # An older event arriving late may still know a time the row lacks.
        for column, at in (("captured_at", change.captured_at), ("settled_at", settled_at)):
            if at is not None:
                await conn.execute(
                    p.update()
                    .where(p.c.payment_id == change.payment_id, p.c[column].is_(None))
                    .values({column: at, "updated_at": self._clock.now()})
                )
