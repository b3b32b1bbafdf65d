"""A relay process killed mid-way (SIGKILL, no clean-up) loses nothing: once restarted, every
outbox event is in the stream exactly once, and each aggregate's events are in write order.
Run as real `kora relay` processes on PostgreSQL, with the embedded stream and with JetStream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from kora.events import DomainEvent, Origin
from kora.events.adapters.outbox import write_outbox
from kora.events.adapters.tables import event_outbox, event_stream
from kora.events.signing import load_signing_keys
from kora.platform.db import create_engine
from kora.platform.settings import Settings
from tests.support.api import test_settings as settings_for

EVENTS = 6_000
AGGREGATES = 300


async def _fill_outbox(url: str, settings: Settings) -> list[tuple[uuid.UUID, str]]:
    signer, _ = load_signing_keys(settings.secret("KORA_EVENT_SIGNING_KEYS"))
    engine = create_engine(url)
    aggregates = [str(uuid.uuid4()) for _ in range(AGGREGATES)]
    try:
        for start in range(0, EVENTS, 1_000):
            events = [
                (
                    DomainEvent(
                        type="identity.user_registered",
                        version=1,
                        aggregate_type="user",
                        aggregate_id=aggregates[i % AGGREGATES],
                        payload={"user_id": aggregates[i % AGGREGATES], "roles": ["customer"]},
                        occurred_at=datetime.now(UTC),
                    ),
                    Origin(),
                )
                for i in range(start, start + 1_000)
            ]
            async with engine.begin() as conn:
                await write_outbox(conn, events, signer, at=datetime.now(UTC))
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(event_outbox.c.event_id, event_outbox.c.aggregate_id).order_by("seq"))
            return [(r.event_id, r.aggregate_id) for r in rows]
    finally:
        await engine.dispose()


async def _published(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            value = await conn.execute(
                sa.select(sa.func.count()).select_from(event_outbox).where(event_outbox.c.published_at.is_not(None))
            )
            return int(value.scalar() or 0)
    finally:
        await engine.dispose()


def _relay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kora", "relay"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def _wait(predicate_async: object, limit_seconds: float) -> None:
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        if await predicate_async():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def _kill_and_restart(url: str, env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    first = _relay(env, log)
    try:
        # Kill it while it is publishing: some events out, most not yet.
        await _wait(lambda: _some_published(url), 60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert await _published(url) < EVENTS, "the relay finished before it could be killed"
    finally:
        if first.poll() is None:
            first.kill()
    second = _relay(env, log)
    try:
        await _wait(lambda: _all_published(url), 120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    assert second.returncode == 0, log.read_text()[-2000:]


async def _some_published(url: str) -> bool:
    return await _published(url) > 0


async def _all_published(url: str) -> bool:
    return await _published(url) >= EVENTS


def _env(url: str, tmp_path: Path, **extra: str) -> tuple[dict[str, str], Settings]:
    settings = settings_for(url, tmp_path)
    env = {
        **os.environ,
        "KORA_DATABASE_URL": url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
        "KORA_RELAY_BATCH_SIZE": "200",
        "KORA_LOG_LEVEL": "WARNING",
        **extra,
    }
    return env, settings


async def test_a_killed_relay_loses_nothing_on_the_embedded_stream(migrated_postgres_url: str, tmp_path: Path) -> None:
    env, settings = _env(migrated_postgres_url, tmp_path, KORA_EVENTS_BUS="inprocess")
    written = await _fill_outbox(migrated_postgres_url, settings)
    await _kill_and_restart(migrated_postgres_url, env, tmp_path)

    engine = create_engine(migrated_postgres_url)
    try:
        async with engine.connect() as conn:
            stream = [
                uuid.UUID(m) for m in (await conn.execute(sa.select(event_stream.c.msg_id).order_by("seq"))).scalars()
            ]
    finally:
        await engine.dispose()
    assert sorted(stream) == sorted(event_id for event_id, _ in written)  # each once, none lost
    _assert_order_per_aggregate(written, stream)


def _assert_order_per_aggregate(written: list[tuple[uuid.UUID, str]], delivered: list[uuid.UUID]) -> None:
    position = {event_id: i for i, event_id in enumerate(delivered)}
    last: dict[str, int] = {}
    for event_id, aggregate in written:
        assert position[event_id] > last.get(aggregate, -1), "an aggregate's events left out of order"
        last[aggregate] = position[event_id]


@pytest.fixture
def nats_url() -> str:
    return os.environ.get("KORA_TEST_NATS_URL", "nats://127.0.0.1:4222")


async def test_a_killed_relay_loses_nothing_on_jetstream(
    migrated_postgres_url: str, tmp_path: Path, nats_url: str
) -> None:
    from kora.events.adapters.nats_bus import NatsEventBus
    from kora.events.ports import ConsumerSpec
    from tests.conftest import service_unavailable

    suffix = uuid.uuid4().hex[:8]
    names = {"stream": f"KILL_{suffix}", "dlq_stream": f"KILL_{suffix}_DLQ", "namespace": f"kill{suffix}"}
    try:
        admin = await NatsEventBus.connect(nats_url, **names)
    except Exception as exc:
        service_unavailable(f"NATS not reachable at {nats_url}: {exc!r}")
        return
    try:
        await admin.ensure_stream()
        env, settings = _env(
            migrated_postgres_url,
            tmp_path,
            KORA_EVENTS_BUS="nats",
            KORA_NATS_URL=nats_url,
            KORA_NATS_STREAM=names["stream"],
            KORA_NATS_DLQ_STREAM=names["dlq_stream"],
            KORA_NATS_NAMESPACE=names["namespace"],
        )
        written = await _fill_outbox(migrated_postgres_url, settings)
        await _kill_and_restart(migrated_postgres_url, env, tmp_path)
        assert await admin.stream_last_seq() == EVENTS  # duplicates from the killed batch were dropped
        delivered: list[uuid.UUID] = []
        spec = ConsumerSpec("kill-check", ("kora.events.>",))
        async for delivery in admin.replay(spec, from_seq=1):
            delivered.append(uuid.UUID(delivery.headers["Nats-Msg-Id"]))
        assert sorted(delivered) == sorted(event_id for event_id, _ in written)
        _assert_order_per_aggregate(written, delivered)
    finally:
        await admin.delete_streams()
        await admin.close()


async def test_two_relays_at_once_publish_each_event_once_and_in_order(
    migrated_postgres_url: str, tmp_path: Path
) -> None:
    from kora.events.adapters.sql_bus import SqlStreamBus
    from kora.events.relay import Relay
    from kora.kernel import SystemClock

    _, settings = _env(migrated_postgres_url, tmp_path)
    written = await _fill_outbox(migrated_postgres_url, settings)
    engine = create_engine(migrated_postgres_url)
    try:
        bus = SqlStreamBus(engine, SystemClock())
        # Each claims half the partitions at a time (SKIP LOCKED): they share the work.
        relays = [Relay(engine, bus, SystemClock(), batch_size=250, partitions_per_claim=8) for _ in range(2)]
        counts = [0, 0]

        async def drain(i: int) -> None:
            idle = 0
            while idle < 3:
                n = await relays[i].publish_once()
                counts[i] += n
                idle = idle + 1 if n == 0 else 0
                await asyncio.sleep(0)

        await asyncio.gather(drain(0), drain(1))
        async with engine.connect() as conn:
            stream = [
                uuid.UUID(m) for m in (await conn.execute(sa.select(event_stream.c.msg_id).order_by("seq"))).scalars()
            ]
    finally:
        await engine.dispose()
    assert sum(counts) == EVENTS
    assert min(counts) > 0, f"one relay did all the work: {counts}"
    assert sorted(stream) == sorted(event_id for event_id, _ in written)
    _assert_order_per_aggregate(written, stream)
