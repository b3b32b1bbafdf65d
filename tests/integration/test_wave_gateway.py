"""Kora's Wave-style gateway against the provider simulator over real HTTP: checkout sessions
(cash-in) and payouts (cash-out) with our payment id as Idempotency-Key and client_reference;
declines with their reasons; a timeout left pending then resolved by status (late success);
an unreachable provider or an open breaker certainly not accepted; a 503 ambiguous; the
reused-key behaviour; a reversal; and the status of a reference the provider never saw."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kora.bootstrap import Kora
from kora.kernel import Money
from kora.payments import ProviderMoveCommand
from kora.providers import ProviderOperation, ProviderOutcome, ProviderRequest, ProviderResult
from kora.providers.adapters.wave import HttpWaveGateway
from kora.providers.resilience import BreakerPolicy, ProviderGuard, ProviderPolicy, RetryPolicy, TimeoutPolicy
from kora.simulator import SimulatorConfig, create_simulator_app
from tests.integration.simulator.conftest import RunningServer, serve
from tests.support.api import test_settings as settings_for
from tests.support.net import free_port

# One attempt of at most 0.4 s: a held answer (1 s) is a timeout, so the status path is exercised.
ONE_SHOT = ProviderPolicy(
    default_timeout=TimeoutPolicy(connect=0.3, read=0.4, total=0.4),
    retry=RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.05, deadline=2.0),
)
# For answers the simulator gives at once (declines): room for a loaded CI machine, where 0.4 s
# and five polls 50 ms apart once turned a decline into a timeout (PENDING).
PATIENT = ProviderPolicy(
    default_timeout=TimeoutPolicy(connect=2.0, read=3.0, total=3.0),
    retry=RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.05, deadline=5.0),
)


@pytest.fixture
def simulator() -> Iterator[RunningServer]:
    config = SimulatorConfig.for_tests()
    config.providers["wave"].hold_seconds = 1.0
    config.providers["wave"].reversal_after_seconds = 0.2
    running = serve(create_simulator_app(config))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def gateway(
    url: str, client: httpx.AsyncClient, policy: ProviderPolicy = ONE_SHOT, *, polls: int = 5
) -> HttpWaveGateway:
    return HttpWaveGateway(
        "wave", url, client=client, guard=ProviderGuard("wave", policy), poll_attempts=polls, poll_interval_seconds=0.05
    )


def request(suffix: str, amount: int = 1_500, *, payment_id: uuid.UUID | None = None) -> ProviderRequest:
    # The simulator's magic numbers: "0000" + a behaviour code at the end of the MSISDN.
    return ProviderRequest(
        payment_id or uuid.uuid4(), Money(amount, "XOF"), account_ref=f"+2250712{'0000'}{suffix}", correlation_id=None
    )


async def ground_truth(url: str, payment_id: uuid.UUID) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as admin:
        operations = (await admin.get(f"{url}/_sim/ledger", params={"reference": str(payment_id)})).json()
    return list(operations["operations"])


async def settle_status(wave: HttpWaveGateway, req: ProviderRequest, op: ProviderOperation) -> ProviderResult:
    for _ in range(60):
        result = await wave.status(req, op)
        if result.outcome is not ProviderOutcome.PENDING:
            return result
        await asyncio.sleep(0.05)
    return result


async def test_checkout_and_payout_succeed_with_our_reference(
    simulator: RunningServer, client: httpx.AsyncClient
) -> None:
    wave = gateway(simulator.url, client)
    cash_in, cash_out = request("00", 12_500), request("00", 4_000)
    collected = await wave.collect(cash_in)
    paid = await wave.disburse(cash_out)
    assert collected.outcome is paid.outcome is ProviderOutcome.SUCCEEDED
    [checkout] = await ground_truth(simulator.url, cash_in.payment_id)
    [payout] = await ground_truth(simulator.url, cash_out.payment_id)
    assert (checkout["kind"], checkout["amount"], checkout["external_id"]) == (
        "checkout",
        12_500,
        str(cash_in.payment_id),
    )
    assert (payout["kind"], payout["amount"], payout["external_id"]) == ("payout", 4_000, str(cash_out.payment_id))
    assert (collected.provider_ref, paid.provider_ref) == (checkout["id"], payout["id"])
    # The status query finds it by our reference alone.
    assert (await wave.status(cash_in, ProviderOperation.COLLECT)).provider_ref == checkout["id"]


@pytest.mark.parametrize(
    ("suffix", "operation", "code"),
    [
        ("01", ProviderOperation.COLLECT, "payment_cancelled"),
        ("02", ProviderOperation.COLLECT, "insufficient_funds"),
        ("03", ProviderOperation.DISBURSE, "recipient_not_found"),
        ("05", ProviderOperation.DISBURSE, "recipient_limit_exceeded"),
    ],
)
async def test_declines_carry_the_providers_reason(
    simulator: RunningServer, client: httpx.AsyncClient, suffix: str, operation: ProviderOperation, code: str
) -> None:
    wave = gateway(simulator.url, client, PATIENT, polls=40)
    req = request(suffix)
    result = await (wave.collect(req) if operation is ProviderOperation.COLLECT else wave.disburse(req))
    assert (result.outcome, result.failure_code, result.not_accepted) == (ProviderOutcome.FAILED, code, False)


async def test_a_timeout_is_pending_then_the_status_says_it_succeeded(
    simulator: RunningServer, client: httpx.AsyncClient
) -> None:
    wave = gateway(simulator.url, client)
    late = request("20")  # answered after our timeout, but it succeeded
    assert (await wave.disburse(late)).outcome is ProviderOutcome.PENDING  # never guessed
    resolved = await settle_status(wave, late, ProviderOperation.DISBURSE)
    assert resolved.outcome is ProviderOutcome.SUCCEEDED
    assert len(await ground_truth(simulator.url, late.payment_id)) == 1


async def test_a_safe_retry_after_a_timeout_finds_the_same_payout(
    simulator: RunningServer, client: httpx.AsyncClient
) -> None:
    """With retries allowed (the Idempotency-Key makes them safe) the second attempt gets the
    payout the first one created: one operation at the provider, answered in one call."""
    retrying = ProviderPolicy(
        default_timeout=TimeoutPolicy(connect=0.3, read=0.4, total=0.4),
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=5.0),
    )
    wave = gateway(simulator.url, client, retrying)
    late = request("20")
    result = await wave.disburse(late)
    assert result.outcome is ProviderOutcome.SUCCEEDED
    assert len(await ground_truth(simulator.url, late.payment_id)) == 1


async def test_an_unreachable_provider_certainly_did_not_accept(client: httpx.AsyncClient) -> None:
    wave = gateway(f"http://127.0.0.1:{free_port()}", client)
    result = await wave.disburse(request("00"))
    assert (result.outcome, result.not_accepted) == (ProviderOutcome.FAILED, True)
    assert result.failure_code == "provider_unavailable:connect_error"
    status = await wave.status(request("00"), ProviderOperation.DISBURSE)
    assert (status.outcome, status.failure_code) == (ProviderOutcome.PENDING, "status_unreachable")


async def test_an_open_breaker_refuses_without_calling(simulator: RunningServer, client: httpx.AsyncClient) -> None:
    fragile = ProviderPolicy(
        default_timeout=TimeoutPolicy(connect=0.3, read=0.4, total=0.4),
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerPolicy(fail_max=1, reset_timeout=60),
    )
    wave = gateway(simulator.url, client, fragile)
    assert (await wave.disburse(request("11"))).outcome is ProviderOutcome.PENDING  # a 500: ambiguous
    refused = request("00")
    result = await wave.disburse(refused)
    assert (result.outcome, result.failure_code, result.not_accepted) == (
        ProviderOutcome.FAILED,
        "provider_unavailable:breaker_open",
        True,
    )
    assert await ground_truth(simulator.url, refused.payment_id) == []


async def test_a_503_outage_is_ambiguous_and_the_provider_has_nothing(
    simulator: RunningServer, client: httpx.AsyncClient
) -> None:
    wave = gateway(simulator.url, client)
    req = request("00")
    outage = f"{simulator.url}/_sim/providers/wave/outage"
    await client.post(outage, json={"down": True})
    try:
        during = await wave.collect(req)
    finally:
        await client.post(outage, json={"down": False})
    assert (during.outcome, during.not_accepted) == (ProviderOutcome.PENDING, False)
    after = await wave.status(req, ProviderOperation.COLLECT)
    assert (after.outcome, after.failure_code) == (ProviderOutcome.PENDING, "not_found")


async def test_our_key_reused_same_request_same_payout_other_request_never_failed(
    simulator: RunningServer, client: httpx.AsyncClient
) -> None:
    wave = gateway(simulator.url, client)
    payment_id = uuid.uuid4()
    first = await wave.disburse(request("00", 2_000, payment_id=payment_id))
    again = await wave.disburse(request("00", 2_000, payment_id=payment_id))
    assert first == again
    assert first.outcome is ProviderOutcome.SUCCEEDED
    other = await wave.disburse(request("00", 9_999, payment_id=payment_id))
    # Something else sits under this key and may have moved money: pending, never failed.
    assert (other.outcome, other.failure_code) == (ProviderOutcome.PENDING, "idempotency_mismatch")
    assert len(await ground_truth(simulator.url, payment_id)) == 1


async def test_a_reversal_after_success_reads_as_failed_reversed(
    simulator: RunningServer, client: httpx.AsyncClient
) -> None:
    wave = gateway(simulator.url, client)
    req = request("50")
    assert (await wave.collect(req)).outcome is ProviderOutcome.SUCCEEDED
    for _ in range(60):
        result = await wave.status(req, ProviderOperation.COLLECT)
        if result.outcome is ProviderOutcome.FAILED:
            break
        await asyncio.sleep(0.05)
    assert (result.outcome, result.failure_code) == (ProviderOutcome.FAILED, "reversed")


async def test_the_status_of_a_reference_never_sent_is_pending_not_found(
    simulator: RunningServer, client: httpx.AsyncClient
) -> None:
    wave = gateway(simulator.url, client)
    for operation in ProviderOperation:
        result = await wave.status(request("00"), operation)
        assert (result.outcome, result.failure_code) == (ProviderOutcome.PENDING, "not_found")


@dataclass
class Customer:
    kora: Kora
    user_id: uuid.UUID


@pytest.fixture
async def kora(simulator: RunningServer, migrated_url: str, tmp_path: Path) -> AsyncIterator[Kora]:
    settings = settings_for(migrated_url, tmp_path, KORA_PROVIDER_WAVE_URL=simulator.url, KORA_DEFAULT_PROVIDER="wave")
    kora = Kora(settings)
    try:
        yield kora
    finally:
        await kora.aclose()


async def test_kora_moves_money_through_the_configured_wave_provider(kora: Kora) -> None:
    assert kora.providers.names == ("sandbox", "wave")
    registered = await kora.identity.register(phone_number="+2250712000000", password="wave-pass-phrase-42")
    cash_in = ProviderMoveCommand(user_id=registered.user_id, amount=8_000, currency="XOF", idempotency_key="wave-in-1")
    funded = await kora.payments.cash_in(cash_in)
    assert (funded.body["provider"], funded.body["status"]) == ("wave", "CAPTURED")
    cash_out = ProviderMoveCommand(registered.user_id, 3_000, "XOF", "wave-out-1")
    paid = await kora.payments.cash_out(cash_out)
    assert paid.body["status"] == "CAPTURED"
    wallet = await kora.payments.wallet(registered.user_id)
    assert (wallet["balance"], wallet["available_balance"]) == (5_000, 5_000)
    assert (await kora.verify_ledger()).ok
