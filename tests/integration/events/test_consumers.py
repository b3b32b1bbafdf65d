"""Kora's own consumers (notifications, KPI, reconciliation feed) on a migrated database
(SQLite and PostgreSQL), fed with envelopes shaped by the real producers, signed with a fresh
Ed25519 key and run through a real `ConsumerRunner` on the embedded stream."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events import DomainEvent, Envelope, Origin, envelope_from_json
from kora.events.adapters.dead_letters import SqlDeadLetters
from kora.events.adapters.outbox import envelope_for
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.consumers import (
    KpiConsumer,
    NotificationDispatcher,
    NotificationsConsumer,
    ReconFeedConsumer,
    SimulatedSender,
    build_consumers,
    daily_kpis,
    daily_new_customers,
)
from kora.events.consumers.tables import notifications, recon_feed_events, recon_feed_payments
from kora.events.ports import OutgoingMessage
from kora.events.runtime import ConsumerRunner, EventHandler
from kora.events.signing import EventSigner, EventVerifier
from kora.kernel import FixedClock, Money
from kora.payments.adapters.events import status_changed_events
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType
from kora.platform.db import create_engine, metadata
from kora.platform.migrate import downgrade
from kora.platform.migrate import upgrade as migrate_up

T0 = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
ACTOR = "test"


@dataclass
class Env:
    engine: AsyncEngine
    clock: FixedClock
    signer: EventSigner
    verifier: EventVerifier
    bus: SqlStreamBus
    sender: SimulatedSender = field(default_factory=SimulatedSender)

    def runner(self, handler: EventHandler) -> ConsumerRunner:
        return ConsumerRunner(
            handler,
            source=self.bus,
            engine=self.engine,
            verifier=self.verifier,
            clock=self.clock,
            dead_letters=SqlDeadLetters(self.engine),
        )

    def envelope(self, event: DomainEvent) -> Envelope:
        return envelope_for(event, Origin(correlation_id="corr-1"), self.signer)

    def emit(self, payment: Payment) -> Envelope:
        """The envelope of the payment's changes since the last emit, as its repository records it."""
        events = status_changed_events(payment, list(payment.new_changes))
        payment.new_changes.clear()
        assert len(events) == 1
        return self.envelope(events[0])

    def registered(self, user_id: uuid.UUID, *roles: str, at: datetime = T0) -> Envelope:
        # The shape kora/identity/adapters/sql.py records.
        payload = {"user_id": str(user_id), "roles": sorted(roles)}
        return self.envelope(DomainEvent("identity.user_registered", 1, "user", str(user_id), payload, at))

    async def publish(self, *envelopes: Envelope) -> None:
        messages = [OutgoingMessage(e.subject, str(e.id), e.to_json(), {"Nats-Msg-Id": str(e.id)}) for e in envelopes]
        assert await self.bus.publish(messages) == [None] * len(messages)

    async def drain(self, runner: ConsumerRunner) -> list[str]:
        words = []
        while deliveries := await self.bus.fetch(runner.handler.spec, batch=50, wait_seconds=0.0):
            for delivery in deliveries:
                words.append((await runner.process(delivery)).word)
        return words


@pytest.fixture
async def env(migrated_url: str) -> AsyncIterator[Env]:
    engine = create_engine(migrated_url, pool_size=2)
    clock = FixedClock(T0 + timedelta(minutes=5))
    key = Ed25519PrivateKey.generate()
    yield Env(
        engine,
        clock,
        EventSigner("k-test", key),
        EventVerifier({"k-test": key.public_key()}),
        SqlStreamBus(engine, clock),
    )
    await engine.dispose()


def _payment(
    kind: PaymentType,
    *,
    amount: int = 10_000,
    fee: int = 0,
    provider: str | None = None,
    payer: uuid.UUID | None = None,
    payee: uuid.UUID | None = None,
    at: datetime = T0,
) -> Payment:
    return Payment.initiate(
        type=kind,
        money=Money(amount, "XOF"),
        at=at,
        initiated_by=payer or payee or uuid.uuid4(),
        actor=ACTOR,
        payer_user_id=payer,
        payee_user_id=payee,
        provider=provider,
        fee=fee,
    )


def _settle_internal(payment: Payment, at: datetime = T0) -> None:
    """An internal payment: authorized, captured and settled in one unit of work."""
    payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="funds held", actor=ACTOR)
    payment.capture(at=at, reason="captured", actor=ACTOR, settlement_due=None)
    payment.transition(PaymentStatus.SETTLED, at=at, reason="internal", actor=ACTOR)


async def _rows(engine: AsyncEngine, table: sa.Table) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(sa.select(table))]


# -- registry ---------------------------------------------------------------------------------


def test_registry_names_and_subjects() -> None:
    consumers = {c.spec.name: c for c in build_consumers(sender=SimulatedSender())}
    assert list(consumers) == ["notifications", "kpi", "recon-feed"]
    assert set(consumers["notifications"].spec.subjects) == {
        "kora.events.payment.status_changed.v1",
        "kora.events.identity.user_registered.v1",
    }
    assert set(consumers["kpi"].spec.subjects) == set(consumers["notifications"].spec.subjects)
    assert consumers["recon-feed"].spec.subjects == ("kora.events.payment.status_changed.v1",)
    assert consumers["recon-feed"].handles == frozenset({("payment.status_changed", 1)})


# -- notifications ----------------------------------------------------------------------------


async def test_p2p_settled_notifies_payer_and_payee_once_through_the_stream(env: Env) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    payment = _payment(PaymentType.P2P, amount=2_500, fee=25, payer=alice, payee=bob)
    initiated = env.emit(payment)
    _settle_internal(payment)
    settled = env.emit(payment)
    runner = env.runner(NotificationsConsumer(clock=env.clock, sender=env.sender))

    await env.publish(initiated, settled)
    assert await env.drain(runner) == ["applied", "applied"]

    rows = await _rows(env.engine, notifications)
    by_template = {r["template"]: r for r in rows}
    assert set(by_template) == {"p2p_sent", "p2p_received"}
    assert by_template["p2p_sent"]["user_id"] == alice
    assert by_template["p2p_received"]["user_id"] == bob
    assert json.loads(by_template["p2p_sent"]["params"]) == {
        "amount": 2_500,
        "fee": 25,
        "currency": "XOF",
        "payment_id": str(payment.id),
    }
    assert json.loads(by_template["p2p_received"]["params"])["amount"] == 2_475
    assert {(r["status"], r["channel"], r["attempts"], r["event_id"]) for r in rows} == {
        ("pending", "sms", 0, settled.id)
    }

    # A redelivery (replay of the whole stream) and a direct re-apply change nothing.
    replayed = [await runner.process(d) async for d in env.bus.replay(runner.handler.spec, from_seq=1)]
    assert [o.word for o in replayed] == ["duplicate", "duplicate"]
    assert await runner.apply(settled) is False
    assert len(await _rows(env.engine, notifications)) == 2


async def test_notification_rules_per_payment_type(env: Env) -> None:
    customer, merchant = uuid.uuid4(), uuid.uuid4()
    runner = env.runner(NotificationsConsumer(clock=env.clock, sender=env.sender))

    cash_in = _payment(PaymentType.CASH_IN, provider="sandbox", payee=customer)
    cash_in.transition(PaymentStatus.AUTHORIZED, at=T0, reason="asked", actor=ACTOR)
    cash_in.capture(at=T0, reason="provider confirmed", actor=ACTOR, settlement_due=T0 + timedelta(days=1))
    cash_out = _payment(PaymentType.CASH_OUT, provider="sandbox", payer=customer, fee=100)
    cash_out.transition(PaymentStatus.AUTHORIZED, at=T0, reason="held", actor=ACTOR)
    cash_out.capture(at=T0, reason="provider confirmed", actor=ACTOR, settlement_due=T0 + timedelta(days=1))
    shop = _payment(PaymentType.MERCHANT, payer=customer, payee=merchant, fee=150)
    _settle_internal(shop)
    refund = _payment(PaymentType.REFUND, amount=3_000, payer=merchant, payee=customer)
    _settle_internal(refund)
    failed = _payment(PaymentType.CASH_OUT, provider="sandbox", payer=customer)
    failed.transition(PaymentStatus.AUTHORIZED, at=T0, reason="held", actor=ACTOR)
    failed.fail(at=T0, code="provider_declined", actor=ACTOR)
    refund_failed = _payment(PaymentType.REFUND, payer=merchant, payee=customer)
    refund_failed.fail(at=T0, code="merchant_funds", actor=ACTOR)  # merchant-initiated: no message
    card = _payment(PaymentType.CARD, provider="acq", payee=merchant)
    _settle_internal(card)

    for payment in (cash_in, cash_out, shop, refund, failed, refund_failed, card):
        assert await runner.apply(env.emit(payment))
    assert await runner.apply(env.registered(customer, "customer"))
    assert await runner.apply(env.registered(uuid.uuid4(), "support"))

    rows = await _rows(env.engine, notifications)
    got = sorted((r["template"], r["user_id"], r["channel"]) for r in rows)
    assert got == sorted(
        [
            ("cash_in_received", customer, "sms"),
            ("cash_out_sent", customer, "sms"),
            ("merchant_paid", customer, "sms"),
            ("refund_received", customer, "sms"),
            ("payment_failed", customer, "sms"),
            ("welcome", customer, "push"),
        ]
    )
    failed_params = json.loads(next(r["params"] for r in rows if r["template"] == "payment_failed"))
    assert failed_params == {
        "amount": 10_000,
        "currency": "XOF",
        "payment_id": str(failed.id),
        "reason": "provider_declined",
    }


async def test_the_unique_key_stops_a_double_queue_even_without_processed_events(env: Env) -> None:
    """Even a buggy double delivery (the handler called twice for one event) queues once."""
    alice, bob = uuid.uuid4(), uuid.uuid4()
    payment = _payment(PaymentType.P2P, payer=alice, payee=bob)
    _settle_internal(payment)
    envelope = env.emit(payment)
    consumer = NotificationsConsumer(clock=env.clock, sender=env.sender)
    for _ in range(2):
        async with env.engine.begin() as conn:
            await consumer.handle(envelope, conn)
    assert len(await _rows(env.engine, notifications)) == 2


async def test_no_phone_number_is_stored_or_sent(env: Env) -> None:
    columns = {c.name for c in notifications.columns}
    assert not {c for c in columns if "phone" in c or "msisdn" in c or "name" in c}
    alice, bob = uuid.uuid4(), uuid.uuid4()
    payment = _payment(PaymentType.P2P, payer=alice, payee=bob)
    _settle_internal(payment)
    runner = env.runner(NotificationsConsumer(clock=env.clock, sender=env.sender))
    assert await runner.apply(env.emit(payment))
    assert await runner.apply(env.registered(alice, "customer"))
    dispatcher = _dispatcher(env)
    assert (await dispatcher.deliver_due(10))["sent"] == 3
    for row in await _rows(env.engine, notifications):
        assert not re.search(r"\+\d{6,}", json.dumps(row, default=str))
        assert set(json.loads(row["params"])) <= {"amount", "fee", "currency", "payment_id", "reason"}
    for message in env.sender.sent:
        assert set(message.params) <= {"amount", "fee", "currency", "payment_id", "reason"}


def _dispatcher(env: Env, **options: Any) -> NotificationDispatcher:
    return NotificationsConsumer(clock=env.clock, sender=env.sender).dispatcher(env.engine, **options)


async def test_dispatcher_sends_retries_with_backoff_then_gives_up(env: Env) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    payment = _payment(PaymentType.P2P, payer=alice, payee=bob)
    _settle_internal(payment)
    runner = env.runner(NotificationsConsumer(clock=env.clock, sender=env.sender))
    assert await runner.apply(env.emit(payment))
    dispatcher = _dispatcher(env, max_attempts=3, backoff_seconds=10.0)
    env.sender.fail_next(2)  # the gateway is down for a moment
    env.sender.fail_for(bob)  # and bob's number cannot be reached at all

    # First round: both fail, due again after 10 s.
    assert await dispatcher.deliver_due(10) == {"sent": 0, "retried": 2, "failed": 0}
    assert await dispatcher.deliver_due(10) == {"sent": 0, "retried": 0, "failed": 0}  # not due yet
    env.clock.advance(timedelta(seconds=10))
    assert await dispatcher.deliver_due(10) == {"sent": 1, "retried": 1, "failed": 0}
    env.clock.advance(timedelta(seconds=10))
    assert await dispatcher.deliver_due(10) == {"sent": 0, "retried": 0, "failed": 0}  # backoff doubled: 20 s
    env.clock.advance(timedelta(seconds=10))
    assert await dispatcher.deliver_due(10) == {"sent": 0, "retried": 0, "failed": 1}  # third attempt: give up
    env.clock.advance(timedelta(days=1))
    assert await dispatcher.deliver_due(10) == {"sent": 0, "retried": 0, "failed": 0}

    rows = {r["user_id"]: r for r in await _rows(env.engine, notifications)}
    assert (rows[alice]["status"], rows[alice]["attempts"]) == ("sent", 2)
    assert rows[alice]["sent_at"] == T0 + timedelta(minutes=5, seconds=10)
    assert (rows[bob]["status"], rows[bob]["attempts"]) == ("failed", 3)
    assert rows[bob]["last_error"] == "simulated_unreachable"
    assert [(m.user_id, m.template) for m in env.sender.sent] == [(alice, "p2p_sent")]


class SlowGateway(SimulatedSender):
    """Each send takes `seconds` of the test clock."""

    def __init__(self, clock: FixedClock, seconds: float) -> None:
        super().__init__()
        self._clock = clock
        self._seconds = seconds

    async def send(self, user_id: uuid.UUID, channel: str, template: str, params: Mapping[str, Any]) -> None:
        self._clock.advance(timedelta(seconds=self._seconds))
        await super().send(user_id, channel, template, params)


async def test_a_slow_gateway_never_makes_two_dispatchers_send_twice(env: Env) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    payment = _payment(PaymentType.P2P, payer=alice, payee=bob)
    _settle_internal(payment)
    runner = env.runner(NotificationsConsumer(clock=env.clock, sender=env.sender))
    assert await runner.apply(env.emit(payment))
    gateway = SlowGateway(env.clock, seconds=200)
    first = NotificationDispatcher(env.engine, gateway, env.clock, lease_seconds=300)
    second = NotificationDispatcher(env.engine, gateway, env.clock, lease_seconds=300)

    # The first send eats more than half the lease: the first dispatcher stops there.
    assert await first.deliver_due(10) == {"sent": 1, "retried": 0, "failed": 0}
    assert await second.deliver_due(10) == {"sent": 0, "retried": 0, "failed": 0}  # still leased
    env.clock.advance(timedelta(seconds=300))
    assert await second.deliver_due(10) == {"sent": 1, "retried": 0, "failed": 0}
    assert sorted(m.user_id for m in gateway.sent) == sorted([alice, bob])  # each once


# -- KPI --------------------------------------------------------------------------------------


async def test_kpi_counts_each_status_once_and_redelivery_changes_nothing(env: Env) -> None:
    runner = env.runner(KpiConsumer())
    p2p = _payment(PaymentType.P2P, amount=2_000, fee=20, payer=uuid.uuid4(), payee=uuid.uuid4())
    _settle_internal(p2p)  # one event: CAPTURED and SETTLED
    p2p_2 = _payment(PaymentType.P2P, amount=3_000, fee=30, payer=uuid.uuid4(), payee=uuid.uuid4())
    _settle_internal(p2p_2)
    cash_in = _payment(PaymentType.CASH_IN, amount=5_000, provider="wave", payee=uuid.uuid4())
    cash_in.transition(PaymentStatus.AUTHORIZED, at=T0, reason="asked", actor=ACTOR)
    cash_in.capture(at=T0, reason="confirmed", actor=ACTOR, settlement_due=T0 + timedelta(days=1))
    failed = _payment(PaymentType.CASH_IN, amount=700, provider="wave", payee=uuid.uuid4())
    failed.fail(at=T0, code="declined", actor=ACTOR)
    envelopes = [env.emit(p) for p in (p2p, p2p_2, cash_in, failed)]
    # The next day (UTC): the cash-in settles, then is reversed.
    next_day = T0 + timedelta(days=1)
    cash_in.transition(PaymentStatus.SETTLED, at=next_day, reason="settled", actor=ACTOR)
    envelopes.append(env.emit(cash_in))
    cash_in.transition(PaymentStatus.REVERSED, at=next_day, reason="provider reversed", actor=ACTOR)
    envelopes.append(env.emit(cash_in))
    envelopes += [env.registered(uuid.uuid4(), "customer"), env.registered(uuid.uuid4(), "customer")]
    envelopes += [env.registered(uuid.uuid4(), "admin"), env.registered(uuid.uuid4(), "customer", at=next_day)]

    await env.publish(*envelopes)
    assert set(await env.drain(runner)) == {"applied"}

    day1, day2 = T0.date(), next_day.date()
    expected = [
        (day1, "cash_in", "wave", "XOF", "CAPTURED", 1, 5_000, 0),
        (day1, "cash_in", "wave", "XOF", "FAILED", 1, 700, 0),
        (day1, "p2p", "internal", "XOF", "CAPTURED", 2, 5_000, 50),
        (day1, "p2p", "internal", "XOF", "SETTLED", 2, 5_000, 0),
        (day2, "cash_in", "wave", "XOF", "REVERSED", 1, 5_000, 0),
        (day2, "cash_in", "wave", "XOF", "SETTLED", 1, 5_000, 0),
    ]

    async def snapshot() -> list[tuple[Any, ...]]:
        rows = await daily_kpis(env.engine, day1, day2 + timedelta(days=1))
        return [(r.day, r.payment_type, r.provider, r.currency, r.status, r.count, r.amount, r.fees) for r in rows]

    assert await snapshot() == expected
    customers = await daily_new_customers(env.engine, day1, day2 + timedelta(days=1))
    assert [(c.day, c.new_customers) for c in customers] == [(day1, 2), (day2, 1)]

    # Redelivered, replayed, re-applied: the counters stay.
    replayed = [await runner.process(d) async for d in env.bus.replay(runner.handler.spec, from_seq=1)]
    assert {o.word for o in replayed} == {"duplicate"}
    for envelope in envelopes:
        assert await runner.apply(envelope) is False
    assert await snapshot() == expected

    # The range is half open, and the read works on a connection too.
    async with env.engine.connect() as conn:
        only_day2 = await daily_kpis(conn, day2, day2 + timedelta(days=1))
    assert {r.status for r in only_day2} == {"SETTLED", "REVERSED"}
    assert await daily_kpis(env.engine, date(2020, 1, 1), day1) == []


# -- reconciliation feed ----------------------------------------------------------------------


async def test_recon_feed_keeps_the_latest_state_when_events_arrive_out_of_order(env: Env) -> None:
    runner = env.runner(ReconFeedConsumer(clock=env.clock))
    customer = uuid.uuid4()
    payment = _payment(PaymentType.CASH_IN, amount=8_000, fee=80, provider="momo", payee=customer)
    initiated = env.emit(payment)  # sequence 1
    payment.transition(PaymentStatus.AUTHORIZED, at=T0, reason="asked", actor=ACTOR)
    payment.provider_ref = "MOMO-123"
    authorized = env.emit(payment)  # sequence 2
    captured_at = T0 + timedelta(minutes=1)
    payment.capture(at=captured_at, reason="confirmed", actor=ACTOR, settlement_due=T0 + timedelta(days=1))
    captured = env.emit(payment)  # sequence 3
    settled_at = T0 + timedelta(days=1, hours=2)
    payment.transition(PaymentStatus.SETTLED, at=settled_at, reason="settled", actor=ACTOR)
    settled = env.emit(payment)  # sequence 4
    payment.transition(PaymentStatus.REVERSED, at=settled_at + timedelta(hours=1), reason="reversed", actor=ACTOR)
    reversed_ = env.emit(payment)  # sequence 5

    # Delivered out of order: the reversal first, then the older ones after a redelivery.
    for envelope in (initiated, authorized, reversed_, captured, settled):
        assert await runner.apply(envelope)
    assert await runner.apply(settled) is False

    (row,) = await _rows(env.engine, recon_feed_payments)
    assert row["payment_id"] == payment.id
    assert (row["status"], row["last_sequence"], row["last_event_id"]) == ("REVERSED", 5, reversed_.id)
    assert (row["provider"], row["provider_ref"], row["payment_type"]) == ("momo", "MOMO-123", "cash_in")
    assert (row["amount"], row["fee"], row["captured_amount"], row["currency"]) == (8_000, 80, 8_000, "XOF")
    assert row["captured_at"] == captured_at
    assert row["settled_at"] == settled_at  # learnt from an older event that arrived late
    assert row["settlement_due"] == T0 + timedelta(days=1)

    journal = sorted((r["sequence"], r["status"]) for r in await _rows(env.engine, recon_feed_events))
    assert journal == [(1, "INITIATED"), (2, "AUTHORIZED"), (3, "CAPTURED"), (4, "SETTLED"), (5, "REVERSED")]


async def test_recon_feed_leaves_internal_payments_out(env: Env) -> None:
    runner = env.runner(ReconFeedConsumer(clock=env.clock))
    payment = _payment(PaymentType.P2P, payer=uuid.uuid4(), payee=uuid.uuid4())
    _settle_internal(payment)
    await env.publish(env.emit(payment))
    assert await env.drain(runner) == ["applied"]
    assert await _rows(env.engine, recon_feed_payments) == []
    assert await _rows(env.engine, recon_feed_events) == []


# -- schema -----------------------------------------------------------------------------------

_OURS = {"notifications", "kpi_daily_payments", "kpi_daily_customers", "recon_feed_payments", "recon_feed_events"}


def _diff_name(item: Any) -> str:
    """The table a compare_metadata diff item is about."""
    if isinstance(item, list):
        item = item[0]
    for part in item[1:]:
        table = getattr(part, "table", None)
        if isinstance(table, sa.Table):
            return str(table.name)
        if isinstance(part, sa.Table):
            return str(part.name)
        if isinstance(part, str) and part in _OURS:
            return part
    return ""


def test_consumer_tables_match_the_migration(migrated_url: str) -> None:
    async def inspect() -> list[Any]:
        engine = create_engine(migrated_url, pool_size=1)
        try:
            async with engine.connect() as conn:

                def work(sync_conn: sa.Connection) -> list[Any]:
                    assert set(sa.inspect(sync_conn).get_table_names()) >= _OURS
                    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                    return list(compare_metadata(context, metadata))

                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    diff = [item for item in asyncio.run(inspect()) if _diff_name(item) in _OURS]
    assert diff == [], f"consumer tables and migration 0007 disagree: {diff}"


def test_downgrade_refuses_while_notifications_are_pending(migrated_url: str) -> None:
    async def queue_one() -> None:
        engine = create_engine(migrated_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    notifications.insert().values(
                        id=uuid.uuid4(),
                        event_id=uuid.uuid4(),
                        user_id=uuid.uuid4(),
                        channel="sms",
                        template="welcome",
                        params="{}",
                        status="pending",
                        attempts=0,
                        next_attempt_at=T0,
                        created_at=T0,
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(queue_one())
    with pytest.raises(Exception, match="notifications are still pending"):
        downgrade(migrated_url, "0006")
    migrate_up(migrated_url)  # still at head: nothing was dropped


# -- end to end: real traffic through the app's outbox ----------------------------------------


async def test_real_traffic_feeds_the_consumers_without_pii(api: Any) -> None:
    """Customers register, cash in and transfer through the HTTP API; the events the app wrote
    to its outbox are published to the embedded stream and run through the three consumers."""
    from kora.events.adapters.tables import event_outbox
    from kora.kernel import SystemClock

    alice = await api.customer(fund=10_000)
    bob = await api.customer()
    response = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=2_500, currency="XOF")
    assert response.status_code == 201, response.text

    kora = api.kora
    clock = SystemClock()
    bus = SqlStreamBus(kora.engine, clock)
    async with kora.engine.connect() as conn:
        outbox = (await conn.execute(sa.select(event_outbox.c.envelope).order_by(event_outbox.c.seq))).scalars().all()
    envelopes = [envelope_from_json(raw) for raw in outbox]
    await bus.publish([OutgoingMessage(e.subject, str(e.id), e.to_json(), {}) for e in envelopes])
    sender = SimulatedSender()
    for handler in build_consumers(sender=sender, clock=clock):
        runner = ConsumerRunner(
            handler,
            source=bus,
            engine=kora.engine,
            verifier=kora.event_verifier,
            clock=clock,
            dead_letters=SqlDeadLetters(kora.engine),
        )
        while deliveries := await bus.fetch(handler.spec, batch=50, wait_seconds=0.0):
            for delivery in deliveries:
                outcome = await runner.process(delivery)
                assert outcome.word in {"applied", "skipped"}, outcome
        if isinstance(handler, NotificationsConsumer):
            assert (await handler.dispatcher(kora.engine).deliver_due(50))["failed"] == 0

    rows = await _rows(kora.engine, notifications)
    got = {(r["template"], str(r["user_id"])) for r in rows}
    assert {("welcome", alice.user_id), ("welcome", bob.user_id)} <= got
    assert {("p2p_sent", alice.user_id), ("p2p_received", bob.user_id), ("cash_in_received", alice.user_id)} <= got
    assert {r["status"] for r in rows} == {"sent"}
    today = clock.now().date()
    kpis = await daily_kpis(kora.engine, today - timedelta(days=1), today + timedelta(days=1))
    assert any(k.payment_type == "p2p" and k.status == "SETTLED" and k.amount == 2_500 for k in kpis)
    customers = await daily_new_customers(kora.engine, today - timedelta(days=1), today + timedelta(days=1))
    assert sum(c.new_customers for c in customers) >= 2

    recon = await _rows(kora.engine, recon_feed_payments)
    assert [(r["payment_type"], r["provider"], r["status"]) for r in recon] == [("cash_in", "sandbox", "CAPTURED")]
    stored = json.dumps(
        [await _rows(kora.engine, t) for t in (notifications, recon_feed_payments, recon_feed_events)], default=str
    )
    stored += json.dumps([m.params for m in sender.sent])
    for phone in (alice.phone_number, bob.phone_number):
        assert phone not in stored
        assert phone.lstrip("+") not in stored
