"""Merchant payments and refunds over HTTP, on SQLite and PostgreSQL: the fee split in the
ledger, partial and repeated refunds, refusals that change nothing, idempotent replays, who may
do what, and the admin's role grant (API and CLI)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from kora.ledger import AccountKind
from tests.support.api import Api, Customer, Merchant

PROBLEM = "application/problem+json"


def kora_of(api: Api) -> Any:
    return api.kora  # type: ignore[attr-defined]


async def fee_revenue(api: Api) -> int:
    async with kora_of(api).unit_of_work() as uow:
        account = await uow.ledger.system_account(AccountKind.FEE_REVENUE, "XOF")
        balance = await uow.ledger.balance(account.id)
        await uow.commit()
    return int(balance.posted)


async def merchant_balance(api: Api, merchant: Merchant) -> int:
    response = await api.client.get("/v1/merchant/balance", headers=merchant.headers())
    assert response.status_code == 200, response.text
    assert response.json()["merchant_id"] == merchant.merchant_id
    return int(response.json()["balance"])


async def state(api: Api, customer: Customer, merchant: Merchant) -> tuple[int, int, int]:
    """(customer wallet, merchant account, fee revenue)."""
    return (await api.balance(customer))["balance"], await merchant_balance(api, merchant), await fee_revenue(api)


async def audit_actions(api: Api) -> list[str]:
    async with kora_of(api).engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT action FROM audit_log"))
        return [r.action for r in rows]


async def test_pay_a_merchant_then_refund_in_parts(api: Api) -> None:
    merchant = await api.merchant()
    customer = await api.customer(fund=20_000)

    paid = await api.pay_merchant(customer, merchant.merchant_id, 10_000, reference="order-2026/0042")
    assert paid.status_code == 201, paid.text
    payment = paid.json()
    assert (payment["type"], payment["status"], payment["fee"]) == ("merchant", "SETTLED", 100)
    assert (payment["reference"], payment["refunded_amount"]) == ("order-2026/0042", 0)
    async with kora_of(api).engine.connect() as conn:  # in its own column, not the provider's
        stored = await conn.execute(
            sa.text("SELECT merchant_reference, provider_ref FROM payments WHERE type = 'merchant'")
        )
        assert list(stored) == [("order-2026/0042", None)]
    assert [h["status"] for h in payment["status_history"]] == ["INITIATED", "AUTHORIZED", "CAPTURED", "SETTLED"]
    assert await state(api, customer, merchant) == (10_000, 9_900, 100)

    part = await api.refund(merchant, payment["id"], 3_000)
    assert part.status_code == 201, part.text
    assert (part.json()["type"], part.json()["parent_id"], part.json()["status"]) == (
        "refund",
        payment["id"],
        "SETTLED",
    )
    again = await api.refund(merchant, payment["id"], 2_000, reason="duplicate")
    assert again.status_code == 201, again.text
    assert await state(api, customer, merchant) == (15_000, 4_900, 100)

    # More than is left to refund: refused, nothing moves.
    over = await api.refund(merchant, payment["id"], 5_001)
    assert (over.status_code, over.headers["content-type"], over.json()["code"]) == (422, PROBLEM, "refund_not_allowed")
    # All that is left, but the fee was kept: the merchant's 4 900 do not cover 5 000.
    short = await api.refund(merchant, payment["id"], 5_000)
    assert (short.status_code, short.json()["code"]) == (422, "insufficient_funds")
    assert await state(api, customer, merchant) == (15_000, 4_900, 100)

    # Another sale covers it; then the rest goes back and nothing more can.
    other = await api.customer(fund=1_000)
    assert (await api.pay_merchant(other, merchant.merchant_id, 1_000)).status_code == 201
    rest = await api.refund(merchant, payment["id"], 5_000)
    assert rest.status_code == 201, rest.text
    assert (await api.refund(merchant, payment["id"], 1)).json()["code"] == "refund_not_allowed"
    assert await state(api, customer, merchant) == (20_000, 890, 110)

    seen = await api.client.get(f"/v1/payments/{payment['id']}", headers=customer.headers())
    assert seen.status_code == 200
    listed = await api.client.get("/v1/merchant/payments?limit=10", headers=merchant.headers())
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [i["type"] for i in items] == ["refund", "merchant", "refund", "refund", "merchant"]
    assert items[-1]["refunded_amount"] == 10_000
    assert listed.json()["next_cursor"] is None

    actions = await audit_actions(api)
    assert actions.count("payment.merchant.settled") == 2
    assert actions.count("payment.refund.settled") == 3
    assert actions.count("payment.refund.refused") == 3
    assert "auth.role.granted" in actions
    report = await kora_of(api).verify_ledger()
    assert report.ok, report.violations
    assert (await kora_of(api).verify_audit()).ok


async def test_retries_are_replayed_and_move_money_once(api: Api) -> None:
    merchant = await api.merchant()
    customer = await api.customer(fund=5_000)
    first = await api.pay_merchant(customer, merchant.merchant_id, 2_000, key="pay-key-000001")
    again = await api.pay_merchant(customer, merchant.merchant_id, 2_000, key="pay-key-000001")
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.json() == first.json()
    changed = await api.pay_merchant(customer, merchant.merchant_id, 2_001, key="pay-key-000001")
    assert (changed.status_code, changed.json()["code"]) == (422, "idempotency_key_reused")

    refund = await api.refund(merchant, first.json()["id"], 500, key="refund-key-0001")
    replay = await api.refund(merchant, first.json()["id"], 500, key="refund-key-0001")
    assert (replay.status_code, replay.headers.get("idempotent-replayed")) == (201, "true")
    assert replay.json() == refund.json()
    assert await state(api, customer, merchant) == (3_500, 1_480, 20)


async def test_who_may_pay_refund_and_read(api: Api) -> None:
    admin = await api.admin()
    merchant = await api.merchant(admin=admin)
    rival = await api.merchant(admin=admin)
    customer = await api.customer(fund=5_000)
    payment = (await api.pay_merchant(customer, merchant.merchant_id, 1_000)).json()

    # A customer is not a merchant; another merchant does not see this payment; staff move no money.
    refused = await api.refund(customer, payment["id"], 100)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    hidden = await api.refund(rival, payment["id"], 100)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "payment_not_found")
    assert (await api.refund(merchant, str(uuid.uuid4()), 100)).status_code == 404
    for path in ("/v1/merchant/balance", "/v1/merchant/payments"):
        assert (await api.client.get(path, headers=customer.headers())).status_code == 403
    assert (await api.pay_merchant(admin, merchant.merchant_id, 100)).status_code == 403
    assert (await api.client.get("/v1/merchant/payments", headers=rival.headers())).json()["items"] == []
    assert await state(api, customer, merchant) == (4_000, 990, 10)

    # Only an admin grants the role, only to a customer, only the merchant role.
    grant = f"/v1/admin/users/{customer.user_id}/roles"
    assert (await api.client.post(grant, json={"role": "merchant"}, headers=merchant.headers())).status_code == 403
    assert (await api.client.post(grant, json={"role": "admin"}, headers=admin.headers())).status_code == 422
    to_admin = await api.client.post(
        f"/v1/admin/users/{admin.user_id}/roles", json={"role": "merchant"}, headers=admin.headers()
    )
    assert (to_admin.status_code, to_admin.json()["code"]) == (404, "user_not_found")
    twice = await api.client.post(
        f"/v1/admin/users/{merchant.user_id}/roles", json={"role": "merchant"}, headers=admin.headers()
    )
    assert (twice.status_code, twice.json()["granted"], twice.json()["merchant_id"]) == (
        200,
        False,
        merchant.merchant_id,
    )


async def test_bad_merchant_payments_change_nothing(api: Api) -> None:
    merchant = await api.merchant()
    customer = await api.customer(fund=1_000)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"merchant_id": customer.wallet_id}, 422, "recipient_not_found"),  # a wallet is not a merchant
        ({"merchant_id": str(uuid.uuid4())}, 422, "recipient_not_found"),
        ({"amount": 1_001}, 422, "insufficient_funds"),
        ({"reference": "order 42"}, 422, "validation_error"),
        ({"reference": "x" * 65}, 422, "validation_error"),
        ({"amount": 10.5}, 422, "validation_error"),
        ({"currency": "EUR"}, 422, "currency_mismatch"),
        ({"note": "extra field"}, 422, "validation_error"),
    ]
    for change, status, code in cases:
        body: dict[str, Any] = {"merchant_id": merchant.merchant_id, "amount": 500, **change}
        response = await api.client.post(
            "/v1/merchant-payments", json=body, headers=customer.headers(key=uuid.uuid4().hex)
        )
        assert (response.status_code, response.json()["code"]) == (status, code), change
    no_key = await api.client.post(
        "/v1/merchant-payments", json={"merchant_id": merchant.merchant_id, "amount": 500}, headers=customer.headers()
    )
    assert (no_key.status_code, no_key.json()["code"]) == (400, "idempotency_key_missing")
    assert await state(api, customer, merchant) == (1_000, 0, 0)


async def test_an_admin_grants_the_merchant_role_from_the_cli(sqlite_api: Api, tmp_path: Path) -> None:
    from kora.cli import main

    api = sqlite_api
    customer = await api.customer()
    settings = kora_of(api).settings
    env = {
        "KORA_DATABASE_URL": settings.database_url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),  # the api fixture's secrets
        "KORA_LOG_LEVEL": "WARNING",
    }
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, main, ["admin", "grant-role", "--phone-number", customer.phone_number, "merchant"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "merchant role granted" in result.output
    unknown = await asyncio.to_thread(
        runner.invoke, main, ["admin", "grant-role", "--phone-number", "+2250799999999", "merchant"], env=env
    )
    assert unknown.exit_code == 1
    await api.login(customer)  # the new role is in the next token
    balance = await api.client.get("/v1/merchant/balance", headers=customer.headers())
    assert balance.status_code == 200
    assert balance.json()["merchant_id"] in result.output
