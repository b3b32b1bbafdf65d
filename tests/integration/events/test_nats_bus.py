"""NatsEventBus against a real JetStream: the same behaviour as the embedded bus (publish with
de-duplication, durable consumers with explicit acks, delayed redelivery, max_deliver, replay,
dead letters), and deploy/nats/nats.conf's least-privilege users on a private server."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kora.events.adapters.nats_bus import BusUnavailable, NatsEventBus, NotFoundOnBus, consumer_filter
from kora.events.ports import ConsumerSpec, Delivery, OutgoingMessage, PublishError
from tests.integration.events.nats_support import SecuredNats, SharedNats, secured_nats, shared_nats
from tests.support.net import free_port

__all__ = ["secured_nats", "shared_nats"]  # the fixtures, used by name below

PAID = "kora.events.payment.status_changed.v1"
POSTED = "kora.events.ledger.transaction_posted.v1"
REGISTERED = "kora.events.identity.user_registered.v1"


def message(subject: str = PAID, *, msg_id: str | None = None, data: bytes = b"{}") -> OutgoingMessage:
    event_id = msg_id or str(uuid.uuid4())
    return OutgoingMessage(subject, event_id, data, {"Kora-Event-Type": subject.split(".")[2], "traceparent": "00-x"})


def spec(name: str = "kpi", *subjects: str, max_deliver: int = 5) -> ConsumerSpec:
    return ConsumerSpec(name, subjects or (PAID,), max_deliver=max_deliver)


async def drain(source: NatsEventBus, consumer: ConsumerSpec, wait: float = 0.5) -> list[Delivery]:
    return await source.fetch(consumer, batch=100, wait_seconds=wait)


async def until_lag(bus: NatsEventBus, consumer: str, expected: int) -> None:
    """Acks are sent without waiting for the server: poll the lag for a moment."""
    for _ in range(50):
        if await bus.consumer_lag(consumer) == expected:
            return
        await asyncio.sleep(0.02)
    assert await bus.consumer_lag(consumer) == expected


def test_one_filter_subject_covers_several() -> None:
    assert consumer_filter([PAID]) == PAID
    assert consumer_filter([PAID, PAID[:-1] + "2"]) == "kora.events.payment.status_changed.*"
    assert consumer_filter([PAID, POSTED]) == "kora.events.*.*.v1"
    assert consumer_filter([PAID, "kora.events.payment.>"]) == "kora.events.payment.>"
    assert consumer_filter(["kora.events.a.v1", "kora.events.b.c.v1"]) == "kora.events.>"
    assert consumer_filter(["other.x", PAID]) == "kora.events.>"


async def test_publish_fetch_ack_round_trip(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    sent = [message(data=b'{"n":1}'), message(POSTED, data=b'{"n":2}')]
    before = datetime.now(UTC) - timedelta(seconds=5)

    assert await bus.publish(sent) == [None, None]

    got = await drain(bus, spec("kpi", PAID, POSTED), wait=2.0)
    assert [(d.subject, d.data, d.stream_seq, d.delivered) for d in got] == [
        (PAID, b'{"n":1}', 1, 1),
        (POSTED, b'{"n":2}', 2, 1),
    ]
    assert got[0].headers["Nats-Msg-Id"] == sent[0].msg_id
    assert got[0].headers["Kora-Event-Type"] == "payment"
    assert got[0].headers["traceparent"] == "00-x"
    assert got[0].published_at is not None
    assert got[0].published_at > before
    for delivery in got:
        await delivery.ack()
    assert await drain(bus, spec("kpi", PAID, POSTED), wait=0.3) == []
    await until_lag(bus, "kpi", 0)


async def test_a_duplicate_publish_is_stored_once(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    first = message()

    assert await bus.publish([first, message(msg_id=first.msg_id)]) == [None, None]
    assert await bus.publish([first]) == [None]

    assert await bus.stream_last_seq() == 1
    assert len(await drain(bus, spec())) == 1


async def test_only_the_consumers_subjects_are_delivered(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    await bus.publish([message(PAID), message(REGISTERED), message(POSTED)])
    consumer = spec("recon-feed", PAID, POSTED)  # filter kora.events.*.*.v1 also matches REGISTERED

    got = await drain(bus, consumer, wait=1.0)
    assert [d.subject for d in got] == [PAID, POSTED]
    replayed = [d.subject async for d in bus.replay(consumer, from_seq=1)]
    assert replayed == [PAID, POSTED]


async def test_nak_redelivers_after_the_delay(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    await bus.publish([message()])
    [first] = await drain(bus, spec())
    naked = time.monotonic()
    await first.nak(1.0)

    assert await drain(bus, spec(), wait=0.3) == []  # not before the delay
    [again] = await drain(bus, spec(), wait=3.0)
    assert time.monotonic() - naked >= 0.9
    assert (again.stream_seq, again.delivered) == (first.stream_seq, 2)
    await again.ack()
    await until_lag(bus, "kpi", 0)


async def test_max_deliver_is_respected(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    consumer = spec("notifications", max_deliver=2)
    await bus.publish([message()])

    [first] = await drain(bus, consumer)
    await first.nak(0.1)
    [second] = await drain(bus, consumer, wait=2.0)
    assert second.delivered == 2
    await second.nak(0.1)
    # One more than the spec's limit, so the runtime can park a message that crashed its process.
    [third] = await drain(bus, consumer, wait=2.0)
    assert third.delivered == 3
    await third.nak(0.1)

    assert await drain(bus, consumer, wait=1.0) == []


async def test_consumer_lag_counts_pending_and_unacknowledged(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    await bus.publish([message() for _ in range(3)])

    got = await bus.fetch(spec(), batch=2, wait_seconds=1.0)
    assert await bus.consumer_lag("kpi") == 3  # 1 not delivered + 2 in flight
    for delivery in got:
        await delivery.ack()
    await until_lag(bus, "kpi", 1)


async def test_replay_from_a_sequence_and_from_a_time(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    await bus.publish([message(data=str(n).encode()) for n in range(1, 6)])
    await asyncio.sleep(0.05)
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await bus.publish([message(data=b"6"), message(data=b"7")])

    from_three = [(d.stream_seq, d.data) async for d in bus.replay(spec(), from_seq=3)]
    assert from_three == [(3, b"3"), (4, b"4"), (5, b"5"), (6, b"6"), (7, b"7")]
    from_time = [d async for d in bus.replay(spec(), since=since)]
    assert [d.data for d in from_time] == [b"6", b"7"]
    await from_time[0].ack()  # no-ops outside the durable position
    await from_time[1].nak(1.0)
    assert [d async for d in bus.replay(spec(), from_seq=8)] == []
    assert len(await drain(bus, spec())) == 7  # the durable consumer still starts at the beginning


async def test_dead_letter_is_published_on_the_consumers_subject(shared_nats: SharedNats) -> None:
    await shared_nats.bus.publish_dead_letter("kpi", b"poison", {"Kora-Dead-Letter-Reason": "malformed"})

    dlq = await shared_nats.connect(stream=shared_nats.dlq_stream)
    try:
        [letter] = await drain(dlq, ConsumerSpec("dlq-reader", ("kora.dlq.kpi",)), wait=2.0)
    finally:
        await dlq.close()
    assert (letter.subject, letter.data) == ("kora.dlq.kpi", b"poison")
    assert letter.headers["Kora-Dead-Letter-Reason"] == "malformed"


async def test_a_publish_nothing_stores_is_an_error(shared_nats: SharedNats) -> None:
    [error] = await shared_nats.bus.publish([message("kora.elsewhere.v1")])  # no stream listens there
    assert error is not None


async def test_pipelined_batch_arrives_complete_and_in_order(shared_nats: SharedNats) -> None:
    bus = shared_nats.bus
    sent = [message(data=str(n).encode()) for n in range(3000)]
    assert not any(await bus.publish(sent))
    seqs = [d.data async for d in bus.replay(spec(), from_seq=1)]
    assert seqs == [m.data for m in sent]


async def test_an_unknown_consumer_or_stream_is_not_found(shared_nats: SharedNats) -> None:
    with pytest.raises(NotFoundOnBus):
        await shared_nats.bus.consumer_lag("nobody")
    elsewhere = await shared_nats.connect(stream="NO_SUCH_STREAM")
    try:
        with pytest.raises(NotFoundOnBus):
            await elsewhere.stream_last_seq()
    finally:
        await elsewhere.close()


async def test_no_server_is_bus_unavailable() -> None:
    with pytest.raises(BusUnavailable):
        await NatsEventBus.connect(f"nats://127.0.0.1:{free_port()}", connect_timeout=1.0)


# -- deploy/nats/nats.conf: least privilege -------------------------------------------------------
async def test_the_secured_server_enforces_each_users_permissions(secured_nats: SecuredNats) -> None:
    admin = await secured_nats.connect("kora-admin")
    relay = await secured_nats.connect("kora-relay")
    kpi = await secured_nats.connect("kora-kpi")
    notifications = await secured_nats.connect("kora-notifications")
    try:
        with pytest.raises(BusUnavailable):
            await relay.ensure_stream()  # only the admin manages streams
        await admin.ensure_stream()
        assert await relay.stream_last_seq() == 0

        assert await relay.publish([message(), message(POSTED)]) == [None, None]
        with pytest.raises(BusUnavailable):
            await relay.fetch(spec("kpi"), batch=10, wait_seconds=0.5)

        [delivery] = await kpi.fetch(spec("kpi"), batch=10, wait_seconds=2.0)
        await delivery.ack()
        await kpi.publish_dead_letter("kpi", b"poison", {"Kora-Dead-Letter-Reason": "malformed"})
        [refused] = await kpi.publish([message()])
        assert refused is not None
        assert "permissions violation" in str(refused).lower()
        with pytest.raises(BusUnavailable):  # another consumer's durable
            await kpi.fetch(spec("notifications"), batch=10, wait_seconds=0.5)
        with pytest.raises(PublishError, match="permissions violation"):
            await kpi.publish_dead_letter("notifications", b"x", {})

        assert len(await notifications.fetch(spec("notifications"), batch=10, wait_seconds=2.0)) == 1
        assert await admin.consumer_lag("notifications") == 1
        assert [d.subject async for d in admin.replay(spec("kpi", PAID, POSTED), from_seq=1)] == [PAID, POSTED]
        assert await admin.stream_last_seq() == 2
    finally:
        for bus in (admin, relay, kpi, notifications):
            await bus.close()


async def test_a_wrong_password_is_refused(secured_nats: SecuredNats) -> None:
    with pytest.raises(BusUnavailable):
        await secured_nats.connect("kora-relay", password="not-the-password")


SETTLED = "kora.events.reconciliation.settlement_confirmed.v1"
FLAGGED = "kora.events.reconciliation.mismatch_confirmed.v1"


async def test_reconciliation_and_the_core_each_publish_only_their_own_events(secured_nats: SecuredNats) -> None:
    admin = await secured_nats.connect("kora-admin")
    relay = await secured_nats.connect("kora-relay")
    recon = await secured_nats.connect("kora-recon")
    settlement = await secured_nats.connect("kora-settlement")
    try:
        await admin.ensure_stream()
        # The reconciliation service publishes its outcomes, never a core event...
        assert await recon.publish([message(SETTLED), message(FLAGGED)]) == [None, None]
        [refused] = await recon.publish([message(PAID)])
        assert refused is not None
        assert "permissions violation" in str(refused).lower()
        # ... and the core's relay never publishes a reconciliation outcome.
        assert await relay.publish([message(PAID)]) == [None]
        [forged] = await relay.publish([message(SETTLED)])
        assert forged is not None
        assert "permissions violation" in str(forged).lower()

        # Each reads its own durable only: recon the core's payment events, settlement the outcomes.
        [paid] = await recon.fetch(spec("recon", PAID), batch=10, wait_seconds=2.0)
        assert paid.subject == PAID
        await paid.ack()
        await recon.publish_dead_letter("recon", b"poison", {"Kora-Dead-Letter-Reason": "forged"})
        with pytest.raises(BusUnavailable):
            await recon.fetch(spec("settlement", SETTLED, FLAGGED), batch=10, wait_seconds=0.5)
        outcomes = await settlement.fetch(spec("settlement", SETTLED, FLAGGED), batch=10, wait_seconds=2.0)
        assert [d.subject for d in outcomes] == [SETTLED, FLAGGED]
        with pytest.raises(BusUnavailable):
            await settlement.fetch(spec("recon", PAID), batch=10, wait_seconds=0.5)
        [no_publish] = await settlement.publish([message(SETTLED)])
        assert no_publish is not None
        with pytest.raises(PublishError, match="permissions violation"):
            await settlement.publish_dead_letter("recon", b"x", {})
        assert await admin.stream_last_seq() == 3  # two outcomes and one payment event: nothing refused got in
    finally:
        for bus in (admin, relay, recon, settlement):
            await bus.close()
