"""Fallback between two real providers (the simulator over HTTP), routed by Kora's table.

- A provider that certainly did not take a cash-out (its breaker is open, nothing listens)
  hands new cash-outs to the next provider of the route.
- A provider in a 503 outage gives ambiguous answers: those cash-outs stay with it, never sent
  to the other one, until its status is known (ADR 0017) — here after the outage ends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kora.bootstrap import Kora
from kora.kernel import FixedClock
from kora.payments import ProviderMoveCommand
from kora.providers.adapters.momo import HttpMomoGateway
from kora.providers.resilience import (
    BreakerPolicy,
    ProviderGuard,
    ProviderPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from kora.simulator import SimulatorConfig, create_simulator_app
from kora.simulator.config import ApiStyle, ProviderConfig
from tests.integration.simulator.conftest import RunningServer, serve
from tests.support.api import test_settings as settings_for
from tests.support.net import free_port

ROUTING = '{"disburse": {"XOF": ["mtn", "orange"]}, "collect": {"XOF": ["mtn", "orange"]}}'


@pytest.fixture
def simulator() -> Iterator[RunningServer]:
    config = SimulatorConfig.for_tests()
    config.providers["mtn"] = ProviderConfig(style=ApiStyle.MOMO)
    config.providers["orange"] = ProviderConfig(style=ApiStyle.MOMO)
    for name in ("mtn", "orange"):
        fast = SimulatorConfig.for_tests().providers["momo"]
        config.providers[name].latency = fast.latency
        config.providers[name].processing = fast.processing
        config.providers[name].hold_seconds = fast.hold_seconds
    running = serve(create_simulator_app(config))
    try:
        yield running
    finally:
        running.stop()


@dataclass
class World:
    kora: Kora
    clock: FixedClock
    simulator_url: str
    guards: dict[str, ProviderGuard]
    skew: list[float]  # seconds added to the guards' monotonic clock (to let a breaker's reset time pass)


def _gateway(
    name: str, url: str, client: httpx.AsyncClient, skew: list[float]
) -> tuple[HttpMomoGateway, ProviderGuard]:
    policy = ProviderPolicy(
        # No scenario here is a slow provider (outages answer 503 at once): the timeouts only need
        # to outlast a loaded CI machine (a 0.5 s budget once left a funding cash-in pending).
        default_timeout=TimeoutPolicy(connect=1.0, read=2.0, total=2.0),
        retry=RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.05, deadline=4.0),
        breaker=BreakerPolicy(fail_max=2, reset_timeout=60.0),
    )
    guard = ProviderGuard(name, policy, clock=lambda: time.monotonic() + skew[0])
    return HttpMomoGateway(name, url, client=client, guard=guard, poll_attempts=5, poll_interval_seconds=0.05), guard


async def _world(urls: dict[str, str], simulator_url: str, database_url: str, tmp_path: Path) -> World:
    client = httpx.AsyncClient()
    clock = FixedClock()
    skew = [0.0]
    built = {name: _gateway(name, url, client, skew) for name, url in urls.items()}
    settings = settings_for(database_url, tmp_path, KORA_PROVIDER_ROUTING=ROUTING)
    kora = Kora(settings, clock=clock, providers=[gateway for gateway, _ in built.values()])
    kora._http_client = client  # closed with Kora
    return World(kora, clock, simulator_url, {name: guard for name, (_, guard) in built.items()}, skew)


@pytest.fixture
async def world(simulator: RunningServer, migrated_url: str, tmp_path: Path) -> AsyncIterator[World]:
    built = await _world({"mtn": simulator.url, "orange": simulator.url}, simulator.url, migrated_url, tmp_path)
    try:
        yield built
    finally:
        await built.kora.aclose()


async def funded_customer(world: World, amount: int) -> ProviderMoveCommand:
    phone = "+2250712" + "0000" + "00"  # the simulator's "always succeeds" number
    registered = await world.kora.identity.register(phone_number=phone, password="fallback-pass-phrase-1")
    base = ProviderMoveCommand(user_id=registered.user_id, amount=amount, currency="XOF", idempotency_key="fund-0001")
    funded = await world.kora.payments.cash_in(base)
    assert funded.body["status"] == "CAPTURED", funded.body
    return base


def cash_out(base: ProviderMoveCommand, amount: int, key: str) -> ProviderMoveCommand:
    return ProviderMoveCommand(user_id=base.user_id, amount=amount, currency="XOF", idempotency_key=key)


async def simulator_ops(world: World, provider: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient() as admin:
        truth = (await admin.get(f"{world.simulator_url}/_sim/ledger", params={"provider": provider})).json()
    return {op["reference"]: op for op in truth["operations"]}


async def set_outage(world: World, provider: str, *, down: bool) -> None:
    async with httpx.AsyncClient() as admin:
        body: dict[str, Any] = {"down": down, "mode": "503"} if down else {"down": False}
        answer = await admin.post(f"{world.simulator_url}/_sim/providers/{provider}/outage", json=body)
        assert answer.status_code == 200, answer.text


async def test_an_open_breaker_sends_new_cash_outs_to_the_next_provider(world: World) -> None:
    base = await funded_customer(world, 50_000)
    await set_outage(world, "mtn", down=True)
    # The first cash-outs meet the outage: 503s are ambiguous, so they stay with mtn.
    ambiguous = [await world.kora.payments.cash_out(cash_out(base, 1_000, f"out-amb-{i:04d}")) for i in range(2)]
    assert [(r.body["status"], r.body["provider"]) for r in ambiguous] == [("AUTHORIZED", "mtn")] * 2
    assert world.guards["mtn"].breaker.state == "open"
    # Now mtn's breaker is open: it certainly will not accept, so orange gets the new ones.
    moved = [await world.kora.payments.cash_out(cash_out(base, 2_000, f"out-new-{i:04d}")) for i in range(3)]
    assert [(r.body["status"], r.body["provider"]) for r in moved] == [("CAPTURED", "orange")] * 3

    orange = await simulator_ops(world, "orange")
    mtn = await simulator_ops(world, "mtn")
    # Never sent to the other provider before the first one's status is known.
    assert all(r.body["id"] not in orange for r in ambiguous)
    assert all(r.body["id"] in orange and r.body["id"] not in mtn for r in moved)

    # The outage ends; the sweeper asks mtn (and only mtn) what became of the ambiguous ones.
    await set_outage(world, "mtn", down=False)
    world.skew[0] += 61.0  # past the breaker's reset timeout: the next call is its trial
    world.clock.advance(timedelta(minutes=5))
    counts = await world.kora.sweep_pending()
    # The 503s came before mtn took them: it has never heard of them. Not a failure by itself
    # (a request may still be landing), so they wait until their maximum age, then fail.
    assert (counts["still_pending"], counts["errors"]) == (2, 0), counts
    mtn_now = await simulator_ops(world, "mtn")
    assert all(r.body["id"] not in mtn_now for r in ambiguous)
    world.clock.advance(timedelta(hours=25))
    counts = await world.kora.sweep_pending()
    assert counts["gave_up"] == 2, counts
    for result in ambiguous:
        payment = await world.kora.payments.get_payment(
            uuid.UUID(result.body["id"]), viewer=base.user_id, privileged=False
        )
        assert (payment["provider"], payment["status"], payment["failure_code"]) == (
            "mtn",
            "FAILED",
            "provider_unresolved",
        )
    wallet = await world.kora.payments.wallet(base.user_id)
    assert (wallet["balance"], wallet["available_balance"]) == (44_000, 44_000)  # holds released
    report = await world.kora.verify_ledger()
    assert report.ok, report.violations


def _closed_port() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


async def test_a_provider_that_refuses_connections_hands_over_at_once(
    simulator: RunningServer, migrated_sqlite_url: str, tmp_path: Path
) -> None:
    world = await _world({"mtn": _closed_port(), "orange": simulator.url}, simulator.url, migrated_sqlite_url, tmp_path)
    try:
        base = await funded_customer(world, 20_000)  # the cash-in itself fell back to orange
        out = await world.kora.payments.cash_out(cash_out(base, 5_000, "out-refused-01"))
        assert (out.body["status"], out.body["provider"]) == ("CAPTURED", "orange")
        assert out.body["id"] in await simulator_ops(world, "orange")
        wallet = await world.kora.payments.wallet(base.user_id)
        assert (wallet["balance"], wallet["available_balance"]) == (15_000, 15_000)
        assert (await world.kora.verify_ledger()).ok
        assert (await world.kora.verify_audit()).ok
    finally:
        await world.kora.aclose()
