"""The settlement → SETTLED feedback loop between two services, each on its own PostgreSQL
database, through a real NATS JetStream:

cash-ins captured by the core through the provider simulator (over HTTP, MoMo) → the core's
relay → NATS → the reconciliation worker's `recon` consumer (recon database) → the simulator's
settlement report imported → the worker's match schedule with the settlement hook → the
reconciliation relay → NATS → the core's `settlement` consumer → the payments are SETTLED with
their settlement postings in the core's ledger → and the SETTLED events flow back to the
reconciliation view, which closes the loop (nothing is confirmed twice).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from kora.bootstrap import Kora
from kora.events.domain import RECONCILIATION_PRODUCER
from kora.events.signing import public_key_pem
from kora.kernel import SystemClock
from kora.ledger import AccountKind
from kora.payments import ProviderMoveCommand
from kora.platform.db import create_engine
from kora.providers.adapters.momo import HttpMomoGateway
from kora.providers.resilience import BreakerPolicy, ProviderGuard, ProviderPolicy, RetryPolicy, TimeoutPolicy
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import event_outbox, recon_payments
from kora.reconciliation.migrations import upgrade as recon_upgrade
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.review_settings import ReviewSettings
from kora.reconciliation.service.settings import ReconSettings
from kora.reconciliation.worker import ReconWorker
from kora.simulator import SimulatorConfig, create_simulator_app
from tests.integration.events.nats_support import SHARED_NATS_URL, SecuredNats, SharedNats, secured_nats, shared_nats
from tests.integration.simulator.conftest import RunningServer, serve
from tests.support.api import test_settings as settings_for
from tests.support.service_auth import new_service_key, service_key_json

__all__ = ["secured_nats", "shared_nats"]

ALWAYS_SUCCEEDS = "+225071200000" + "0"  # the simulator's number that always pays


def recon_keys() -> tuple[str, str]:
    """(KORA_RECON_EVENT_SIGNING_KEYS, the core's KORA_EVENT_VERIFY_KEYS entry for it)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    signing = json.dumps([{"kid": "recon-loop-1", "private_key_pem": pem}])
    verify = json.dumps(
        [
            {
                "kid": "recon-loop-1",
                "public_key_pem": public_key_pem(key.public_key()),
                "producer": RECONCILIATION_PRODUCER,
            }
        ]
    )
    return signing, verify


def nats_env(nats: SharedNats) -> dict[str, str]:
    return {
        "KORA_EVENTS_BUS": "nats",
        "KORA_NATS_URL": SHARED_NATS_URL,
        "KORA_NATS_STREAM": nats.stream,
        "KORA_NATS_DLQ_STREAM": nats.dlq_stream,
        "KORA_NATS_NAMESPACE": nats.namespace,
    }


@pytest.fixture
def simulator() -> Iterator[RunningServer]:
    running = serve(create_simulator_app(SimulatorConfig.for_tests()))
    try:
        yield running
    finally:
        running.stop()


def momo_gateway(url: str, client: httpx.AsyncClient) -> HttpMomoGateway:
    policy = ProviderPolicy(
        default_timeout=TimeoutPolicy(connect=1.0, read=2.0, total=2.0),
        retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05, deadline=5.0),
        breaker=BreakerPolicy(fail_max=5, reset_timeout=30.0),
    )
    guard = ProviderGuard("momo", policy)
    return HttpMomoGateway("momo", url, client=client, guard=guard, poll_attempts=20, poll_interval_seconds=0.05)


async def until(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Loop:
    """`kora`: the core's API and relay; `settler`: its settlement worker; `worker`: reconciliation's."""

    def __init__(self, kora: Kora, settler: Kora, worker: ReconWorker, simulator: str) -> None:
        self.kora, self.settler, self.worker, self.simulator = kora, settler, worker, simulator

    async def statuses(self, ids: list[str]) -> list[str]:
        out = []
        async with self.kora.unit_of_work() as uow:
            for i in ids:
                payment = await uow.payments.get(uuid.UUID(i))
                assert payment is not None
                out.append(payment.status.value)
        return out

    async def recon_statuses(self) -> dict[str, str]:
        async with self.worker.engine.connect() as conn:
            rows = await conn.execute(sa.select(recon_payments.c.payment_id, recon_payments.c.status))
            return {r.payment_id: r.status for r in rows}

    async def recon_events(self) -> list[str]:
        async with self.worker.engine.connect() as conn:
            rows = await conn.execute(sa.select(event_outbox.c.type, event_outbox.c.published_at))
            return [r.type for r in rows if r.published_at is not None]

    async def posted(self, kind: AccountKind) -> int:
        async with self.kora.unit_of_work() as uow:
            account = await uow.ledger.system_account(kind, "XOF", "momo")
            return (await uow.ledger.balance(account.id)).posted

    async def import_report(self, key: str) -> uuid.UUID:
        day = datetime.now(UTC).date()
        async with httpx.AsyncClient(base_url=self.simulator) as client:
            answer = await client.get("/_sim/providers/momo/settlement-report", params={"date": day.isoformat()})
        assert answer.status_code == 200, answer.text
        imports = ReportImports(SqlReportStore(self.worker.engine), AesGcmReportCipher.from_setting(key), SystemClock())
        result = await imports.import_report("momo", answer.content, filename="momo.csv", actor="ops-1", report_day=day)
        assert result.quarantined == 0
        return result.report_id


@pytest.fixture
def recon_postgres_url(another_postgres_database: str) -> str:
    """The reconciliation service's own database, at the head of its own chain."""
    recon_upgrade(another_postgres_database)
    return another_postgres_database


@pytest.fixture(params=["shared-nats", "least-privilege"])
def bus(request: pytest.FixtureRequest) -> SharedNats | SecuredNats:
    """Each process as its own NATS user of deploy/nats/nats.conf (`least-privilege`: the core's
    relay as kora-relay, its settlement worker as kora-settlement, the reconciliation worker as
    kora-recon), or all on the shared test server (`shared-nats`)."""
    found: SharedNats | SecuredNats = request.getfixturevalue(
        "shared_nats" if request.param == "shared-nats" else "secured_nats"
    )
    return found


@pytest.fixture
async def loop(
    bus: SharedNats | SecuredNats,
    migrated_postgres_url: str,
    recon_postgres_url: str,
    simulator: RunningServer,
    tmp_path: Path,
) -> AsyncIterator[tuple[Loop, str]]:
    if isinstance(bus, SharedNats):
        env = {"relay": nats_env(bus), "settlement": nats_env(bus), "recon": nats_env(bus)}
    else:
        secured = bus
        admin = await secured.connect("kora-admin", wait=3.0)
        try:
            await admin.ensure_stream()
        finally:
            await admin.close()
        env = {role: secured_env(secured, f"kora-{role}") for role in ("relay", "settlement", "recon")}
    signing, verify = recon_keys()
    client = httpx.AsyncClient()
    kora = Kora(
        settings_for(migrated_postgres_url, tmp_path, KORA_EVENT_VERIFY_KEYS=verify, **env["relay"]),
        providers=[momo_gateway(simulator.url, client)],
    )
    kora._http_client = client  # closed with Kora
    # The settlement worker is configured with the same providers as the API (it settles only
    # a provider it knows; it never calls it).
    settler_client = httpx.AsyncClient()
    settler = Kora(
        settings_for(migrated_postgres_url, tmp_path, KORA_EVENT_VERIFY_KEYS=verify, **env["settlement"]),
        providers=[momo_gateway(simulator.url, settler_client)],
    )
    settler._http_client = settler_client
    report_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    core_keys = [
        {"kid": kora.event_signer.key_id, "public_key_pem": public_key_pem(kora.event_signer._key.public_key())}
    ]
    recon_settings = ReconSettings.from_env(
        {
            "KORA_ENV": "production",  # nothing generated: every key is given, as in a deployment
            "KORA_RECON_DATABASE_URL": recon_postgres_url,
            "KORA_RECON_REPORT_KEY": report_key,
            "KORA_RECON_EVENT_SIGNING_KEYS": signing,
            "KORA_EVENT_VERIFY_KEYS": json.dumps(core_keys),
            "KORA_RECON_MATCH_INTERVAL_SECONDS": "0.3",
            "KORA_RECON_SERVICE_KEY": service_key_json(new_service_key()),
            **env["recon"],
        }
    )
    worker = ReconWorker(
        recon_settings, registry=CollectorRegistry(), review=ReviewSettings(audit_key=secrets.token_bytes(32))
    )
    try:
        yield Loop(kora, settler, worker, simulator.url), report_key
    finally:
        await worker.aclose()
        await settler.aclose()
        await kora.aclose()


def secured_env(nats: SecuredNats, user: str) -> dict[str, str]:
    return {
        "KORA_EVENTS_BUS": "nats",
        "KORA_NATS_URL": nats.url,
        "KORA_NATS_USER": user,
        "KORA_NATS_PASSWORD": nats.passwords[user],
    }


async def test_the_settlement_feedback_loop_through_nats(loop: tuple[Loop, str], spans: Any) -> None:
    world, report_key = loop
    kora, worker = world.kora, world.worker
    stop = asyncio.Event()
    jobs: list[asyncio.Task[Any]] = [
        asyncio.create_task(kora.events.run_relay(stop)),
        asyncio.create_task(world.settler.events.run_consumers(stop, ["settlement"])),
        asyncio.create_task(worker.run(stop)),
    ]
    try:
        registered = await kora.identity.register(phone_number=ALWAYS_SUCCEEDS, password="loop-pass-phrase-1")
        ids = []
        for amount in (10_000, 2_500):
            cmd = ProviderMoveCommand(registered.user_id, amount, "XOF", uuid.uuid4().hex, provider="momo")
            result = await kora.payments.cash_in(cmd)
            assert result.body["status"] == "CAPTURED", result.body
            ids.append(str(result.body["id"]))
        assert await world.posted(AccountKind.PROVIDER_CLEARING) == 12_500

        # core relay → NATS → recon consumer: the recon database knows both as CAPTURED.
        async def fed() -> bool:
            return await world.recon_statuses() == dict.fromkeys(ids, "CAPTURED")

        await until(fed, "the recon feed")

        # The provider's report, imported; the worker's schedule matches it and confirms.
        await world.import_report(report_key)

        async def settled() -> bool:
            return await world.statuses(ids) == ["SETTLED", "SETTLED"]

        await until(settled, "the core to settle what reconciliation confirmed")
        assert await world.posted(AccountKind.PROVIDER_CLEARING) == 0
        assert await world.posted(AccountKind.SETTLEMENT_BANK) == 12_500
        async with kora.engine.connect() as conn:
            postings = await conn.execute(
                sa.text("SELECT count(*) FROM ledger_transactions WHERE kind = 'cash_in.settlement'")
            )
            assert postings.scalar_one() == 2

        # The core's SETTLED events come back: the reconciliation view is SETTLED, so later
        # schedule rounds confirm nothing again.
        async def closed() -> bool:
            return await world.recon_statuses() == dict.fromkeys(ids, "SETTLED")

        await until(closed, "the SETTLED events back in the recon view")
        await asyncio.sleep(1.0)  # a few more schedule rounds
        assert await world.recon_events() == ["reconciliation.settlement_confirmed"]
        assert (
            worker.registry.get_sample_value(
                "kora_recon_outcome_events_total", {"type": "reconciliation.settlement_confirmed"}
            )
            == 1
        )
        settled_count = world.settler.registry.get_sample_value(
            "kora_recon_settlement_payments_total", {"outcome": "settled"}
        )
        assert settled_count == 2
        assert (await kora.verify_ledger()).ok
        assert await kora.events.dead_letters.open_counts() == {}
        async with worker.engine.connect() as conn:  # nothing refused on the reconciliation side either
            parked = await conn.execute(sa.text("SELECT count(*) FROM dead_letters"))
            assert parked.scalar_one() == 0
        assert await worker.runner() is not None

        # One trace per cause (ADR 0026): each cash-in's trace continues into the recon service's
        # fold of its events; the match run's trace continues into the core's settlement.
        finished = spans.get_finished_spans()
        cash_ins = [sp for sp in finished if sp.name == "payments.cash_in"]
        assert len(cash_ins) == 2
        folded = {
            sp.context.trace_id
            for sp in finished
            if sp.name == "consume payment.status_changed"
            and sp.attributes.get("messaging.consumer.group.name") == "recon"
        }
        assert {sp.context.trace_id for sp in cash_ins} <= folded
        settling = [
            sp
            for sp in finished
            if sp.name == "consume reconciliation.settlement_confirmed"
            and sp.attributes.get("messaging.consumer.group.name") == "settlement"
        ]
        runs = {sp.context.trace_id for sp in finished if sp.name == "recon.match"}
        assert settling
        assert {sp.context.trace_id for sp in settling} <= runs
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), timeout=30)


async def test_the_loop_on_the_embedded_default_with_a_recon_worker_process(
    migrated_sqlite_url: str, simulator: RunningServer, tmp_path: Path
) -> None:
    """The embedded default: SQLite for each service and the core's embedded stream (a table of
    the core's database) as the bus. `kora recon worker` runs as its own process, reaching the
    core's database only for the stream, and stops cleanly on SIGTERM."""
    signing, verify = recon_keys()
    client = httpx.AsyncClient()
    kora = Kora(
        settings_for(migrated_sqlite_url, tmp_path, KORA_EVENT_VERIFY_KEYS=verify),
        providers=[momo_gateway(simulator.url, client)],
    )
    kora._http_client = client
    recon_url = f"sqlite+aiosqlite:///{tmp_path / 'kora-recon.db'}"
    report_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = {
        **os.environ,
        "KORA_DATABASE_URL": migrated_sqlite_url,
        "KORA_RECON_DATABASE_URL": recon_url,
        "KORA_RECON_REPORT_KEY": report_key,
        "KORA_RECON_EVENT_SIGNING_KEYS": signing,
        # The core's dev keys are in this file: the worker derives the core's public key from it.
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
        "KORA_RECON_MATCH_INTERVAL_SECONDS": "0.3",
        "KORA_EVENTS_BUS": "inprocess",
        "KORA_LOG_LEVEL": "WARNING",
    }
    env.pop("KORA_EVENT_VERIFY_KEYS", None)
    log = tmp_path / "recon-worker.log"
    stop = asyncio.Event()
    jobs = [
        asyncio.create_task(kora.events.run_relay(stop)),
        asyncio.create_task(kora.events.run_consumers(stop, ["settlement"])),
    ]
    process: subprocess.Popen[bytes] | None = None
    recon_engine = create_engine(recon_url, pool_size=1)
    try:
        assert await asyncio.to_thread(run_kora(env, "recon", "db", "upgrade").wait) == 0
        process = run_kora(env, "recon", "worker", log=log)
        registered = await kora.identity.register(phone_number=ALWAYS_SUCCEEDS, password="loop-pass-phrase-1")
        cmd = ProviderMoveCommand(registered.user_id, 7_000, "XOF", uuid.uuid4().hex, provider="momo")
        captured = await kora.payments.cash_in(cmd)
        assert captured.body["status"] == "CAPTURED", captured.body
        payment_id = str(captured.body["id"])

        async def fed() -> bool:
            async with recon_engine.connect() as conn:
                found = await conn.execute(
                    sa.select(recon_payments.c.status).where(recon_payments.c.payment_id == payment_id)
                )
                return found.scalar_one_or_none() == "CAPTURED"

        await until(fed, "the recon feed on the embedded stream")
        day = datetime.now(UTC).date()
        async with httpx.AsyncClient(base_url=simulator.url) as sim:
            report = (await sim.get("/_sim/providers/momo/settlement-report", params={"date": day.isoformat()})).content
        imports = ReportImports(
            SqlReportStore(recon_engine), AesGcmReportCipher.from_setting(report_key), SystemClock()
        )
        await imports.import_report("momo", report, filename="momo.csv", actor="ops-1", report_day=day)

        async def settled() -> bool:
            async with kora.unit_of_work() as uow:
                payment = await uow.payments.get(uuid.UUID(payment_id))
            return payment is not None and payment.status.value == "SETTLED"

        await until(settled, "the core to settle on the embedded stream", limit=60.0)
        async with kora.engine.connect() as conn:
            postings = await conn.execute(
                sa.text("SELECT count(*) FROM ledger_transactions WHERE kind = 'cash_in.settlement'")
            )
            assert postings.scalar_one() == 1
        # The worker never touched another core table: its processed events and outbox are its own.
        async with kora.engine.connect() as conn:
            consumers = await conn.execute(sa.text("SELECT DISTINCT consumer FROM processed_events"))
            assert set(consumers.scalars()) == {"settlement"}
    finally:
        # The core's jobs first: SQLite has one writer, and a job frozen mid-transaction would
        # hold the lock the stopping worker waits for.
        stop.set()
        await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), timeout=30)
        if process is not None:
            await asyncio.to_thread(terminate, process)
        await recon_engine.dispose()
        await kora.aclose()
    assert process.returncode == 0, log.read_text()[-2000:]


def run_kora(env: dict[str, str], *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "kora", *args], env=env, stdout=output, stderr=subprocess.STDOUT)


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an orchestrator stops it; killed only if it does not stop in time."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
