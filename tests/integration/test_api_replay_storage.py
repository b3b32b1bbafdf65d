"""Anti-replay storage on real databases: concurrent twins on PostgreSQL (exactly one passes),
and the purge of expired nonces driven by a fixed clock on both engines."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from kora.bootstrap import Kora
from kora.identity import Principal, RequestReplayed
from kora.kernel import FixedClock
from tests.support import api as support
from tests.support.api import Api, fresh_request_headers, new_phone


async def test_concurrent_requests_with_one_nonce_move_money_once(postgres_api: Api) -> None:
    api = postgres_api
    alice = await api.customer(fund=10_000)
    bob = await api.customer()
    nonce = uuid.uuid4().hex
    # Twenty copies of one request in flight at once, each with its own Idempotency-Key, so
    # only the nonce can tell they are the same.
    responses = await asyncio.gather(
        *(api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=100) for _ in range(20))
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 19}, [r.text for r in responses if r.status_code not in (201, 409)]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"request_replayed"}
    assert (await api.balance(alice))["balance"] == 9_900
    assert (await api.balance(bob))["balance"] == 100
    assert (await api.kora.verify_ledger()).ok  # type: ignore[attr-defined]


async def test_concurrent_cash_outs_with_one_nonce_hold_money_once(postgres_api: Api) -> None:
    api = postgres_api
    alice = await api.customer(fund=1_000)
    nonce = uuid.uuid4().hex
    responses = await asyncio.gather(*(api.cash_out(alice, 100, nonce=nonce) for _ in range(10)))
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 9}
    wallet = await api.balance(alice)
    assert wallet["balance"] == wallet["available_balance"] == 900


@pytest.fixture
async def clocked_kora(migrated_url: str, tmp_path: Path) -> AsyncIterator[tuple[Kora, FixedClock]]:
    clock = FixedClock()
    kora = Kora(support.test_settings(migrated_url, tmp_path), clock=clock)
    try:
        yield kora, clock
    finally:
        await kora.aclose()


async def _principal(kora: Kora) -> Principal:
    phone, password = new_phone(), "correct-horse-" + uuid.uuid4().hex[:8]
    await kora.identity.register(phone_number=phone, password=password)
    pair = await kora.identity.login(phone_number=phone, password=password, device_id="d-1", client_ip=None)
    return await kora.identity.authenticate(pair.access_token, "d-1")


async def _stored(kora: Kora) -> int:
    async with kora.engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT count(*) FROM request_nonces"))).scalar_one())


async def test_expired_nonces_are_purged_and_live_ones_kept(clocked_kora: tuple[Kora, FixedClock]) -> None:
    kora, clock = clocked_kora
    caller = await _principal(kora)

    def now() -> int:
        return int(clock.now().timestamp())

    old = fresh_request_headers(timestamp=now())
    await kora.identity.consume_request_nonce(
        caller, nonce=old["X-Request-Nonce"], timestamp=old["X-Request-Timestamp"]
    )
    clock.advance(timedelta(seconds=200))
    recent = fresh_request_headers(timestamp=now())
    await kora.identity.consume_request_nonce(
        caller, nonce=recent["X-Request-Nonce"], timestamp=recent["X-Request-Timestamp"]
    )
    assert await kora.purge_request_nonces() == 0
    assert await _stored(kora) == 2

    # The first nonce's timestamp turned stale 300 s after it was sent; a minute's margin later
    # it goes, and the second stays until its own turn.
    clock.advance(timedelta(seconds=100 + 60 + 1))
    assert await kora.purge_request_nonces() == 1
    assert await _stored(kora) == 1
    with pytest.raises(RequestReplayed):
        await kora.identity.consume_request_nonce(
            caller, nonce=recent["X-Request-Nonce"], timestamp=recent["X-Request-Timestamp"]
        )
    clock.advance(timedelta(seconds=200))
    assert await kora.purge_request_nonces() == 1
    assert await _stored(kora) == 0
    text = kora.render_metrics(None)[0].decode()
    assert "kora_request_nonces_purged_total 2.0" in text


async def test_a_nonce_row_goes_with_its_session(clocked_kora: tuple[Kora, FixedClock]) -> None:
    kora, clock = clocked_kora
    caller = await _principal(kora)
    headers = fresh_request_headers(timestamp=int(clock.now().timestamp()))
    await kora.identity.consume_request_nonce(
        caller, nonce=headers["X-Request-Nonce"], timestamp=headers["X-Request-Timestamp"]
    )
    async with kora.engine.begin() as conn:
        # Not something Kora does today; the foreign key keeps the table free of orphans if it ever does.
        await conn.execute(sa.text("DELETE FROM refresh_tokens"))
        await conn.execute(sa.text("DELETE FROM auth_sessions"))
    assert await _stored(kora) == 0
