"""Reads: a payment is visible to its parties (and to privileged operators) only; lists and
wallet statements page newest first with an opaque cursor."""

from __future__ import annotations

import uuid

import pytest

from kora.kernel import Money
from kora.payments import PaymentNotFound, PaymentsService, ProviderMoveCommand, TransferCommand
from tests.fakes import Harness, make_service

BOB_PHONE = "+221770000002"


async def a_transfer(service: PaymentsService, payer: uuid.UUID, amount: int, key: str) -> str:
    result = await service.transfer(
        TransferCommand(
            user_id=payer,
            amount=amount,
            currency="XOF",
            idempotency_key=key,
            recipient_phone_number=BOB_PHONE,
        )
    )
    assert result.body["status"] == "SETTLED", result.body
    return str(result.body["id"])


async def setup() -> tuple[PaymentsService, Harness, uuid.UUID, uuid.UUID]:
    service, h = make_service()
    alice, bob = h.new_user(), h.new_user(phone=BOB_PHONE)
    await h.fund(alice, 100_000)
    return service, h, alice, bob


async def test_a_payment_is_visible_to_its_parties_only() -> None:
    service, _, alice, bob = await setup()
    payment_id = uuid.UUID(await a_transfer(service, alice, 100, "read-key-0001"))
    for viewer in (alice, bob):
        view = await service.get_payment(payment_id, viewer=viewer, privileged=False)
        assert view["id"] == str(payment_id)
    stranger = uuid.uuid4()
    with pytest.raises(PaymentNotFound) as caught:
        await service.get_payment(payment_id, viewer=stranger, privileged=False)
    assert caught.value.code == "payment_not_found"
    assert (await service.get_payment(payment_id, viewer=stranger, privileged=True))["status"] == "SETTLED"


async def test_an_unknown_payment_is_not_found_even_for_operators() -> None:
    service, _, alice, _ = await setup()
    for privileged in (False, True):
        with pytest.raises(PaymentNotFound):
            await service.get_payment(uuid.uuid4(), viewer=alice, privileged=privileged)


async def test_the_stored_view_matches_the_answer() -> None:
    service, _, alice, _ = await setup()
    result = await service.transfer(
        TransferCommand(
            user_id=alice,
            amount=5,
            currency="XOF",
            idempotency_key="read-key-0002",
            recipient_phone_number=BOB_PHONE,
        )
    )
    assert await service.get_payment(uuid.UUID(result.body["id"]), viewer=alice, privileged=False) == result.body


@pytest.mark.parametrize(("count", "limit"), [(5, 2), (4, 2), (3, 5), (1, 1), (0, 3)])
async def test_list_payments_pages_newest_first_with_a_cursor(count: int, limit: int) -> None:
    service, h, alice, bob = await setup()
    made = [await a_transfer(service, alice, 10 + i, f"list-key-{i:04d}") for i in range(count)]
    # A payment Alice is no party to stays out of her list.
    carol = h.new_user()
    await h.fund(carol, 100)
    await a_transfer(service, carol, 1, "list-key-carol")

    seen: list[str] = []
    pages = 0
    cursor: uuid.UUID | None = None
    while True:
        page, next_cursor = await service.list_payments(alice, limit=limit, cursor=cursor)
        pages += 1
        assert len(page) <= limit
        seen.extend(p["id"] for p in page)
        if next_cursor is None:
            break
        assert next_cursor == page[-1]["id"]
        cursor = uuid.UUID(next_cursor)
    assert seen == list(reversed(made))
    assert pages == max(1, -(-count // limit))
    bob_page, _ = await service.list_payments(bob, limit=100, cursor=None)
    assert len(bob_page) == count + 1
    assert await service.list_payments(uuid.uuid4(), limit=10, cursor=None) == ([], None)


async def test_cash_moves_are_listed_for_their_customer() -> None:
    service, _, alice, _ = await setup()
    result = await service.cash_in(
        ProviderMoveCommand(user_id=alice, amount=100, currency="XOF", idempotency_key="cash-key-0001")
    )
    page, _ = await service.list_payments(alice, limit=10, cursor=None)
    assert [p["id"] for p in page] == [result.body["id"]]


async def test_wallet_shows_posted_and_available_balances() -> None:
    service, h, alice, _ = await setup()
    async with h.uow_factory() as uow:
        wallet_id = (await uow.ledger.open_wallet(alice, "XOF")).id
        await uow.ledger.place_hold(wallet_id, Money(30_000, "XOF"), payment_id=None)
        await uow.commit()
    assert await service.wallet(alice) == {
        "wallet_id": str(wallet_id),
        "currency": "XOF",
        "balance": 100_000,
        "available_balance": 70_000,
    }


async def test_a_new_customer_gets_an_empty_wallet() -> None:
    service, h = make_service()
    newcomer = h.new_user()
    view = await service.wallet(newcomer)
    assert (view["balance"], view["available_balance"], view["currency"]) == (0, 0, "XOF")
    assert view["wallet_id"] == str(h.wallet_id(newcomer))


async def test_wallet_entries_page_newest_first() -> None:
    service, h, alice, bob = await setup()
    ids = [await a_transfer(service, alice, amount, f"entry-key-{amount}") for amount in (100, 200, 300)]
    page, cursor = await service.wallet_entries(alice, limit=2, cursor=None)
    assert [(e["sequence"], e["amount"], e["balance_after"]) for e in page] == [
        (4, -300, 99_400),
        (3, -200, 99_700),
    ]
    assert [e["payment_id"] for e in page] == [ids[2], ids[1]]
    assert all(e["direction"] == "debit" and e["currency"] == "XOF" for e in page)
    assert cursor == "3"
    page, cursor = await service.wallet_entries(alice, limit=2, cursor=int(cursor))
    assert [(e["sequence"], e["amount"], e["balance_after"]) for e in page] == [
        (2, -100, 99_900),
        (1, 100_000, 100_000),
    ]
    assert page[1]["payment_id"] is None  # the test funding has no payment
    assert cursor is None
    bob_page, bob_cursor = await service.wallet_entries(bob, limit=10, cursor=None)
    assert [(e["sequence"], e["amount"], e["direction"]) for e in bob_page] == [
        (3, 300, "credit"),
        (2, 200, "credit"),
        (1, 100, "credit"),
    ]
    assert bob_cursor is None
    assert h.verify().ok
