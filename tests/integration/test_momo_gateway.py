"""Kora against the provider simulator over real HTTP: cash-in and cash-out through the
MoMo-style gateway — settled, declined, timed out then resolved by the sweeper, and a provider
outage that fails the payment cleanly (the request was certainly not accepted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from kora.bootstrap import Kora
from kora.kernel import FixedClock
from kora.payments import ProviderMoveCommand
from kora.providers.adapters.momo import HttpMomoGateway, major_units
from kora.providers.resilience import ProviderGuard, ProviderPolicy, RetryPolicy, TimeoutPolicy
from kora.simulator import SimulatorConfig, create_simulator_app
from tests.integration.simulator.conftest import RunningServer, serve
from tests.support.api import test_settings as settings_for
from tests.support.net import free_port


@pytest.fixture
def simulator() -> Iterator[RunningServer]:
    config = SimulatorConfig.for_tests()
    config.providers["momo"].hold_seconds = 1.0  # longer than the gateway's 0.4 s budget below
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


@pytest.fixture
async def world(simulator: RunningServer, migrated_sqlite_url: str, tmp_path: Path) -> AsyncIterator[World]:
    clock = FixedClock()
    client = httpx.AsyncClient()
    policy = ProviderPolicy(
        default_timeout=TimeoutPolicy(connect=0.3, read=0.4, total=0.4),
        # One attempt: a timeout stays ambiguous here, so the sweeper's path is exercised.
        retry=RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.05, deadline=2.0),
    )
    gateway = HttpMomoGateway(
        "momo",
        simulator.url,
        client=client,
        guard=ProviderGuard("momo", policy),
        poll_attempts=5,
        poll_interval_seconds=0.05,
    )
    kora = Kora(settings_for(migrated_sqlite_url, tmp_path), clock=clock, providers=[gateway])
    try:
        yield World(kora, clock, simulator.url)
    finally:
        await kora.aclose()
        await client.aclose()


async def customer(world: World, msisdn_suffix: str) -> ProviderMoveCommand:
    # Magic numbers of the simulator: the last six digits "0000" + a behaviour code.
    phone = "+22507" + "12" + "0000" + msisdn_suffix
    registered = await world.kora.identity.register(phone_number=phone, password="momo-pass-phrase-42")
    return ProviderMoveCommand(user_id=registered.user_id, amount=0, currency="XOF", idempotency_key="unused-0000")


def move(base: ProviderMoveCommand, amount: int, key: str) -> ProviderMoveCommand:
    return ProviderMoveCommand(
        user_id=base.user_id, amount=amount, currency="XOF", idempotency_key=key, provider="momo"
    )


async def test_cash_in_and_cash_out_are_captured_through_the_simulator(world: World) -> None:
    ok = await customer(world, "00")
    cash_in = await world.kora.payments.cash_in(move(ok, 10_000, "momo-in-000001"))
    assert cash_in.body["status"] == "CAPTURED"
    cash_out = await world.kora.payments.cash_out(move(ok, 4_000, "momo-out-00001"))
    assert cash_out.body["status"] == "CAPTURED"
    wallet = await world.kora.payments.wallet(ok.user_id)
    assert (wallet["balance"], wallet["available_balance"]) == (6_000, 6_000)
    async with httpx.AsyncClient() as admin:
        truth = (await admin.get(f"{world.simulator_url}/_sim/ledger")).json()
    by_reference = {op["reference"]: op for op in truth["operations"]}
    # The simulator's own record agrees with ours, payment by payment.
    for ours in (cash_in.body, cash_out.body):
        theirs = by_reference[ours["id"]]
        assert (theirs["amount"], theirs["currency"]) == (ours["amount"], ours["currency"])
        assert theirs["status"].lower() in ("succeeded", "successful")
    assert (await world.kora.verify_ledger()).ok


async def test_a_decline_fails_the_payment_and_releases_the_hold(world: World) -> None:
    rich = await customer(world, "00")
    await world.kora.payments.cash_in(move(rich, 5_000, "momo-in-000002"))
    poor = await customer(world, "02")  # the provider answers "not enough funds"
    refused_in = await world.kora.payments.cash_in(move(poor, 1_000, "momo-in-000003"))
    assert refused_in.body["status"] == "FAILED"
    assert refused_in.body["failure_code"] == "not_enough_funds"
    assert (await world.kora.payments.wallet(poor.user_id))["balance"] == 0


async def test_a_late_success_is_pending_then_captured_by_the_sweeper(world: World) -> None:
    late = await customer(world, "20")  # answered after the caller's timeout, but succeeded
    first = await world.kora.payments.cash_in(move(late, 2_500, "momo-in-000004"))
    assert first.body["status"] == "INITIATED"  # ambiguous: never guessed
    assert (await world.kora.payments.wallet(late.user_id))["balance"] == 0
    world.clock.advance(timedelta(minutes=5))
    for _ in range(40):  # the simulator finishes processing shortly after its hold
        counts = await world.kora.sweep_pending()
        if counts["confirmed"]:
            break
        await asyncio.sleep(0.1)
    assert (await world.kora.payments.wallet(late.user_id))["balance"] == 2_500
    replay = await world.kora.payments.cash_in(move(late, 2_500, "momo-in-000004"))
    assert (replay.replayed, replay.body["status"]) == (True, "CAPTURED")
    assert (await world.kora.verify_ledger()).ok


async def test_a_503_outage_is_ambiguous_and_left_pending(world: World) -> None:
    """A 503 may come after the provider accepted the request: never guessed, left pending."""
    ok = await customer(world, "00")
    outage = f"{world.simulator_url}/_sim/providers/momo/outage"
    async with httpx.AsyncClient() as admin:
        await admin.post(outage, json={"down": True})
        try:
            during = await world.kora.payments.cash_in(move(ok, 1_000, "momo-in-000005"))
        finally:
            await admin.post(outage, json={"down": False})
    assert during.body["status"] == "INITIATED"
    assert (await world.kora.payments.wallet(ok.user_id))["balance"] == 0


async def test_a_provider_that_cannot_be_reached_fails_cleanly(migrated_sqlite_url: str, tmp_path: Path) -> None:
    """Connection refused: the request certainly was not accepted, so the payment can fail at
    once and the customer's hold is given back."""
    dead = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient() as client:
        gateway = HttpMomoGateway("momo", dead, client=client, guard=ProviderGuard("momo"))
        kora = Kora(settings_for(migrated_sqlite_url, tmp_path), providers=[gateway])
        try:
            registered = await kora.identity.register(phone_number="+2250712000000", password="momo-pass-phrase-42")
            base = ProviderMoveCommand(user_id=registered.user_id, amount=0, currency="XOF", idempotency_key="x" * 8)
            refused = await kora.payments.cash_in(move(base, 1_000, "momo-in-000006"))
        finally:
            await kora.aclose()
    assert refused.body["status"] == "FAILED"
    assert refused.body["failure_code"].startswith("provider_unavailable")


def test_amounts_go_out_in_major_units() -> None:
    assert major_units(1500, "XOF") == "1500"
    assert major_units(1250, "EUR") == "12.50"
    assert major_units(5, "GHS") == "0.05"


async def test_the_momo_provider_is_configured_from_the_environment(
    simulator: RunningServer, migrated_sqlite_url: str, tmp_path: Path
) -> None:
    kora = Kora(settings_for(migrated_sqlite_url, tmp_path, KORA_PROVIDER_MOMO_URL=simulator.url))
    try:
        assert kora.providers.names == ("sandbox", "momo")
        assert kora.providers.default == "sandbox"
        registered = await kora.identity.register(phone_number="+2250712000000", password="momo-pass-phrase-42")
        base = ProviderMoveCommand(user_id=registered.user_id, amount=0, currency="XOF", idempotency_key="x" * 8)
        funded = await kora.payments.cash_in(move(base, 3_000, "momo-in-000007"))
        assert (funded.body["provider"], funded.body["status"]) == ("momo", "CAPTURED")
    finally:
        await kora.aclose()
