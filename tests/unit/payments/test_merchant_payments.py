"""Merchant payments and refunds on the in-memory fakes: the three-legged posting with the fee,
refunds up to what was paid (the fee is kept), refusals stored against the key and changing no
money, input errors raised before anything is stored, and what a merchant reads."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from kora.ledger import AccountKind
from kora.payments import (
    FeeSchedule,
    IdempotencyKeyReused,
    InvalidFee,
    InvalidReference,
    MerchantPaymentCommand,
    Outcome,
    PaymentStatus,
    PaymentType,
    RefundCommand,
    RefundReason,
    TransferCommand,
)
from kora.payments.service.merchant import MerchantPayments
from kora.payments.service.transfers import Transfers
from tests.fakes import Harness, RecordingPaymentMetrics, make_service

PAY_KEY = "merchant-pay-0001"


@dataclasses.dataclass
class FeeRecordingMetrics(RecordingPaymentMetrics):
    def fee_collected(self, currency: str, amount: int) -> None:
        self.calls.append(("fee_collected", (currency, amount)))


@dataclasses.dataclass
class World:
    service: MerchantPayments
    h: Harness
    customer: uuid.UUID
    merchant: uuid.UUID
    merchant_account: uuid.UUID

    def pay(self, amount: int = 10_000, **changes: Any) -> MerchantPaymentCommand:
        values: dict[str, Any] = {
            "user_id": self.customer,
            "merchant_id": self.merchant_account,
            "amount": amount,
            "currency": "XOF",
            "idempotency_key": PAY_KEY,
            "reference": "order-42",
            "correlation_id": "corr-1",
        }
        values.update(changes)
        return MerchantPaymentCommand(**values)

    def refund(self, payment_id: str, amount: int, key: str, **changes: Any) -> RefundCommand:
        values: dict[str, Any] = {
            "merchant_user_id": self.merchant,
            "payment_id": uuid.UUID(payment_id),
            "amount": amount,
            "idempotency_key": key,
            "correlation_id": "corr-2",
        }
        values.update(changes)
        return RefundCommand(**values)

    async def balances(self) -> tuple[int, int, int]:
        """(customer wallet, merchant account, fee revenue), posted."""
        customer = await self.h.wallet_balance(self.customer)
        merchant = await self.h.balance_of(self.merchant_account)
        revenue = await self.h.balance_of(self.h.account_id(AccountKind.FEE_REVENUE, "kora"))
        return (
            customer.posted if customer else 0,
            merchant.posted if merchant else 0,
            revenue.posted if revenue else 0,
        )


async def make_world(fees: FeeSchedule | None = None) -> World:
    _, h = make_service()
    h.metrics = FeeRecordingMetrics()
    service = MerchantPayments(
        uow_factory=h.uow_factory,
        directory=h.directory,
        providers=h.providers,
        clock=h.clock,
        config=h.config,
        metrics=h.metrics,
        fees=fees or FeeSchedule(bps=100),
    )
    customer, merchant = h.new_user(), h.new_user()
    await h.fund(customer, 50_000)
    account = await service.open_merchant_account(merchant)
    return World(service, h, customer, merchant, account)


@pytest.fixture
async def world() -> World:
    return await make_world()


# ---------------------------------------------------------------- paying a merchant
async def test_a_merchant_payment_splits_the_amount_between_merchant_and_fee_revenue(world: World) -> None:
    w = world
    result = await w.service.pay_merchant(w.pay(10_000))
    assert (result.outcome, result.replayed) == (Outcome.SUCCEEDED, False)
    body = result.body
    assert (body["type"], body["status"], body["amount"], body["fee"]) == ("merchant", "SETTLED", 10_000, 100)
    assert body["reference"] == "order-42"
    assert body["payee_wallet_id"] == str(w.merchant_account)
    assert [c["status"] for c in body["status_history"]] == ["INITIATED", "AUTHORIZED", "CAPTURED", "SETTLED"]
    assert await w.balances() == (40_000, 9_900, 100)

    (payment,) = w.h.stored_payments()
    assert (payment.type, payment.fee, payment.captured_amount) == (PaymentType.MERCHANT, 100, 10_000)
    assert (payment.merchant_reference, payment.provider_ref) == ("order-42", None)  # its own column
    assert (payment.payer_user_id, payment.payee_user_id) == (w.customer, w.merchant)
    assert payment.refundable == 10_000
    assert w.h.transaction_kinds(payment.id) == ["merchant"]
    assert w.h.verify().ok
    assert "payment.merchant.settled" in w.h.audit_actions()
    assert w.h.metrics.named("fee_collected") == [("XOF", 100)]
    assert ("merchant", "SETTLED") in w.h.metrics.named("payment_finished")


async def test_a_payment_stored_with_its_reference_in_provider_ref_still_shows_it(world: World) -> None:
    w = world
    paid = (await w.service.pay_merchant(w.pay(2_000))).body
    stored = w.h.db.payments.payments[uuid.UUID(paid["id"])]
    stored.provider_ref, stored.merchant_reference = "order-42", None  # as written before merchant_reference

    items, _ = await w.service.merchant_payments(w.merchant, limit=10, cursor=None)
    assert [i["reference"] for i in items] == ["order-42"]


async def test_without_a_fee_the_merchant_gets_everything() -> None:
    w = await make_world(FeeSchedule(bps=0))
    result = await w.service.pay_merchant(w.pay(10_000))
    assert result.body["fee"] == 0
    assert await w.balances() == (40_000, 10_000, 0)
    assert w.h.metrics.named("fee_collected") == []
    assert w.h.verify().ok


async def test_a_retry_is_replayed_and_another_request_with_the_key_refused(world: World) -> None:
    w = world
    first = await w.service.pay_merchant(w.pay(10_000))
    before = w.h.contents()
    again = await w.service.pay_merchant(w.pay(10_000, correlation_id="corr-retry"))
    assert (again.replayed, again.body) == (True, first.body)
    for changed in (w.pay(10_001), w.pay(10_000, reference="order-43"), w.pay(10_000, reference=None)):
        with pytest.raises(IdempotencyKeyReused):
            await w.service.pay_merchant(changed)
    assert w.h.contents() == before
    assert await w.balances() == (40_000, 9_900, 100)


@pytest.mark.parametrize("target", ["random", "wallet"])
async def test_paying_something_that_is_not_a_merchant_is_refused_and_stored(world: World, target: str) -> None:
    w = world
    other = w.h.new_user()
    await w.h.fund(other, 1)
    merchant_id = uuid.uuid4() if target == "random" else w.h.wallet_id(other)
    result = await w.service.pay_merchant(w.pay(1_000, merchant_id=merchant_id))
    assert (result.outcome, result.body["code"]) == (Outcome.FAILED, "recipient_not_found")
    assert await w.balances() == (50_000, 0, 0)
    assert w.h.stored_payments() == []
    replay = await w.service.pay_merchant(w.pay(1_000, merchant_id=merchant_id))
    assert (replay.replayed, replay.body) == (True, result.body)
    assert "payment.merchant.refused" in w.h.audit_actions()


async def test_a_merchant_cannot_pay_itself(world: World) -> None:
    w = world
    await w.h.fund(w.merchant, 1_000)
    result = await w.service.pay_merchant(w.pay(500, user_id=w.merchant))
    assert result.body["code"] == "same_wallet"


async def test_insufficient_funds_are_refused_and_nothing_moves(world: World) -> None:
    w = world
    result = await w.service.pay_merchant(w.pay(50_001))
    assert (result.outcome, result.body["code"]) == (Outcome.FAILED, "insufficient_funds")
    assert await w.balances() == (50_000, 0, 0)
    assert w.h.stored_payments() == []


@pytest.mark.parametrize("reference", ["", " order", "order 42", "x" * 65, "commande-é"])
async def test_a_malformed_reference_is_refused_before_anything_is_stored(world: World, reference: str) -> None:
    w = world
    before = w.h.contents()
    with pytest.raises(InvalidReference):
        await w.service.pay_merchant(w.pay(1_000, reference=reference))
    assert w.h.contents() == before


async def test_an_amount_that_does_not_cover_the_fee_is_refused_before_anything_is_stored() -> None:
    w = await make_world(FeeSchedule(bps=100, minimum=50))
    before = w.h.contents()
    with pytest.raises(InvalidFee):
        await w.service.pay_merchant(w.pay(50))
    assert w.h.contents() == before
    assert (await w.service.pay_merchant(w.pay(51))).body["fee"] == 50


# ---------------------------------------------------------------- refunds
async def test_partial_then_repeated_refunds_up_to_the_amount_paid(world: World) -> None:
    w = world
    paid = (await w.service.pay_merchant(w.pay(10_000))).body
    await w.service.pay_merchant(w.pay(5_000, idempotency_key="merchant-pay-0002"))  # covers the kept fee
    assert await w.balances() == (35_000, 14_850, 150)

    first = await w.service.refund(w.refund(paid["id"], 4_000, "refund-key-0001"))
    assert (first.outcome, first.body["type"], first.body["status"]) == (Outcome.SUCCEEDED, "refund", "SETTLED")
    assert (first.body["parent_id"], first.body["amount"], first.body["fee"]) == (paid["id"], 4_000, 0)
    assert first.body["payer_wallet_id"] == str(w.merchant_account)
    assert first.body["payee_wallet_id"] == str(w.h.wallet_id(w.customer))
    assert await w.balances() == (39_000, 10_850, 150)

    over = await w.service.refund(w.refund(paid["id"], 6_001, "refund-key-0002"))
    assert (over.outcome, over.body["code"]) == (Outcome.FAILED, "refund_not_allowed")
    assert await w.balances() == (39_000, 10_850, 150)

    rest = await w.service.refund(w.refund(paid["id"], 6_000, "refund-key-0003"))
    assert rest.outcome is Outcome.SUCCEEDED
    # The fee is kept: refunding all 10 000 cost the merchant 10 000, though it was credited 9 900.
    assert await w.balances() == (45_000, 4_850, 150)
    nothing_left = await w.service.refund(w.refund(paid["id"], 1, "refund-key-0004"))
    assert nothing_left.body["code"] == "refund_not_allowed"

    original = next(p for p in w.h.stored_payments() if str(p.id) == paid["id"])
    assert (original.refunded_amount, original.refundable, original.status) == (10_000, 0, PaymentStatus.SETTLED)
    refunds = [p for p in w.h.stored_payments() if p.type is PaymentType.REFUND]
    assert sorted(p.money.amount for p in refunds) == [4_000, 6_000]
    assert all(p.parent_id == original.id and p.captured_amount == p.money.amount for p in refunds)
    assert all(w.h.transaction_kinds(p.id) == ["refund"] for p in refunds)
    assert w.h.verify().ok
    actions = w.h.audit_actions()
    assert actions.count("payment.refund.settled") == 2
    assert actions.count("payment.merchant.refunded") == 2
    assert actions.count("payment.refund.refused") == 2


async def test_a_refund_retry_is_replayed_without_moving_money(world: World) -> None:
    w = world
    paid = (await w.service.pay_merchant(w.pay(10_000))).body
    first = await w.service.refund(w.refund(paid["id"], 1_000, "refund-key-0001"))
    before = w.h.contents()
    again = await w.service.refund(w.refund(paid["id"], 1_000, "refund-key-0001", correlation_id="retry"))
    assert (again.replayed, again.body) == (True, first.body)
    with pytest.raises(IdempotencyKeyReused):
        await w.service.refund(w.refund(paid["id"], 1_000, "refund-key-0001", reason=RefundReason.DUPLICATE))
    assert w.h.contents() == before


async def test_a_merchant_short_of_funds_cannot_refund(world: World) -> None:
    w = world
    paid = (await w.service.pay_merchant(w.pay(10_000))).body
    result = await w.service.refund(w.refund(paid["id"], 10_000, "refund-key-0001"))
    assert (result.outcome, result.body["code"]) == (Outcome.FAILED, "insufficient_funds")
    assert await w.balances() == (40_000, 9_900, 100)
    original = next(p for p in w.h.stored_payments() if str(p.id) == paid["id"])
    assert original.refunded_amount == 0  # the refused refund counted nothing


async def test_only_the_merchant_paid_may_refund(world: World) -> None:
    w = world
    paid = (await w.service.pay_merchant(w.pay(10_000))).body
    other_merchant = w.h.new_user()
    await w.service.open_merchant_account(other_merchant)
    for cmd in (
        w.refund(paid["id"], 100, "refund-key-0001", merchant_user_id=other_merchant),
        w.refund(paid["id"], 100, "refund-key-0002", merchant_user_id=w.customer),
        w.refund(str(uuid.uuid4()), 100, "refund-key-0003"),
    ):
        result = await w.service.refund(cmd)
        assert (result.outcome, result.body["code"]) == (Outcome.FAILED, "payment_not_found")
    assert await w.balances() == (40_000, 9_900, 100)


async def test_only_merchant_payments_are_refunded(world: World) -> None:
    w = world
    transfers = Transfers(
        uow_factory=w.h.uow_factory, directory=w.h.directory, providers=w.h.providers, clock=w.h.clock
    )
    await w.h.fund(w.merchant, 1_000)
    p2p = await transfers.transfer(
        TransferCommand(
            user_id=w.merchant,
            amount=100,
            currency="XOF",
            idempotency_key="p2p-key-00001",
            recipient_wallet_id=w.h.wallet_id(w.customer),
        )
    )
    assert p2p.outcome is Outcome.SUCCEEDED
    result = await w.service.refund(w.refund(p2p.body["id"], 100, "refund-key-0001"))
    assert result.body["code"] == "payment_not_found"


# ---------------------------------------------------------------- the merchant's reads
async def test_the_merchant_sees_its_balance_and_account_id(world: World) -> None:
    w = world
    await w.service.pay_merchant(w.pay(10_000))
    assert await w.service.merchant_balance(w.merchant) == {
        "merchant_id": str(w.merchant_account),
        "currency": "XOF",
        "balance": 9_900,
        "available_balance": 9_900,
    }
    newcomer = w.h.new_user()
    opened = await w.service.merchant_balance(newcomer)
    assert opened["balance"] == 0
    assert opened["merchant_id"] == str(w.h.account_id(AccountKind.MERCHANT, str(newcomer)))


async def test_the_merchant_lists_payments_received_and_refunds_made_page_by_page(world: World) -> None:
    w = world
    ids = []
    for i in range(5):
        ids.append((await w.service.pay_merchant(w.pay(1_000 + i, idempotency_key=f"merchant-pay-{i:04d}"))).body["id"])
    refund = (await w.service.refund(w.refund(ids[0], 500, "refund-key-0001"))).body["id"]
    # The merchant's own purchase elsewhere is not part of its merchant activity.
    other = w.h.new_user()
    other_account = await w.service.open_merchant_account(other)
    await w.h.fund(w.merchant, 5_000)
    await w.service.pay_merchant(
        w.pay(700, user_id=w.merchant, merchant_id=other_account, idempotency_key="own-purchase-1")
    )

    seen: list[str] = []
    cursor: uuid.UUID | None = None
    pages = 0
    while True:
        items, next_cursor = await w.service.merchant_payments(w.merchant, limit=2, cursor=cursor)
        seen += [item["id"] for item in items]
        pages += 1
        if next_cursor is None:
            break
        cursor = uuid.UUID(next_cursor)
    assert seen == [refund, *reversed(ids)]
    assert pages <= 4
    items, _ = await w.service.merchant_payments(other, limit=10, cursor=None)
    assert [(i["type"], i["amount"]) for i in items] == [("merchant", 700)]
