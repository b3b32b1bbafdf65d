"""Downgrades that would drop columns holding money facts refuse while rows depend on them, and
change nothing (the chain runs in one transaction); with no such row they go through. On
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from kora.migrations.guards import DowngradeRefused
from kora.payments.adapters.tables import payments
from kora.platform.db import create_engine
from kora.platform.migrate import alembic_config, downgrade, upgrade

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    fixture = "tmp_sqlite_url" if request.param == "sqlite" else "postgres_database"
    database_url = str(request.getfixturevalue(fixture))
    upgrade(database_url)
    return database_url


def a_payment(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "type": "p2p",
        "status": "SETTLED",
        "amount": 5_000,
        "currency": "XOF",
        "initiated_by": uuid.uuid4(),
        "created_at": NOW,
        "updated_at": NOW,
    }
    row.update(values)
    return row


async def _run(url: str, statement: Any) -> list[Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(statement)
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


def insert(url: str, row: dict[str, Any]) -> None:
    asyncio.run(_run(url, payments.insert().values(row)))


def head() -> str:
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


def version(url: str) -> str:
    return str(asyncio.run(_run(url, sa.text("SELECT version_num FROM alembic_version")))[0][0])


@pytest.mark.parametrize(
    ("row", "found"),
    [
        (a_payment(type="merchant", fee=40), "merchant, refund or card payments"),
        (a_payment(type="refund", parent_id=None), "merchant, refund or card payments"),
        (a_payment(type="cash_in", refunded_amount=1_000), "payments with refunds"),
        (a_payment(fee=25), "payments with a fee"),
        (a_payment(type="cash_in", status="CHARGED_BACK"), "charged-back payments"),
    ],
)
def test_below_0002_is_refused_while_payments_hold_its_money_facts(url: str, row: dict[str, Any], found: str) -> None:
    insert(url, row)
    insert(url, a_payment())  # a plain P2P depends on nothing 0002 added

    with pytest.raises(DowngradeRefused, match=found) as refused:
        downgrade(url, "0001")

    assert "revision 0002" in str(refused.value)
    assert version(url) == head()  # nothing changed, not even the later revisions' downgrades
    kept = asyncio.run(
        _run(url, sa.select(payments.c.refunded_amount, payments.c.fee).where(payments.c.id == row["id"]))
    )
    assert kept == [(row.get("refunded_amount", 0), row.get("fee", 0))]


def test_below_0002_goes_through_when_no_payment_depends_on_it(url: str) -> None:
    insert(url, a_payment())
    insert(url, a_payment(type="cash_in", status="CAPTURED", captured_at=NOW, settlement_due=NOW))

    downgrade(url, "0001")

    assert version(url) == "0001"
    assert asyncio.run(_run(url, sa.text("SELECT count(*) FROM payments")))[0][0] == 2
    upgrade(url)


@pytest.mark.parametrize(
    ("row", "found"),
    [
        (a_payment(type="card", status="AUTHORIZED", authorization_expires_at=NOW), "card payments"),
        (a_payment(type="refund", status="AUTHORIZED", pending_operation="refund"), "acquirer's answer"),
        (a_payment(type="cash_in", authorization_expires_at=NOW), "authorization expiry"),
        (a_payment(type="cash_in", merchant_reference="order-1"), "non-merchant payments with a merchant reference"),
    ],
)
def test_below_0005_is_refused_while_card_payments_depend_on_it(url: str, row: dict[str, Any], found: str) -> None:
    insert(url, row)

    with pytest.raises(DowngradeRefused, match=found):
        downgrade(url, "0004")

    assert version(url) == head()


def test_below_0005_keeps_a_merchant_payments_order_reference_where_older_code_reads_it(url: str) -> None:
    merchant = a_payment(type="merchant", fee=40, merchant_reference="order-2026-0001")
    insert(url, merchant)

    downgrade(url, "0004")

    assert version(url) == "0004"
    refs = asyncio.run(_run(url, sa.text("SELECT provider_ref FROM payments")))
    assert refs == [("order-2026-0001",)]
    upgrade(url)
