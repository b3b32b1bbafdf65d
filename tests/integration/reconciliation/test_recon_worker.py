"""`kora recon worker`'s parts on the reconciliation database (SQLite and PostgreSQL) with the
core's embedded stream: its `recon` consumer verifies the core's key, its match schedule
matches a report never matched and re-matches open ones as time passes (PENDING becomes
MISSING_PROVIDER once due), its relay publishes the service's outcomes to the stream; its
settings generate and keep development keys and refuse what production must not run with;
`kora recon event-keys` prints what the core's verifier needs."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events import DomainEvent, Origin, envelope_from_json
from kora.events.adapters.outbox import envelope_for
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.adapters.tables import event_stream
from kora.events.domain import PRODUCER, RECONCILIATION_PRODUCER
from kora.events.ports import OutgoingMessage
from kora.events.signing import EventSigner, EventVerifier, load_verify_keys, public_key_pem, verify_key_producers
from kora.kernel import FixedClock
from kora.payments.adapters.events import status_changed_events
from kora.payments.domain.model import Payment, PaymentStatus
from kora.platform.settings import ConfigurationError
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import recon_payments
from kora.reconciliation.cli import register
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.review_settings import ReviewSettings
from kora.reconciliation.service.settings import ReconSettings
from kora.reconciliation.worker import ReconWorker
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.integration.reconciliation.test_recon_feed import provider_payment
from tests.support.service_auth import new_service_key, service_key_json
from tests.unit.reconciliation.factories import AS_OF, DAY, START, Simulation

KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def signing_keys(kid: str) -> tuple[str, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps([{"kid": kid, "private_key_pem": pem}]), key


@dataclass
class Emitter:
    """Stands in for the core: its signer, and `emit` shaped like the payments producer."""

    signer: EventSigner
    bus: SqlStreamBus

    async def publish(self, payment: Payment) -> None:
        envelopes = []
        for event in status_changed_events(payment, list(payment.new_changes)):
            envelopes.append(envelope_for(event, Origin(), self.signer))
        payment.new_changes.clear()
        messages = [OutgoingMessage(e.subject, str(e.id), e.to_json(), {"Nats-Msg-Id": str(e.id)}) for e in envelopes]
        assert await self.bus.publish(messages) == [None] * len(messages)


@pytest.fixture
async def running(
    recon_url: str, tmp_sqlite_url: str, sqlite_engine: AsyncEngine
) -> AsyncIterator[tuple[ReconWorker, EventSigner]]:
    _, core_key = signing_keys("core-1")
    recon_signing, _ = signing_keys("recon-1")
    settings = ReconSettings.from_env(
        {
            "KORA_ENV": "production" if recon_url.startswith("postgresql") else "development",
            "KORA_RECON_DATABASE_URL": recon_url,
            "KORA_RECON_REPORT_KEY": KEY,
            "KORA_RECON_EVENT_SIGNING_KEYS": recon_signing,
            "KORA_EVENT_VERIFY_KEYS": json.dumps(
                [{"kid": "core-1", "public_key_pem": public_key_pem(core_key.public_key())}]
            ),
            "KORA_DATABASE_URL": tmp_sqlite_url,  # the core's database: the embedded stream only
            "KORA_EVENTS_BUS": "inprocess",
            "KORA_DEV_SECRETS_FILE": "/nonexistent/dev.json",
            "KORA_RECON_SERVICE_KEY": service_key_json(new_service_key()),
        }
    )
    built = ReconWorker(
        settings,
        clock=FixedClock(START + timedelta(hours=2)),
        review=ReviewSettings(audit_key=secrets.token_bytes(32)),
    )
    try:
        yield built, EventSigner("core-1", core_key)
    finally:
        await built.aclose()


async def drain(worker: ReconWorker) -> list[str]:
    runner = await worker.runner()
    bus = await worker.bus()
    words = []
    while deliveries := await bus.fetch(runner.handler.spec, batch=50, wait_seconds=0.0):
        words += [(await runner.process(d)).word for d in deliveries]
    return words


async def test_the_schedule_matches_new_reports_and_rematches_open_ones_as_time_passes(
    running: tuple[ReconWorker, EventSigner],
) -> None:
    worker, core_signer = running
    assert isinstance(worker.clock, FixedClock)
    bus = await worker.bus()
    assert isinstance(bus, SqlStreamBus)
    core = Emitter(core_signer, bus)
    sim = Simulation()
    listed_op = sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED)
    sim.mobile("momo", "collection", 3_000, Scenario.SUCCEED)  # the provider has it, Kora does not
    listed = provider_payment(provider="momo", amount=10_000, payment_id=uuid.UUID(listed_op.external_id))
    unlisted = provider_payment(provider="momo", amount=7_000)
    for payment, ref in ((listed, listed_op.id), (unlisted, "M-UNLISTED")):
        lifecycle_payment(payment, ref)
        await core.publish(payment)
    # An event signed by a key the core does not own is refused; the real ones are applied.
    forged = provider_payment(provider="momo", amount=1_000)
    lifecycle_payment(forged, "M-FORGED")
    await Emitter(EventSigner("core-1", Ed25519PrivateKey.generate()), bus).publish(forged)
    words = await drain(worker)
    assert sorted(words) == ["applied", "applied", "dead_lettered"]
    async with worker.engine.connect() as conn:
        known = set((await conn.execute(sa.select(recon_payments.c.payment_id))).scalars())
    assert known == {str(listed.id), str(unlisted.id)}
    # A replay of the whole stream applies nothing twice (the forged one is parked again).
    assert await worker.replay(from_seq=1, actor="ops-1") == {"duplicate": 2, "dead_lettered": 1}

    imports = ReportImports(SqlReportStore(worker.engine), AesGcmReportCipher.from_setting(KEY), FixedClock(START))
    data = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode()
    report_id = (
        await imports.import_report("momo", data, filename="momo.csv", actor="ops-1", report_day=DAY)
    ).report_id
    assert await worker.reports_due() == [report_id]  # never matched

    early = await worker.match_due()
    assert (early["MATCHED"], early["PENDING"], early["MISSING_INTERNAL"]) == (1, 1, 1)
    assert await worker.reports_due() == [report_id]  # open results: re-matched on the next round

    worker.clock.advance(AS_OF - worker.clock.now())
    late = await worker.match_due()
    assert (late["PENDING"], late["MISSING_PROVIDER"]) == (0, 1)
    worker.clock.advance(timedelta(days=8))  # past rematch_days: left to people
    assert await worker.reports_due() == []
    assert worker.registry.get_sample_value("kora_recon_match_runs_total", {"provider": "momo"}) == 2

    # Each run confirmed the matched payment (still CAPTURED here: the core's SETTLED never came);
    # the relay publishes the outcomes to the stream, where the core's `settlement` reads them.
    relay = await worker.relay()
    assert await relay.publish_once() == 2
    async with (await _core_engine(worker)).connect() as conn:
        rows = (await conn.execute(sa.select(event_stream.c.subject, event_stream.c.data))).all()
    outcomes = [envelope_from_json(r.data) for r in rows if r.subject.startswith("kora.events.reconciliation.")]
    assert [o.type for o in outcomes] == ["reconciliation.settlement_confirmed"] * 2
    assert {o.producer for o in outcomes} == {RECONCILIATION_PRODUCER}
    assert [p["payment_id"] for o in outcomes for p in o.payload["payments"]] == [str(listed.id)] * 2


def lifecycle_payment(payment: Payment, provider_ref: str) -> None:
    payment.transition(PaymentStatus.AUTHORIZED, at=START, reason="asked", actor="test")
    payment.provider_ref = provider_ref
    captured_at = START + timedelta(minutes=5)
    payment.capture(at=captured_at, reason="confirmed", actor="test", settlement_due=captured_at + timedelta(days=1))


async def _core_engine(worker: ReconWorker) -> AsyncEngine:
    engine = worker._stream_engine
    assert engine is not None
    return engine


def test_development_generates_the_keys_once_and_derives_the_cores(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    core_signing, core_key = signing_keys("dev-events-1")
    path.write_text(json.dumps({"KORA_EVENT_SIGNING_KEYS": core_signing}))
    first = ReconSettings.from_env({"KORA_DEV_SECRETS_FILE": str(path)})
    second = ReconSettings.from_env({"KORA_DEV_SECRETS_FILE": str(path)})
    assert first.event_signing_keys is None  # generated when a worker first needs them, not before
    assert first.require_event_keys() == second.require_event_keys()
    assert "KORA_RECON_EVENT_SIGNING_KEYS" in json.loads(path.read_text())
    assert json.loads(path.read_text())["KORA_EVENT_SIGNING_KEYS"] == core_signing  # the core's, untouched
    keys = load_verify_keys(first.event_verify_keys)
    assert list(keys) == ["dev-events-1"]
    assert public_key_pem(keys["dev-events-1"]) == public_key_pem(core_key.public_key())
    assert (first.events_bus, first.core_database_url) == ("inprocess", "sqlite+aiosqlite:///./kora.db")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"KORA_RECON_EVENT_SIGNING_KEYS": ""}, "KORA_RECON_EVENT_SIGNING_KEYS"),
        ({"KORA_EVENT_VERIFY_KEYS": ""}, "KORA_EVENT_VERIFY_KEYS"),
        ({"KORA_RECON_EVENT_SIGNING_KEYS": "[]"}, "KORA_RECON_EVENT_SIGNING_KEYS"),
        ({"KORA_RECON_SERVICE_KEY": ""}, "KORA_RECON_SERVICE_KEY"),  # it could not reach the core
    ],
)
def test_production_refuses_a_worker_without_its_keys(env: dict[str, str], problem: str) -> None:
    signing, _ = signing_keys("recon-1")
    _, core = signing_keys("core-1")
    base = {
        "KORA_ENV": "production",
        "KORA_RECON_DATABASE_URL": "postgresql+asyncpg://recon@db/recon",
        "KORA_RECON_REPORT_KEY": KEY,
        "KORA_RECON_EVENT_SIGNING_KEYS": signing,
        "KORA_EVENT_VERIFY_KEYS": json.dumps([{"kid": "core-1", "public_key_pem": public_key_pem(core.public_key())}]),
        "KORA_EVENTS_BUS": "nats",
        "KORA_RECON_SERVICE_KEY": service_key_json(new_service_key()),
    }
    with pytest.raises(ConfigurationError, match=problem):
        ReconWorker(ReconSettings.from_env({**base, **env}), review=ReviewSettings(audit_key=b"k" * 32))
    with pytest.raises(ConfigurationError, match="KORA_EVENTS_BUS"):
        ReconSettings.from_env({**base, "KORA_EVENTS_BUS": "kafka"})


def test_event_keys_prints_what_the_core_verifies_the_service_with(tmp_path: Path) -> None:
    main = click.Group("kora")
    register(main)
    signing, key = signing_keys("recon-7")
    printed = CliRunner().invoke(
        main,
        ["recon", "event-keys"],
        env={"KORA_RECON_EVENT_SIGNING_KEYS": signing, "KORA_DEV_SECRETS_FILE": str(tmp_path / "d.json")},
    )
    assert printed.exit_code == 0, printed.output
    raw = printed.stdout.strip()
    assert "PRIVATE" not in raw
    verifier = EventVerifier(load_verify_keys(raw), producers=verify_key_producers(raw))
    assert verify_key_producers(raw) == {"recon-7": RECONCILIATION_PRODUCER}
    event = DomainEvent("reconciliation.mismatch_confirmed", 1, "payment", "p", {}, START)
    verifier.verify(envelope_for(event, Origin(), EventSigner("recon-7", key), producer=RECONCILIATION_PRODUCER))
    assert PRODUCER != RECONCILIATION_PRODUCER
