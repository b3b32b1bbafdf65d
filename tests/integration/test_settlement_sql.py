"""The settlement step on SQLite and PostgreSQL: cash-ins and cash-outs captured through the
sandbox settle once into the provider's settlement bank account; the ledger's unique
(payment, step) index refuses a second posting; two runs at once on PostgreSQL settle each
payment once; the backlog query reports what is overdue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kora.bootstrap import Kora
from kora.kernel import FixedClock, Money
from kora.ledger import AccountKind, Direction, LedgerStorageRefused, Leg
from kora.payments import IdempotencyRequestInProgress, PaymentResult, ProviderMoveCommand
from kora.payments.service import settlement as settlement_module
from kora.providers.adapters.sandbox import SandboxGateway
from tests.fakes import ScriptedGateway, failed
from tests.support.api import new_phone
from tests.support.api import test_settings as settings_for

TODAY = date(2026, 1, 1)  # FixedClock() starts at 2026-01-01 12:00 UTC


@pytest.fixture
async def kora(migrated_url: str, tmp_path: Path) -> AsyncIterator[Kora]:
    declining = ScriptedGateway(answers=[failed("PAYER_NOT_FOUND")], name="momo")
    app = Kora(settings_for(migrated_url, tmp_path), clock=FixedClock(), providers=[SandboxGateway(), declining])
    try:
        yield app
    finally:
        await app.aclose()


async def a_customer(kora: Kora) -> uuid.UUID:
    registered = await kora.identity.register(phone_number=new_phone(), password="settle-pass-phrase-1")
    return registered.user_id


async def move(kora: Kora, user: uuid.UUID, kind: str, amount: int, provider: str | None = None) -> dict[str, Any]:
    cmd = ProviderMoveCommand(user, amount, "XOF", uuid.uuid4().hex, provider=provider)
    result = await (kora.payments.cash_in(cmd) if kind == "in" else kora.payments.cash_out(cmd))
    return result.body


async def settle(kora: Kora, **kwargs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"actor": "ops", "reference": "SBX-STMT-2026-01-01"}
    values.update(kwargs)
    result: PaymentResult = await kora.payments.settle(
        values.pop("provider", "sandbox"), values.pop("currency", "XOF"), **values
    )
    return result.body


async def posted(kora: Kora, kind: AccountKind, provider: str = "sandbox") -> int:
    async with kora.unit_of_work() as uow:
        account = await uow.ledger.system_account(kind, "XOF", provider)
        return (await uow.ledger.balance(account.id)).posted


async def statuses(kora: Kora, *ids: str) -> list[str]:
    async with kora.unit_of_work() as uow:
        return [(await uow.payments.get(uuid.UUID(i))).status.value for i in ids]  # type: ignore[union-attr]


async def settlement_postings(kora: Kora) -> dict[str, int]:
    async with kora.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT CAST(payment_id AS VARCHAR), count(*) FROM ledger_transactions "
                "WHERE kind LIKE '%.settlement' GROUP BY payment_id"
            )
        )
        return {str(uuid.UUID(str(r[0]))): int(r[1]) for r in rows}


async def test_cash_in_and_cash_out_settle_once_into_the_bank(kora: Kora) -> None:
    alice = await a_customer(kora)
    cash_in = await move(kora, alice, "in", 10_000)
    cash_out = await move(kora, alice, "out", 3_000)
    declined = await move(kora, alice, "in", 700, provider="momo")
    assert (cash_in["status"], cash_out["status"], declined["status"]) == ("CAPTURED", "CAPTURED", "FAILED")
    assert await posted(kora, AccountKind.PROVIDER_CLEARING) == 7_000
    kora.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]

    body = await settle(kora, through=TODAY)

    assert (body["settled"], body["already_settled"], body["rejected"]) == (2, 0, 0)
    assert body["totals"]["net"] == 7_000
    assert await posted(kora, AccountKind.PROVIDER_CLEARING) == 0
    assert await posted(kora, AccountKind.SETTLEMENT_BANK) == 7_000
    assert (await kora.payments.wallet(alice))["balance"] == 7_000
    assert await statuses(kora, cash_in["id"], cash_out["id"]) == ["SETTLED", "SETTLED"]
    viewed = await kora.payments.get_payment(uuid.UUID(cash_in["id"]), viewer=alice, privileged=False)
    assert viewed["status_history"][-1]["reason"] == "settled by provider report SBX-STMT-2026-01-01"

    # Again, by day and by id: nothing moves twice.
    again = await settle(kora, through=TODAY)
    assert (again["settled"], again["outcomes"]) == (0, [])
    by_id = await settle(kora, payment_ids=[uuid.UUID(cash_in["id"]), uuid.UUID(declined["id"])])
    assert {o["payment_id"]: (o["outcome"], o.get("reason")) for o in by_id["outcomes"]} == {
        cash_in["id"]: ("already_settled", None),
        declined["id"]: ("rejected", "other_provider"),
    }
    momo = await settle(kora, provider="momo", payment_ids=[uuid.UUID(declined["id"])])
    assert momo["outcomes"] == [{"payment_id": declined["id"], "outcome": "rejected", "reason": "status_failed"}]
    assert await posted(kora, AccountKind.SETTLEMENT_BANK) == 7_000
    assert await settlement_postings(kora) == {cash_in["id"]: 1, cash_out["id"]: 1}

    report = await kora.verify_ledger()
    assert report.ok, report.violations
    assert (await kora.verify_audit()).ok


async def test_partial_selection_settles_only_the_named_payments(kora: Kora) -> None:
    alice = await a_customer(kora)
    first, second, third = [await move(kora, alice, "in", amount) for amount in (1_000, 2_000, 4_000)]

    body = await settle(kora, payment_ids=[uuid.UUID(first["id"]), uuid.UUID(third["id"])])

    assert (body["settled"], body["totals"]["collections"]) == (2, {"count": 2, "amount": 5_000})
    assert await statuses(kora, first["id"], second["id"], third["id"]) == ["SETTLED", "CAPTURED", "SETTLED"]
    assert await posted(kora, AccountKind.PROVIDER_CLEARING) == 2_000
    assert await posted(kora, AccountKind.SETTLEMENT_BANK) == 5_000
    assert (await kora.verify_ledger()).ok


async def test_the_ledger_refuses_a_second_settlement_posting_and_the_run_names_it(kora: Kora) -> None:
    alice = await a_customer(kora)
    settled, other = await move(kora, alice, "in", 1_000), await move(kora, alice, "in", 2_000)
    await settle(kora, payment_ids=[uuid.UUID(settled["id"])])
    payment_id = uuid.UUID(settled["id"])

    async with kora.unit_of_work() as uow:  # the database itself refuses a second posting
        clearing = await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, "XOF", "sandbox")
        bank = await uow.ledger.system_account(AccountKind.SETTLEMENT_BANK, "XOF", "sandbox")
        money = Money(1_000, "XOF")
        with pytest.raises(LedgerStorageRefused):
            await uow.ledger.post(
                kind="cash_in.settlement",
                legs=[Leg(clearing.id, Direction.CREDIT, money), Leg(bank.id, Direction.DEBIT, money)],
                payment_id=payment_id,
                correlation_id=None,
            )

    # A payment whose state disagrees with the ledger (CAPTURED, yet already settled there):
    # the run settles the rest of its chunk and reports that one, posting nothing for it.
    async with kora.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE payments SET status = 'CAPTURED' WHERE id = :id"),
            {"id": payment_id.hex if kora.engine.dialect.name == "sqlite" else payment_id},
        )
    body = await settle(kora, payment_ids=[payment_id, uuid.UUID(other["id"])])
    assert {o["payment_id"]: (o["outcome"], o.get("reason")) for o in body["outcomes"]} == {
        settled["id"]: ("rejected", "ledger_refused"),
        other["id"]: ("settled", None),
    }
    assert await settlement_postings(kora) == {settled["id"]: 1, other["id"]: 1}
    assert await posted(kora, AccountKind.SETTLEMENT_BANK) == 3_000
    assert (await kora.verify_ledger()).ok


async def test_the_backlog_reports_what_is_overdue(kora: Kora) -> None:
    alice = await a_customer(kora)
    await move(kora, alice, "in", 10_000)
    await move(kora, alice, "out", 4_000)
    kora.clock.advance(timedelta(days=2))  # type: ignore[attr-defined]  # past J+1
    await move(kora, alice, "in", 500)

    backlog = await kora.payments.settlement_backlog(provider="sandbox", currency="XOF")

    (item,) = backlog["items"]
    assert item["captured"] == {"count": 3, "amount": 14_500}
    assert item["overdue"] == {"count": 2, "amount": 14_000}
    assert item["expected"]["net"] == 10_500 - 4_000
    assert item["oldest_settlement_due"] == "2026-01-02T23:59:59.999999+00:00"
    assert item["oldest_captured_at"] == "2026-01-01T12:00:00+00:00"
    assert _sample(kora, "kora_settlement_overdue_payments", provider="sandbox", currency="XOF") == 2

    kora.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]  # the 3rd has ended
    await settle(kora, through=date(2026, 1, 3))
    await kora.refresh_settlement_backlog()  # what the sweeper loop runs
    assert _sample(kora, "kora_settlement_overdue_payments", provider="sandbox", currency="XOF") == 0
    assert _sample(kora, "kora_settlement_payments_settled_total", provider="sandbox", type="cash_in") == 2


def _sample(kora: Kora, name: str, **labels: str) -> float | None:
    return kora.registry.get_sample_value(name, labels)


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
async def test_two_runs_at_once_settle_each_payment_once(kora: Kora, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement_module, "CHUNK_SIZE", 7)  # many short transactions interleave
    alice = await a_customer(kora)
    ids = [uuid.UUID((await move(kora, alice, "in", 100 + i))["id"]) for i in range(40)]
    total = sum(100 + i for i in range(40))
    kora.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]

    by_day, by_id, same_day = await asyncio.gather(
        settle(kora, through=TODAY, reference="RUN-A"),
        settle(kora, payment_ids=list(reversed(ids)), reference="RUN-B"),
        settle(kora, through=TODAY, reference="RUN-C"),
    )

    assert by_day["settled"] + by_id["settled"] + same_day["settled"] == 40
    assert by_id["settled"] + by_id["already_settled"] == 40
    assert by_id["totals"]["net"] + by_id["totals"]["already_settled"]["net"] == total  # the whole report
    assert sum(r["totals"]["net"] for r in (by_day, by_id, same_day)) == total
    assert await settlement_postings(kora) == {str(i): 1 for i in ids}
    assert await posted(kora, AccountKind.SETTLEMENT_BANK) == total
    assert await posted(kora, AccountKind.PROVIDER_CLEARING) == 0
    assert (await kora.verify_ledger()).ok


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
async def test_one_key_sent_twice_at_once_runs_once(kora: Kora) -> None:
    alice = await a_customer(kora)
    for amount in (1_000, 2_000, 3_000):
        await move(kora, alice, "in", amount)
    kora.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    actor = f"user:{uuid.uuid4()}"

    async def call() -> PaymentResult | Exception:
        try:
            return await kora.payments.settle(
                "sandbox", "XOF", through=TODAY, actor=actor, reference="R-1", idempotency_key="settle-same-key"
            )
        except IdempotencyRequestInProgress as exc:
            return exc

    answers = await asyncio.gather(call(), call())
    results = [a for a in answers if isinstance(a, PaymentResult)]
    assert [r.body["settled"] for r in results if not r.replayed] == [3]
    assert all(r.body == results[0].body for r in results)
    assert await posted(kora, AccountKind.SETTLEMENT_BANK) == 6_000
