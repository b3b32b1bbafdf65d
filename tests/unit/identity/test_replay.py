"""Anti-replay: the pure rules for X-Request-Timestamp and X-Request-Nonce, and the use case on
in-memory fakes (a fixed clock: no sleeping)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Self

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kora.identity import (
    Principal,
    RequestNonceInvalid,
    RequestNonceMissing,
    RequestReplayed,
    RequestStale,
    RequestTimestampInvalid,
    RequestTimestampMissing,
    Role,
)
from kora.identity.domain import RequestFreshness, check_fresh, parse_freshness

from .fakes import FakeUnitOfWork, Store, World, build_world, make_settings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
WINDOW = timedelta(seconds=300)
NONCE = "0123456789abcdef0123456789abcdef"


# -- pure validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "nonce",
    [
        "0123456789abcdef",  # 16 hex characters, the minimum
        "A" * 64,  # the maximum
        "q1w2e3r4t5y6u7i8o9p0_-ZX",  # URL-safe base64 without padding
        str(uuid.uuid4()),  # a UUID with its dashes
    ],
)
def test_well_formed_nonces_are_accepted(nonce: str) -> None:
    assert parse_freshness(nonce=nonce, timestamp=str(TS)) == RequestFreshness(nonce=nonce, timestamp=TS)


@pytest.mark.parametrize(
    ("nonce", "error"),
    [
        (None, RequestNonceMissing),
        ("", RequestNonceMissing),
        ("0123456789abcde", RequestNonceInvalid),  # 15: too short to be random enough
        ("A" * 65, RequestNonceInvalid),
        ("0123456789abcdef+/", RequestNonceInvalid),  # standard base64 alphabet
        ("0123456789abcdef==", RequestNonceInvalid),  # padding
        ("0123456789 abcdef", RequestNonceInvalid),
        ("0123456789abcdéf0", RequestNonceInvalid),
        ("0123456789abcdef\n", RequestNonceInvalid),
    ],
)
def test_missing_or_malformed_nonces_are_refused(nonce: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_freshness(nonce=nonce, timestamp=str(TS))


@pytest.mark.parametrize(
    ("timestamp", "error"),
    [
        (None, RequestTimestampMissing),
        ("", RequestTimestampMissing),
        ("-1767268800", RequestTimestampInvalid),
        ("+1767268800", RequestTimestampInvalid),
        ("1767268800.5", RequestTimestampInvalid),
        ("1.7e9", RequestTimestampInvalid),
        (" 1767268800", RequestTimestampInvalid),
        ("1767268800000", RequestTimestampInvalid),  # milliseconds
        ("Thu, 01 Jan 2026 12:00:00 GMT", RequestTimestampInvalid),
        ("١٧٦٧٢٦٨٨٠٠", RequestTimestampInvalid),  # digits, but not ASCII ones
    ],
)
def test_missing_or_malformed_timestamps_are_refused(timestamp: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_freshness(nonce=NONCE, timestamp=timestamp)


def test_the_timestamp_is_checked_before_the_nonce() -> None:
    with pytest.raises(RequestTimestampMissing):
        parse_freshness(nonce=None, timestamp=None)


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_a_timestamp_within_the_window_is_fresh(offset: int) -> None:
    expires_at = check_fresh(RequestFreshness(NONCE, TS + offset), now=NOW, window=WINDOW)
    # remembered until that very timestamp turns stale
    assert expires_at == NOW + timedelta(seconds=offset) + WINDOW


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400, -TS])
def test_a_timestamp_outside_the_window_is_stale(offset: int) -> None:
    with pytest.raises(RequestStale) as stale:
        check_fresh(RequestFreshness(NONCE, TS + offset), now=NOW, window=WINDOW)
    assert stale.value.code == "request_stale"
    assert stale.value.server_time == TS
    assert f"server Unix time: {TS}" in str(stale.value)


def test_refusals_carry_stable_codes_and_low_cardinality_reasons() -> None:
    refusals = [
        RequestNonceMissing(),
        RequestNonceInvalid(),
        RequestTimestampMissing(),
        RequestTimestampInvalid(),
        RequestStale(server_time=TS, window_seconds=300),
        RequestReplayed(),
    ]
    assert [(r.code, r.reason) for r in refusals] == [
        ("request_nonce_missing", "nonce_missing"),
        ("request_nonce_invalid", "nonce_invalid"),
        ("request_timestamp_missing", "timestamp_missing"),
        ("request_timestamp_invalid", "timestamp_invalid"),
        ("request_stale", "stale"),
        ("request_replayed", "replayed"),
    ]


# -- the use case on fakes -----------------------------------------------------------------


class FakeRequestNonces:
    def __init__(self, rows: dict[tuple[uuid.UUID, str], datetime]) -> None:
        self.rows = rows
        self.relaxed = False

    async def add(self, session_id: uuid.UUID, nonce: str, *, expires_at: datetime) -> bool:
        if (session_id, nonce) in self.rows:
            return False
        self.rows[(session_id, nonce)] = expires_at
        return True

    async def add_many(self, entries: Sequence[tuple[uuid.UUID, str, datetime]]) -> set[tuple[uuid.UUID, str]]:
        return {(s, n) for s, n, e in entries if await self.add(s, n, expires_at=e)}

    async def relax_durability(self) -> None:
        self.relaxed = True

    async def purge(self, *, expired_before: datetime) -> int:
        expired = [key for key, expires_at in self.rows.items() if expires_at < expired_before]
        for key in expired:
            del self.rows[key]
        return len(expired)


class NonceUnitOfWork(FakeUnitOfWork):
    """The identity fake unit of work plus the nonce store, with the same copy-on-enter,
    publish-on-commit semantics."""

    def __init__(self, store: NonceStore) -> None:
        super().__init__(store)
        self._nonce_store = store

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.request_nonces = FakeRequestNonces(copy.deepcopy(self._nonce_store.nonces))
        return self

    async def commit(self) -> None:
        await super().commit()
        self._nonce_store.nonces = copy.deepcopy(self.request_nonces.rows)
        self._nonce_store.relaxed_commits += self.request_nonces.relaxed


class NonceStore(Store):
    def __init__(self) -> None:
        super().__init__()
        self.nonces: dict[tuple[uuid.UUID, str], datetime] = {}
        self.relaxed_commits = 0

    def uow(self) -> NonceUnitOfWork:
        return NonceUnitOfWork(self)


@pytest.fixture
def world() -> World:
    return build_world(store=NonceStore(), settings=make_settings(replay_window_seconds=300))


def nonces(world: World) -> dict[tuple[uuid.UUID, str], datetime]:
    store = world.store
    assert isinstance(store, NonceStore)
    return store.nonces


def principal(session_id: uuid.UUID | None = None) -> Principal:
    return Principal(
        user_id=uuid.uuid4(),
        roles=frozenset({Role.CUSTOMER}),
        device_id="device-1",
        session_id=session_id or uuid.uuid4(),
    )


def now_ts(world: World) -> str:
    return str(int(world.clock.now().timestamp()))


async def test_a_nonce_is_accepted_once_per_session(world: World) -> None:
    caller = principal()
    await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=now_ts(world))
    assert nonces(world) == {(caller.session_id, NONCE): world.clock.now() + WINDOW}

    with pytest.raises(RequestReplayed):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=now_ts(world), correlation_id="c-1")
    replay = world.state.audit[-1]
    assert replay["action"] == "auth.request.replayed"
    assert replay["outcome"] == "denied"
    assert replay["actor"] == caller.actor
    assert replay["details"] == {"session_id": str(caller.session_id)}
    assert replay["correlation_id"] == "c-1"
    assert NONCE not in repr(replay)


async def test_another_session_may_use_the_same_nonce(world: World) -> None:
    first, second = principal(), principal()
    await world.service.consume_request_nonce(first, nonce=NONCE, timestamp=now_ts(world))
    await world.service.consume_request_nonce(second, nonce=NONCE, timestamp=now_ts(world))
    with pytest.raises(RequestReplayed):
        await world.service.consume_request_nonce(second, nonce=NONCE, timestamp=now_ts(world))
    assert len(nonces(world)) == 2


async def test_refused_requests_record_nothing(world: World) -> None:
    caller = principal()
    stale = str(int(world.clock.now().timestamp()) - 301)
    with pytest.raises(RequestStale):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=stale)
    with pytest.raises(RequestNonceInvalid):
        await world.service.consume_request_nonce(caller, nonce="short", timestamp=now_ts(world))
    assert nonces(world) == {}
    assert world.state.audit == []
    # the stale attempt did not burn the nonce: the honest retry with a correct clock passes
    await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=now_ts(world))


async def test_a_nonce_is_remembered_for_as_long_as_its_timestamp_is_fresh(world: World) -> None:
    caller = principal()
    sent_at = now_ts(world)
    await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=sent_at)

    world.clock.advance(WINDOW)  # the last second the timestamp is accepted
    assert await world.service.purge_request_nonces() == 0
    with pytest.raises(RequestReplayed):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=sent_at)

    world.clock.advance(timedelta(seconds=1))  # from now on the timestamp alone refuses it
    with pytest.raises(RequestStale):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=sent_at)
    assert await world.service.purge_request_nonces() == 0  # kept a margin for skewed replicas
    world.clock.advance(timedelta(seconds=60))
    assert await world.service.purge_request_nonces() == 1
    assert nonces(world) == {}
    with pytest.raises(RequestStale):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=sent_at)


async def test_a_future_timestamp_keeps_its_nonce_longer(world: World) -> None:
    caller = principal()
    ahead = int(world.clock.now().timestamp()) + 200
    await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=str(ahead))
    assert nonces(world)[(caller.session_id, NONCE)] == datetime.fromtimestamp(ahead, UTC) + WINDOW


async def test_only_the_nonce_transaction_skips_the_disk_flush(world: World) -> None:
    caller = principal()
    await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=now_ts(world))
    store = world.store
    assert isinstance(store, NonceStore)
    assert store.relaxed_commits == 1
    with pytest.raises(RequestReplayed):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=now_ts(world))
    # the audit record of the replay is written in its own, durable, transaction
    assert store.relaxed_commits == 2
    assert world.state.audit[-1]["action"] == "auth.request.replayed"


async def test_the_window_is_a_setting() -> None:
    world = build_world(store=NonceStore(), settings=make_settings(replay_window_seconds=30))
    with pytest.raises(RequestStale):
        await world.service.consume_request_nonce(
            principal(), nonce=NONCE, timestamp=str(int(world.clock.now().timestamp()) - 31)
        )


async def test_the_outcome_is_a_span_attribute(world: World, spans: InMemorySpanExporter) -> None:
    caller = principal()
    await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=now_ts(world))
    with pytest.raises(RequestReplayed):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=now_ts(world))
    with pytest.raises(RequestTimestampMissing):
        await world.service.consume_request_nonce(caller, nonce=NONCE, timestamp=None)
    outcomes = [
        span.attributes.get("kora.replay.outcome")
        for span in spans.get_finished_spans()
        if span.name == "identity.request_nonce" and span.attributes is not None
    ]
    assert outcomes == ["accepted", "replayed", "timestamp_missing"]
