"""The core's `settlement` consumer on a migrated database (SQLite and PostgreSQL), through a real
`ConsumerRunner` on the embedded stream, with cash-ins captured by the payments service (sandbox):
a confirmed settlement settles each payment once with its settlement posting, in the transaction
that records the event; a redelivery or a second confirmation changes nothing; events forged or
signed for another producer are dead-lettered and change nothing; a confirmed mismatch flags the
payment once, and support sees the flag."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.bootstrap import Kora
from kora.events import PRODUCER, DomainEvent, Envelope, Origin
from kora.events.adapters.outbox import envelope_for
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.adapters.tables import dead_letters, event_outbox, processed_events
from kora.events.domain import RECONCILIATION_PRODUCER
from kora.events.ports import OutgoingMessage
from kora.events.runtime import ConsumerRunner
from kora.events.signing import EventSigner, public_key_pem
from kora.kernel import FixedClock
from kora.ledger import AccountKind
from kora.payments import ProviderMoveCommand
from kora.payments.adapters.tables import payment_flags
from kora.providers.adapters.sandbox import SandboxGateway
from tests.support.api import new_phone
from tests.support.api import test_settings as settings_for

RECON_KID = "recon-test-1"


@dataclass
class Core:
    kora: Kora
    recon: EventSigner
    runner: ConsumerRunner
    bus: SqlStreamBus

    def confirmed(
        self,
        payment_ids: list[str],
        *,
        signer: EventSigner | None = None,
        producer: str = RECONCILIATION_PRODUCER,
        reference: str = "recon:sandbox:report-1",
        currency: str = "XOF",
    ) -> Envelope:
        payload = {
            "report_id": str(uuid.uuid4()),
            "provider": "sandbox",
            "currency": currency,
            "report_day": "2026-01-01",
            "reference": reference,
            "chunk": 1,
            "chunks": 1,
            "payments": [{"payment_id": i, "amount": 10_000, "fee": 0, "net": 10_000} for i in payment_ids],
        }
        return self._envelope("reconciliation.settlement_confirmed", "recon_report", payload, signer, producer)

    def mismatch(self, payment_id: str, case_id: uuid.UUID, *, signer: EventSigner | None = None) -> Envelope:
        payload = {
            "case_id": str(case_id),
            "payment_id": payment_id,
            "outcome": "MISMATCH",
            "reason": "amount",
            "amount": 9_500,
            "currency": "XOF",
        }
        return self._envelope("reconciliation.mismatch_confirmed", "payment", payload, signer, RECONCILIATION_PRODUCER)

    def _envelope(
        self, event_type: str, aggregate: str, payload: dict[str, Any], signer: EventSigner | None, producer: str
    ) -> Envelope:
        event = DomainEvent(
            event_type,
            1,
            aggregate,
            str(payload.get("report_id") or payload["payment_id"]),
            payload,
            self.kora.clock.now(),
        )
        return envelope_for(event, Origin(correlation_id="corr-recon"), signer or self.recon, producer=producer)

    async def deliver(self, envelope: Envelope, runner: ConsumerRunner | None = None) -> str:
        """Through the embedded stream, as the relay would publish it: the outcome word."""
        runner = runner or self.runner
        message = OutgoingMessage(
            envelope.subject, str(envelope.id), envelope.to_json(), {"Nats-Msg-Id": str(envelope.id)}
        )
        assert await self.bus.publish([message]) == [None]
        [delivery] = await self.bus.fetch(runner.handler.spec, batch=10, wait_seconds=0.0)
        return (await runner.process(delivery)).word

    async def cash_in(self, amount: int = 10_000) -> str:
        registered = await self.kora.identity.register(phone_number=new_phone(), password="settle-pass-phrase-1")
        result = await self.kora.payments.cash_in(
            ProviderMoveCommand(registered.user_id, amount, "XOF", uuid.uuid4().hex, provider="sandbox")
        )
        assert result.body["status"] == "CAPTURED"
        return str(result.body["id"])

    async def status(self, payment_id: str) -> str:
        async with self.kora.unit_of_work() as uow:
            payment = await uow.payments.get(uuid.UUID(payment_id))
        assert payment is not None
        return payment.status.value

    async def settlement_postings(self) -> int:
        async with self.kora.engine.connect() as conn:
            found = await conn.execute(
                sa.text("SELECT count(*) FROM ledger_transactions WHERE kind LIKE '%.settlement'")
            )
            return int(found.scalar_one())

    async def bank(self) -> int:
        async with self.kora.unit_of_work() as uow:
            account = await uow.ledger.system_account(AccountKind.SETTLEMENT_BANK, "XOF", "sandbox")
            return (await uow.ledger.balance(account.id)).posted

    async def count(self, table: sa.Table, *where: Any) -> int:
        async with self.kora.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one())


def recon_verify_keys(key: Ed25519PrivateKey, kid: str = RECON_KID) -> str:
    """The KORA_EVENT_VERIFY_KEYS entry `kora recon event-keys` prints."""
    return json.dumps(
        [{"kid": kid, "public_key_pem": public_key_pem(key.public_key()), "producer": RECONCILIATION_PRODUCER}]
    )


@pytest.fixture
async def core(migrated_url: str, tmp_path: Path) -> AsyncIterator[Core]:
    key = Ed25519PrivateKey.generate()
    settings = settings_for(migrated_url, tmp_path, KORA_EVENT_VERIFY_KEYS=recon_verify_keys(key))
    kora = Kora(settings, clock=FixedClock(), providers=[SandboxGateway()])
    try:
        bus = await kora.events.bus()
        assert isinstance(bus, SqlStreamBus)
        yield Core(kora, EventSigner(RECON_KID, key), await kora.events.runner("settlement"), bus)
    finally:
        await kora.aclose()


async def test_a_confirmed_settlement_settles_each_payment_once_with_its_posting(core: Core) -> None:
    first, second = await core.cash_in(10_000), await core.cash_in(4_000)
    event = core.confirmed([first, second])

    assert await core.deliver(event) == "applied"
    assert [await core.status(first), await core.status(second)] == ["SETTLED", "SETTLED"]
    assert await core.settlement_postings() == 2
    assert await core.bank() == 14_000
    viewed = await core.kora.payments.get_payment(uuid.UUID(first), viewer=uuid.uuid4(), privileged=True)
    assert viewed["status_history"][-1]["reason"] == "settled by provider report recon:sandbox:report-1"
    async with core.kora.engine.connect() as conn:
        audited = await conn.execute(
            sa.text("SELECT action FROM audit_log WHERE actor = 'reconciliation' ORDER BY action")
        )
        assert list(audited.scalars()) == ["payment.cash_in.settled", "payment.cash_in.settled", "settlement.run"]
    # The SETTLED status changes went to the outbox in the same transaction (the recon feed learns them).
    settled_events = await core.count(event_outbox, event_outbox.c.type == "payment.status_changed")
    assert settled_events >= 4  # CAPTURED and SETTLED of each

    # The same event again (a redelivery, a replay): processed_events says it is done.
    assert await core.runner.apply(event) is False
    # Another confirmation of the same payments (a re-run match): each settles at most once.
    assert await core.deliver(core.confirmed([first, second])) == "applied"
    assert await core.settlement_postings() == 2
    assert await core.bank() == 14_000
    assert await core.count(processed_events, processed_events.c.consumer == "settlement") == 2
    assert core.kora.registry.get_sample_value("kora_recon_settlement_payments_total", {"outcome": "settled"}) == 2
    assert (
        core.kora.registry.get_sample_value("kora_recon_settlement_payments_total", {"outcome": "already_settled"}) == 2
    )
    assert (await core.kora.verify_ledger()).ok
    assert (await core.kora.verify_audit()).ok


async def test_a_settlement_the_core_refuses_is_reported_and_nothing_moves(core: Core) -> None:
    captured = await core.cash_in(5_000)
    assert await core.deliver(core.confirmed([captured], currency="EUR")) == "applied"  # applied: rejected
    assert await core.status(captured) == "CAPTURED"
    assert await core.settlement_postings() == 0
    assert core.kora.registry.get_sample_value("kora_recon_settlement_payments_total", {"outcome": "rejected"}) == 1


async def test_events_forged_or_signed_for_another_producer_are_dead_lettered(core: Core) -> None:
    captured = await core.cash_in(10_000)
    core_signer = core.kora.event_signer
    # A reconciliation outcome signed with the core's own key, naming either producer.
    by_core_key = core.confirmed([captured], signer=core_signer)
    by_core_as_core = core.confirmed([captured], signer=core_signer, producer=PRODUCER)
    # The reconciliation key naming the core as producer.
    recon_as_core = core.confirmed([captured], producer=PRODUCER)
    # A genuine event, altered after signing.
    genuine = core.confirmed([captured])
    tampered = replace(genuine, payload={**genuine.payload, "reference": "recon:sandbox:other"})
    for envelope in (by_core_key, by_core_as_core, recon_as_core, tampered):
        assert await core.deliver(envelope) == "dead_lettered"

    # A core event signed by the reconciliation key, at a core consumer.
    kpi = await core.kora.events.runner("kpi")
    payment_event = DomainEvent(
        "identity.user_registered",
        1,
        "user",
        str(uuid.uuid4()),
        {"user_id": str(uuid.uuid4()), "roles": ["customer"]},
        core.kora.clock.now(),
    )
    assert await core.deliver(envelope_for(payment_event, Origin(), core.recon), kpi) == "dead_lettered"

    assert await core.status(captured) == "CAPTURED"
    assert await core.settlement_postings() == 0
    async with core.kora.engine.connect() as conn:
        reasons = (await conn.execute(sa.select(dead_letters.c.consumer, dead_letters.c.reason))).all()
    assert sorted(map(tuple, reasons)) == sorted(
        [("settlement", "wrong_producer")] * 3 + [("settlement", "forged"), ("kpi", "wrong_producer")]
    )
    assert await core.count(processed_events) == 0


async def test_a_confirmed_mismatch_flags_the_payment_once_and_support_sees_it(core: Core) -> None:
    captured = await core.cash_in(10_000)
    case = uuid.uuid4()
    event = core.mismatch(captured, case)

    assert await core.deliver(event) == "applied"
    assert await core.runner.apply(event) is False  # redelivered
    assert await core.deliver(core.mismatch(captured, case)) == "applied"  # recorded twice by recon
    assert await core.count(payment_flags) == 1
    assert await core.status(captured) == "CAPTURED"  # a flag moves no money

    support = await core.kora.payments.get_payment(uuid.UUID(captured), viewer=uuid.uuid4(), privileged=True)
    [flag] = support["flags"]
    assert {k: flag[k] for k in ("source", "case_id", "outcome", "reason", "amount", "currency")} == {
        "source": "reconciliation",
        "case_id": str(case),
        "outcome": "MISMATCH",
        "reason": "amount",
        "amount": 9_500,
        "currency": "XOF",
    }
    async with core.kora.unit_of_work() as uow:
        payment = await uow.payments.get(uuid.UUID(captured))
    assert payment is not None
    payer = payment.payee_user_id or payment.initiated_by
    customer = await core.kora.payments.get_payment(uuid.UUID(captured), viewer=payer, privileged=False)
    assert "flags" not in customer
    assert (
        core.kora.registry.get_sample_value(
            "kora_payment_flags_total", {"source": "reconciliation", "outcome": "MISMATCH"}
        )
        == 1
    )


async def test_a_batch_that_fails_leaves_nothing_behind_and_its_good_events_apply_alone(core: Core) -> None:
    first, second = await core.cash_in(3_000), await core.cash_in(4_000)
    unknown = core.confirmed([first])
    unknown = replace(unknown, payload={**unknown.payload, "provider": "nope"})
    unknown = core.recon.sign(replace(unknown, signature=None))
    batch = [
        core.confirmed([first]),
        core.confirmed([second]),
        unknown,
    ]  # the first two create, then use, the bank account
    for envelope in batch:
        message = OutgoingMessage(
            envelope.subject, str(envelope.id), envelope.to_json(), {"Nats-Msg-Id": str(envelope.id)}
        )
        assert await core.bus.publish([message]) == [None]
    deliveries = await core.bus.fetch(core.runner.handler.spec, batch=10, wait_seconds=0.0)

    # One transaction for the three fails on the unknown provider and rolls back entirely; each is
    # then applied alone: the account created in the rolled-back savepoint is not trusted again.
    assert [o.word for o in await core.runner.process_batch(deliveries)] == ["applied", "applied", "retried"]
    assert [await core.status(first), await core.status(second)] == ["SETTLED", "SETTLED"]
    assert await core.settlement_postings() == 2
    assert await core.bank() == 7_000
    assert (await core.kora.verify_ledger()).ok
