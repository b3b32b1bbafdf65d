"""The `recon` consumer on the reconciliation database (SQLite and PostgreSQL, migrated by its
own chain): real `payment.status_changed` payloads from the payments producer, signed, carried
by the core's embedded stream and applied by a real `ConsumerRunner` on the recon engine. Out
of order and redelivered events never move a payment back nor apply twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events import Envelope, Origin
from kora.events.adapters.dead_letters import SqlDeadLetters
from kora.events.adapters.outbox import envelope_for
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.ports import OutgoingMessage
from kora.events.runtime import ConsumerRunner
from kora.events.signing import EventSigner, EventVerifier
from kora.kernel import FixedClock, Money
from kora.payments.adapters.events import status_changed_events
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType
from kora.platform.db import create_engine
from kora.reconciliation.adapters.tables import dead_letters, processed_events, recon_payments
from kora.reconciliation.service.feed import ReconFeedHandler
from tests.unit.reconciliation.factories import START

ACTOR = "test"


@dataclass
class Feed:
    """The recon database, the core's stream (its own database) and a `recon` runner."""

    engine: AsyncEngine
    bus: SqlStreamBus
    signer: EventSigner
    runner: ConsumerRunner

    def emit(self, payment: Payment, *, signer: EventSigner | None = None) -> Envelope:
        """The envelope of the payment's changes since the last emit, as the producer shapes it."""
        (event,) = status_changed_events(payment, list(payment.new_changes))
        payment.new_changes.clear()
        return envelope_for(event, Origin(correlation_id="corr-recon"), signer or self.signer)

    async def publish(self, *envelopes: Envelope, msg_ids: list[str] | None = None) -> None:
        ids = msg_ids or [str(e.id) for e in envelopes]
        messages = [
            OutgoingMessage(e.subject, i, e.to_json(), {"Nats-Msg-Id": i}) for e, i in zip(envelopes, ids, strict=True)
        ]
        assert await self.bus.publish(messages) == [None] * len(messages)

    async def drain(self) -> list[str]:
        words = []
        while deliveries := await self.bus.fetch(self.runner.handler.spec, batch=50, wait_seconds=0.0):
            words += [(await self.runner.process(d)).word for d in deliveries]
        return words

    async def rows(self, table: sa.Table) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(sa.select(table))]


@pytest.fixture
async def feed(recon_url: str, sqlite_engine: AsyncEngine) -> AsyncIterator[Feed]:
    engine = create_engine(recon_url, pool_size=2)
    clock = FixedClock(START + timedelta(hours=1))
    key = Ed25519PrivateKey.generate()
    bus = SqlStreamBus(sqlite_engine, clock)  # the core's embedded stream, in the core's database
    runner = ConsumerRunner(
        ReconFeedHandler(clock=clock),
        source=bus,
        engine=engine,
        verifier=EventVerifier({"k-test": key.public_key()}),
        clock=clock,
        dead_letters=SqlDeadLetters(engine),
    )
    try:
        yield Feed(engine, bus, EventSigner("k-test", key), runner)
    finally:
        await engine.dispose()


def provider_payment(
    *,
    provider: str,
    amount: int,
    payment_id: uuid.UUID | None = None,
    kind: PaymentType = PaymentType.CASH_IN,
    currency: str = "XOF",
) -> Payment:
    return Payment.initiate(
        type=kind,
        money=Money(amount, currency),
        at=START,
        initiated_by=uuid.uuid4(),
        actor=ACTOR,
        payee_user_id=uuid.uuid4(),
        provider=provider,
        payment_id=payment_id,
    )


def lifecycle(feed: Feed, payment: Payment, *, provider_ref: str, fee: int = 0) -> list[Envelope]:
    """INITIATED (1), AUTHORIZED with the provider's id (2), CAPTURED due J+1 (3)."""
    initiated = feed.emit(payment)
    payment.transition(PaymentStatus.AUTHORIZED, at=START, reason="asked", actor=ACTOR)
    payment.provider_ref = provider_ref
    payment.fee = fee
    authorized = feed.emit(payment)
    captured_at = START + timedelta(minutes=5)
    payment.capture(at=captured_at, reason="confirmed", actor=ACTOR, settlement_due=captured_at + timedelta(days=1))
    return [initiated, authorized, feed.emit(payment)]


async def test_out_of_order_and_redelivered_events_keep_the_latest_state_once(feed: Feed) -> None:
    payment = provider_payment(provider="momo", amount=8_000)
    initiated, authorized, captured = lifecycle(feed, payment, provider_ref="MOMO-123", fee=80)

    # The capture arrives before the authorization; then the authorization is redelivered.
    assert await feed.runner.apply(initiated)
    assert await feed.runner.apply(captured)
    assert await feed.runner.apply(authorized)
    assert await feed.runner.apply(authorized) is False
    assert await feed.runner.apply(captured) is False

    (row,) = await feed.rows(recon_payments)
    assert row["payment_id"] == str(payment.id) == row["our_reference"]
    assert (row["status"], row["sequence"]) == ("CAPTURED", 3)
    assert (row["provider"], row["provider_ref"], row["type"]) == ("momo", "MOMO-123", "cash_in")
    assert (row["amount"], row["fee"], row["captured_amount"], row["currency"]) == (8_000, 80, 8_000, "XOF")
    assert row["captured_at"] == START + timedelta(minutes=5)
    assert row["settlement_due"] == START + timedelta(days=1, minutes=5)
    assert len(await feed.rows(processed_events)) == 3
    assert all(r["consumer"] == "recon" for r in await feed.rows(processed_events))


async def test_through_the_stream_a_republished_event_is_a_duplicate(feed: Feed) -> None:
    payment = provider_payment(provider="wave", amount=5_000)
    envelopes = lifecycle(feed, payment, provider_ref="T_WAVE_1")
    await feed.publish(*reversed(envelopes))  # newest first
    assert await feed.drain() == ["applied"] * 3
    await feed.publish(envelopes[1], msg_ids=["again-" + str(envelopes[1].id)])  # a second copy, new msg id
    assert await feed.drain() == ["duplicate"]

    (row,) = await feed.rows(recon_payments)
    assert (row["status"], row["sequence"], row["provider_ref"]) == ("CAPTURED", 3, "T_WAVE_1")
    assert len(await feed.rows(processed_events)) == 3


async def test_internal_payments_are_left_out_and_forged_events_are_parked(feed: Feed) -> None:
    internal = Payment.initiate(
        type=PaymentType.P2P,
        money=Money(1_000, "XOF"),
        at=START,
        initiated_by=uuid.uuid4(),
        actor=ACTOR,
        payer_user_id=uuid.uuid4(),
        payee_user_id=uuid.uuid4(),
    )
    forger = EventSigner("k-test", Ed25519PrivateKey.generate())
    forged = feed.emit(provider_payment(provider="momo", amount=9_999), signer=forger)
    await feed.publish(feed.emit(internal), forged)
    assert await feed.drain() == ["applied", "dead_lettered"]

    assert await feed.rows(recon_payments) == []
    (letter,) = await feed.rows(dead_letters)
    assert (letter["consumer"], letter["event_id"], letter["status"]) == ("recon", str(forged.id), "open")
