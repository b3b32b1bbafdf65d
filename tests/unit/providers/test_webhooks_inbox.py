"""The webhook inbox with in-memory receipts: a signed event is applied once; duplicates and
replays change nothing; refusals reach nothing; a MoMo-style callback is only a hint."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kora.kernel import FixedClock, Money
from kora.providers import ProviderOperation, ProviderOutcome, ProviderRequest, ProviderResult
from kora.providers.adapters.momo import momo_callback_reference
from kora.providers.adapters.wave import parse_wave_event
from kora.providers.webhooks import (
    PaymentAtProvider,
    Rejection,
    SignedEvents,
    StatusHints,
    UnknownWebhookSource,
    WebhookInbox,
    WebhookReceipt,
    WebhookRejected,
    signature_header,
)

SECRET = "whsec_unit_test"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class InMemoryWebhookReceipts:
    """The receipts port in memory (the SQL one is tested against both engines)."""

    def __init__(self) -> None:
        self.receipts: dict[tuple[str, str], WebhookReceipt] = {}

    async def find(self, provider: str, event_id: str) -> WebhookReceipt | None:
        return self.receipts.get((provider, event_id))

    async def add(self, receipt: WebhookReceipt) -> bool:
        return self.receipts.setdefault((receipt.provider, receipt.event_id), receipt) is receipt

    async def purge(self, *, received_before: datetime) -> int:
        old = [key for key, receipt in self.receipts.items() if receipt.received_at < received_before]
        for key in old:
            del self.receipts[key]
        return len(old)


@dataclass
class Answers:
    known: set[uuid.UUID] = field(default_factory=set)
    recorded: list[tuple[uuid.UUID, ProviderResult, str]] = field(default_factory=list)

    async def record_provider_answer(
        self, payment_id: uuid.UUID, result: ProviderResult, *, provider: str, correlation_id: str | None = None
    ) -> bool:
        if payment_id not in self.known:
            return False
        self.recorded.append((payment_id, result, provider))
        return True


@dataclass
class Metrics:
    received: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def webhook_received(self, provider: str, outcome: str) -> None:
        self.received.append((provider, outcome))

    def webhook_rejected(self, provider: str, reason: str) -> None:
        self.rejected.append((provider, reason))


@dataclass
class StatusGateway:
    """Answers status queries from a script (the only thing a hint may lead to)."""

    answer: ProviderResult
    asked: list[uuid.UUID] = field(default_factory=list)
    name: str = "momo"

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        raise AssertionError("a webhook never moves money")

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        raise AssertionError("a webhook never moves money")

    async def status(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        self.asked.append(request.payment_id)
        return self.answer


@dataclass
class World:
    inbox: WebhookInbox
    clock: FixedClock
    answers: Answers
    receipts: InMemoryWebhookReceipts
    metrics: Metrics
    gateway: StatusGateway
    payments: dict[uuid.UUID, PaymentAtProvider]


@pytest.fixture
def world() -> World:
    clock = FixedClock(START)
    answers, receipts, metrics = Answers(), InMemoryWebhookReceipts(), Metrics()
    gateway = StatusGateway(ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref="1000000001"))
    payments: dict[uuid.UUID, PaymentAtProvider] = {}

    async def lookup(payment_id: uuid.UUID, provider: str) -> PaymentAtProvider | None:
        return payments.get(payment_id) if provider == "momo" else None

    inbox = WebhookInbox(
        {"wave": SignedEvents((SECRET,), parse_wave_event), "momo": StatusHints(gateway, momo_callback_reference)},
        receipts=receipts,
        answers=answers,
        payments=lookup,
        clock=clock,
        metrics=metrics,
    )
    return World(inbox, clock, answers, receipts, metrics, gateway, payments)


def event(payment_id: uuid.UUID, status: str = "succeeded", *, event_id: str = "EV_1") -> bytes:
    data: dict[str, Any] = {"id": "cos-1", "client_reference": str(payment_id), "status": status, "currency": "XOF"}
    if status == "failed":
        data["last_payment_error"] = {"code": "insufficient-funds", "message": "The payment failed."}
    return json.dumps({"id": event_id, "type": "checkout.session.completed", "data": data}).encode()


def signed(body: bytes, at: datetime, secret: str = SECRET) -> dict[str, str]:
    return {"Wave-Signature": signature_header(secret, int(at.timestamp()), body)}


async def test_a_signed_event_is_applied_once_with_a_receipt(world: World) -> None:
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment)
    assert await world.inbox.receive("wave", signed(body, START), body) == "applied"
    [(recorded_id, result, provider)] = world.answers.recorded
    assert (recorded_id, result.outcome, result.provider_ref, provider) == (
        payment,
        ProviderOutcome.SUCCEEDED,
        "cos-1",
        "wave",
    )
    receipt = world.receipts.receipts[("wave", "EV_1")]
    assert (receipt.outcome, receipt.payment_id, receipt.received_at) == ("applied", payment, START)
    assert world.metrics.received == [("wave", "applied")]


async def test_a_re_signed_copy_is_a_duplicate_and_a_byte_identical_one_a_replay(world: World) -> None:
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment)
    first = signed(body, START)
    await world.inbox.receive("wave", first, body)
    world.clock.advance(timedelta(seconds=30))
    assert await world.inbox.receive("wave", signed(body, world.clock.now()), body) == "duplicate"
    assert await world.inbox.receive("wave", first, body) == "replayed"
    assert len(world.answers.recorded) == 1
    assert world.metrics.received == [("wave", "applied"), ("wave", "duplicate"), ("wave", "replayed")]


async def test_a_copy_that_lost_the_race_for_the_receipt_is_a_duplicate(world: World) -> None:
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment)
    # Another process stored its receipt between our look-up and ours.
    original_find = world.receipts.find

    async def find_then_race(provider: str, event_id: str) -> WebhookReceipt | None:
        found = await original_find(provider, event_id)
        await world.receipts.add(WebhookReceipt(provider, event_id, "0" * 64, START, "applied", payment))
        return found

    world.receipts.find = find_then_race  # type: ignore[method-assign]
    assert await world.inbox.receive("wave", signed(body, START), body) == "duplicate"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, Rejection.MISSING_SIGNATURE),
        ({"Wave-Signature": "t=1,v1=zz"}, Rejection.MALFORMED_SIGNATURE),
        ("forged", Rejection.FORGED),
        ("stale", Rejection.STALE),
        ("future", Rejection.FUTURE),
    ],
)
async def test_refused_deliveries_reach_nothing(world: World, headers: Any, reason: Rejection) -> None:
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment)
    if headers == "forged":
        headers = signed(body, START, secret="whsec_attacker")
    elif headers == "stale":
        headers = signed(body, START - timedelta(minutes=6))
    elif headers == "future":
        headers = signed(body, START + timedelta(minutes=6))
    with pytest.raises(WebhookRejected) as caught:
        await world.inbox.receive("wave", headers, body)
    assert caught.value.reason is reason
    assert world.answers.recorded == []
    assert world.receipts.receipts == {}
    assert world.metrics.rejected == [("wave", reason.value)]


async def test_a_forged_copy_of_a_known_event_is_still_refused(world: World) -> None:
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment)
    await world.inbox.receive("wave", signed(body, START), body)
    reversed_body = event(payment, "reversed")  # same event id, other content, wrong key
    with pytest.raises(WebhookRejected):
        await world.inbox.receive("wave", signed(reversed_body, START, secret="nope"), reversed_body)
    assert len(world.answers.recorded) == 1


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": "checkout.session.completed"}'])
async def test_an_authentic_body_that_is_not_an_event_is_malformed(world: World, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await world.inbox.receive("wave", signed(body, START), body)
    assert caught.value.reason is Rejection.MALFORMED_EVENT


async def test_events_about_nothing_of_ours_are_acknowledged_and_ignored(world: World) -> None:
    unknown = event(uuid.uuid4(), event_id="EV_2")
    assert await world.inbox.receive("wave", signed(unknown, START), unknown) == "unknown_payment"
    other = json.dumps({"id": "EV_3", "type": "merchant.updated", "data": {}}).encode()
    assert await world.inbox.receive("wave", signed(other, START), other) == "ignored"
    foreign = json.dumps({"id": "EV_4", "type": "payout.succeeded", "data": {"client_reference": "x"}}).encode()
    assert await world.inbox.receive("wave", signed(foreign, START), foreign) == "ignored"
    assert world.answers.recorded == []


async def test_a_processing_event_records_nothing(world: World) -> None:
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment, "processing")
    assert await world.inbox.receive("wave", signed(body, START), body) == "pending"
    assert world.answers.recorded == []


async def test_a_failure_carries_the_providers_reason(world: World) -> None:
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment, "failed")
    await world.inbox.receive("wave", signed(body, START), body)
    [(_, result, _)] = world.answers.recorded
    assert (result.outcome, result.failure_code) == (ProviderOutcome.FAILED, "insufficient_funds")


async def test_an_unknown_provider_is_refused(world: World) -> None:
    with pytest.raises(UnknownWebhookSource):
        await world.inbox.receive("card", {}, b"{}")


def pending_at_momo(world: World, *, unresolved: bool = True) -> uuid.UUID:
    payment = uuid.uuid4()
    request = ProviderRequest(payment, Money(500, "XOF"), account_ref="+2250700000000", correlation_id=None)
    world.payments[payment] = PaymentAtProvider(request, ProviderOperation.COLLECT, unresolved)
    world.answers.known.add(payment)
    return payment


async def test_a_callback_is_a_hint_the_status_api_answers(world: World) -> None:
    payment = pending_at_momo(world)
    # The body claims a failure; only the provider's status answer counts.
    body = json.dumps({"externalId": str(payment), "status": "FAILED", "reason": "lies"}).encode()
    assert await world.inbox.receive("momo", {}, body) == "applied"
    assert world.gateway.asked == [payment]
    [(_, result, provider)] = world.answers.recorded
    assert (result.outcome, provider) == (ProviderOutcome.SUCCEEDED, "momo")


async def test_a_callback_for_a_final_or_unknown_payment_asks_nobody(world: World) -> None:
    final = pending_at_momo(world, unresolved=False)
    for payment_id in (final, uuid.uuid4()):
        body = json.dumps({"externalId": str(payment_id)}).encode()
        await world.inbox.receive("momo", {}, body)
    assert world.gateway.asked == []
    assert world.answers.recorded == []
    assert world.metrics.received == [("momo", "already_final"), ("momo", "unknown_payment")]


async def test_a_callback_while_the_provider_still_decides_records_nothing(world: World) -> None:
    payment = pending_at_momo(world)
    world.gateway.answer = ProviderResult(ProviderOutcome.PENDING)
    assert await world.inbox.receive("momo", {}, json.dumps({"externalId": str(payment)}).encode()) == "pending"
    assert world.answers.recorded == []


async def test_a_callback_that_names_no_payment_is_malformed(world: World) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await world.inbox.receive("momo", {}, b'{"externalId": "not-a-uuid"}')
    assert caught.value.reason is Rejection.MALFORMED_EVENT


async def test_old_receipts_are_purged_on_the_way(world: World) -> None:
    old = WebhookReceipt("wave", "EV_old", "0" * 64, START - timedelta(days=8), "applied")
    await world.receipts.add(old)
    payment = uuid.uuid4()
    world.answers.known.add(payment)
    body = event(payment)
    await world.inbox.receive("wave", signed(body, START), body)
    assert set(world.receipts.receipts) == {("wave", "EV_1")}


def test_receipts_must_outlive_the_tolerance_window() -> None:
    async def lookup(payment_id: uuid.UUID, provider: str) -> PaymentAtProvider | None:
        return None

    with pytest.raises(ValueError, match="twice the tolerance"):
        WebhookInbox(
            {},
            receipts=InMemoryWebhookReceipts(),
            answers=Answers(),
            payments=lookup,
            clock=FixedClock(START),
            tolerance_seconds=600,
            retention=timedelta(minutes=15),
        )
