"""The risk engine on the payment path, over the HTTP API, on SQLite and PostgreSQL, with the
shipped policy (kora/risk/policies/default.yaml, tier1): a denied payment fails and moves
nothing; a reviewed one waits AUTHORIZED with its funds held until a risk analyst approves
(money moves, ledger balanced) or rejects (hold released); every decision is explained,
stored with its policy version, audited and counted.

Under the shipped policy a customer's device is new for 72 h: its amount limits are halved
(p2p: review above 125,000, deny above 250,000) and a payment of 50,000 or more from it scores
40 (`new_device_high_amount`), enough for review. So customers here are funded by cash-ins of
45,000 (below every flag)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _api
from tests.support.api import Api, Customer

FUNDING = 45_000


@pytest.fixture
async def risk_api(migrated_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with _api(migrated_url, tmp_path, KORA_RISK_ENABLED="true") as handle:
        yield handle


async def funded(api: Api, times: int = 5) -> Customer:
    customer = await api.customer()
    for _ in range(times):
        await api.cash_in(customer, FUNDING)
    return customer


async def wallet(api: Api, customer: Customer) -> tuple[int, int]:
    body = await api.balance(customer)
    return body["balance"], body["available_balance"]


async def explain(api: Api, staff: Customer, payment_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/admin/payments/{payment_id}/risk", headers=staff.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def decide(api: Api, analyst: Customer, payment_id: str, decision: str, note: str = "checked") -> Any:
    return await api.client.post(
        f"/v1/admin/risk/reviews/{payment_id}/{decision}", json={"note": note}, headers=analyst.headers()
    )


async def ledger_ok(api: Api) -> None:
    report = await api.kora.verify_ledger()  # type: ignore[attr-defined]
    assert report.ok, report.as_dict()


async def test_an_allowed_transfer_settles_and_its_reservation_counts(risk_api: Api) -> None:
    api = risk_api
    alice, bob = await funded(api), await api.customer()
    support = await api.staff("support")

    sent = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=30_000)
    assert sent.status_code == 201, sent.text
    assert sent.json()["status"] == "SETTLED"
    explained = await explain(api, support, sent.json()["id"])
    assert (explained["outcome"], explained["reservation"], explained["rules"]) == ("allow", "committed", [])
    assert explained["policy_version"]
    assert await wallet(api, alice) == (5 * FUNDING - 30_000,) * 2
    await ledger_ok(api)


async def test_a_denied_transfer_fails_moves_nothing_and_is_explained(risk_api: Api) -> None:
    api = risk_api
    alice, bob = await funded(api), await api.customer()
    support = await api.staff("support")

    denied = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=300_000)
    assert denied.status_code == 422, denied.text
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["code"] == "risk_denied"
    assert await wallet(api, alice) == (5 * FUNDING, 5 * FUNDING)
    assert await wallet(api, bob) == (0, 0)
    # The payment is kept FAILED so support can explain it; the customer sees it in its list.
    payments = (await api.client.get("/v1/payments", headers=alice.headers())).json()["items"]
    failed = [p for p in payments if p["type"] == "p2p"]
    assert [(p["status"], p["failure_code"]) for p in failed] == [("FAILED", "risk_denied")]
    explained = await explain(api, support, failed[0]["id"])
    assert explained["outcome"] == "deny"
    assert explained["reservation"] == "denied"
    hard = [r for r in explained["reasons"] if r["rule"].startswith("limit.per_transaction")]
    assert hard, explained["reasons"]
    assert hard[0]["observed"] == 300_000
    # A denial is no customer mistake to replay differently: the same key answers the same.
    metrics = (await api.client.get("/metrics")).text
    assert 'kora_risk_decisions_total{outcome="deny",payment_type="p2p"} 1.0' in metrics
    await ledger_ok(api)


async def test_a_reviewed_transfer_holds_funds_until_an_analyst_approves(risk_api: Api) -> None:
    api = risk_api
    alice, bob = await funded(api), await api.customer()
    analyst, support = await api.staff("risk_analyst"), await api.staff("support")

    held = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=60_000)
    assert held.status_code == 201, held.text
    payment = held.json()
    assert payment["status"] == "AUTHORIZED"
    assert payment["status_history"][-1]["reason"] == "held for risk review"
    assert await wallet(api, alice) == (5 * FUNDING, 5 * FUNDING - 60_000)  # funds held, not moved
    assert await wallet(api, bob) == (0, 0)

    queue = await api.client.get("/v1/admin/risk/reviews", headers=analyst.headers())
    assert queue.status_code == 200, queue.text
    [item] = [i for i in queue.json()["items"] if i["payment_id"] == payment["id"]]
    assert item["amount"] == 60_000
    assert "flag.new_device_high_amount" in item["rules"]
    assert item["payer_activity"]["day"]["count"] >= 0
    assert "phone" not in queue.text

    # Support may read why, not decide.
    assert (await decide(api, support, payment["id"], "approve")).status_code == 403
    approved = await decide(api, analyst, payment["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "SETTLED"
    assert await wallet(api, alice) == (5 * FUNDING - 60_000,) * 2
    assert await wallet(api, bob) == (60_000, 60_000)
    again = await decide(api, analyst, payment["id"], "reject")
    assert again.status_code == 409
    assert again.json()["code"] == "risk_review_decided"

    explained = await explain(api, support, payment["id"])
    assert explained["review"]["decision"] == "approve"
    assert explained["review"]["analyst"] == f"user:{analyst.user_id}"
    assert explained["reservation"] == "committed"
    outcomes = (await api.client.get("/v1/admin/risk/review-outcomes", headers=analyst.headers())).json()
    assert outcomes["rules"]["flag.new_device_high_amount"]["approve"] == 1
    metrics = (await api.client.get("/metrics")).text
    assert 'kora_risk_review_decisions_total{decision="approve",rule="flag.new_device_high_amount"} 1.0' in metrics
    await ledger_ok(api)
    assert (await api.kora.verify_audit()).ok  # type: ignore[attr-defined]


async def test_a_rejected_transfer_releases_its_hold_and_fails(risk_api: Api) -> None:
    api = risk_api
    alice, bob = await funded(api), await api.customer()
    analyst = await api.staff("risk_analyst")

    held = (await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=60_000)).json()
    rejected = await decide(api, analyst, held["id"], "reject", note="mule pattern confirmed")
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["failure_code"]) == ("FAILED", "risk_rejected")
    assert await wallet(api, alice) == (5 * FUNDING, 5 * FUNDING)
    assert await wallet(api, bob) == (0, 0)
    explained = await explain(api, analyst, held["id"])
    assert (explained["review"]["decision"], explained["reservation"]) == ("reject", "released")
    # A rejected payment no longer counts against the payer's limits: the same amount, split
    # under the flags, goes through.
    for _ in range(2):
        ok = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=30_000)
        assert ok.json()["status"] == "SETTLED", ok.text
    assert (await decide(api, analyst, str(uuid.uuid4()), "approve")).status_code == 404
    await ledger_ok(api)


async def test_a_reviewed_cash_out_waits_for_the_analyst_then_goes_to_its_provider(risk_api: Api) -> None:
    api = risk_api
    alice = await funded(api)
    analyst = await api.staff("risk_analyst")

    held = await api.cash_out(alice, 70_000)  # above the cooled soft limit (62,500): review
    assert held.status_code == 201, held.text
    assert held.json()["status"] == "AUTHORIZED"
    assert await wallet(api, alice) == (5 * FUNDING, 5 * FUNDING - 70_000)
    # The provider sweeper leaves a payment under review alone (no provider was asked).
    swept = await api.kora.payments.sweep_pending(  # type: ignore[attr-defined]
        older_than=__import__("datetime").timedelta(0), give_up_after=__import__("datetime").timedelta(0)
    )
    assert swept.get("failed", 0) == 0
    assert (await api.client.get(f"/v1/payments/{held.json()['id']}", headers=alice.headers())).json()[
        "status"
    ] == "AUTHORIZED"

    approved = await decide(api, analyst, held.json()["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "CAPTURED"  # the sandbox provider confirmed at once
    assert await wallet(api, alice) == (5 * FUNDING - 70_000,) * 2
    denied = await api.cash_out(alice, 130_000)  # above the cooled hard limit (125,000)
    assert denied.json()["code"] == "risk_denied"
    await ledger_ok(api)


async def test_risk_data_is_for_risk_roles_only(risk_api: Api) -> None:
    api = risk_api
    alice, bob = await funded(api, 2), await api.customer()
    sent = (await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=10_000)).json()
    for path in ("/v1/admin/risk/reviews", f"/v1/admin/payments/{sent['id']}/risk", "/v1/admin/risk/review-outcomes"):
        assert (await api.client.get(path, headers=alice.headers())).status_code == 403
        assert (await api.client.get(path)).status_code == 401
    leader = await api.staff("leadership")
    assert (await api.client.get("/v1/admin/risk/reviews", headers=leader.headers())).status_code == 403
    assert (await decide(api, alice, sent["id"], "approve")).status_code == 403


async def test_concurrent_transfers_never_pass_a_cap_only_some_fit(migrated_postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL, group commit on: 20 transfers at once from one payer under a cap of 5 an
    hour: exactly 5 settle, 15 are denied, the ledger balances."""
    import asyncio

    from kora.risk import BENCH_POLICY_PATH

    policy = BENCH_POLICY_PATH.read_text().replace(
        "count:\n        hour: {hard: 1000000}\n        day: {hard: 1000000}\n      per_recipient",
        "count:\n        hour: {hard: 5}\n        day: {hard: 1000000}\n      per_recipient",
    )
    assert "hour: {hard: 5}" in policy
    path = tmp_path / "cap-5.yaml"
    path.write_text(policy.replace('version: "bench-', 'version: "cap5-'))
    async with _api(migrated_postgres_url, tmp_path, KORA_RISK_ENABLED="true", KORA_RISK_POLICY_FILE=str(path)) as api:
        alice, bob = await api.customer(fund=100_000), await api.customer()
        answers = await asyncio.gather(
            *(api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=1_000) for _ in range(20))
        )
        outcomes = sorted(str(a.json()["code"] if a.status_code == 422 else a.json()["status"]) for a in answers)
        assert outcomes == ["SETTLED"] * 5 + ["risk_denied"] * 15, outcomes
        assert await wallet(api, bob) == (5_000, 5_000)
        await ledger_ok(api)
        metrics = (await api.client.get("/metrics")).text
        batches = {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith(("kora_group_commit_batch_size_sum", "kora_group_commit_batch_size_count"))
        }
        # Some transfers shared a transaction (the group-commit path took the risk locks too).
        assert batches["kora_group_commit_batch_size_sum"] > batches["kora_group_commit_batch_size_count"]


async def test_a_reviewed_merchant_payment_approved_pays_the_merchant_less_the_fee(risk_api: Api) -> None:
    from tests.integration.test_api_merchant import fee_revenue, merchant_balance

    api = risk_api
    merchant, alice = await api.merchant(), await funded(api)
    analyst = await api.staff("risk_analyst")
    revenue_before = await fee_revenue(api)

    held = await api.pay_merchant(alice, merchant.merchant_id, 60_000, reference="order-77")
    assert held.status_code == 201, held.text
    assert held.json()["status"] == "AUTHORIZED"
    assert await merchant_balance(api, merchant) == 0
    approved = await decide(api, analyst, held.json()["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "SETTLED"
    assert await wallet(api, alice) == (5 * FUNDING - 60_000,) * 2
    assert await merchant_balance(api, merchant) == 60_000 - 600  # 1 % fee
    assert await fee_revenue(api) - revenue_before == 600
    await ledger_ok(api)


async def test_a_reviewed_cash_in_is_collected_only_once_approved(risk_api: Api) -> None:
    api = risk_api
    alice = await api.customer()
    analyst = await api.staff("risk_analyst")
    held = await api.client.post("/v1/cash-ins", json={"amount": 60_000}, headers=alice.headers(key=uuid.uuid4().hex))
    assert held.status_code == 201, held.text
    assert (held.json()["status"], held.json()["status_history"][-1]["reason"]) == ("INITIATED", "initiated")
    assert await wallet(api, alice) == (0, 0)
    approved = await decide(api, analyst, held.json()["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "CAPTURED"
    assert await wallet(api, alice) == (60_000, 60_000)
    await ledger_ok(api)


async def test_the_policy_file_is_reloaded_without_a_restart(migrated_sqlite_url: str, tmp_path: Path) -> None:
    import asyncio

    from kora.risk import BENCH_POLICY_PATH

    path = tmp_path / "policy.yaml"
    path.write_text(BENCH_POLICY_PATH.read_text())
    async with _api(migrated_sqlite_url, tmp_path, KORA_RISK_ENABLED="true", KORA_RISK_POLICY_FILE=str(path)) as api:
        alice, bob = await api.customer(fund=10_000), await api.customer()
        support = await api.staff("support")
        first = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=1_000)
        assert first.json()["status"] == "SETTLED", first.text
        assert (await explain(api, support, first.json()["id"]))["policy_version"] == "bench-2026-11-26.1"
        stricter = (
            BENCH_POLICY_PATH.read_text()
            .replace('version: "bench-2026-11-26.1"', 'version: "reloaded-1"')
            .replace("per_transaction: {hard: 500000}", "per_transaction: {hard: 500}")
        )
        path.write_text(stricter)
        await asyncio.sleep(1.2)  # the source looks at the file at most once a second
        second = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=1_000)
        assert second.json()["code"] == "risk_denied", second.text
        denied_id = second.json()["detail"].split("payment ")[-1].rstrip(")")
        assert (await explain(api, support, denied_id))["policy_version"] == "reloaded-1"
        path.write_text("version: [not a policy")  # a broken file is refused; the last good one stays
        await asyncio.sleep(1.2)
        third = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=1_000)
        assert third.json()["code"] == "risk_denied"


async def test_a_group_commit_mixing_reviews_and_allowed_transfers(risk_api: Api) -> None:
    """Concurrent transfers share transactions (group commit): held ones lock their payers'
    wallets with the batch's postings, in one order; every outcome is right and the ledger balances."""
    import asyncio

    api = risk_api
    payers = [await funded(api, 2) for _ in range(4)]
    payees = [await api.customer() for _ in range(4)]
    broke = await api.customer()
    sends = [
        api.transfer(payer, recipient_wallet_id=payees[i].wallet_id, amount=60_000 if i % 2 else 5_000)
        for i, payer in enumerate(payers)
    ] + [api.transfer(broke, recipient_wallet_id=payers[0].wallet_id, amount=1)]  # an empty wallet
    answers = await asyncio.gather(*sends)
    statuses = [a.json()["code"] if a.status_code == 422 else a.json()["status"] for a in answers]
    assert statuses[:4] == ["SETTLED", "AUTHORIZED", "SETTLED", "AUTHORIZED"], statuses
    assert statuses[4] == "insufficient_funds"
    for i, payer in enumerate(payers):
        posted, available = await wallet(api, payer)
        assert posted == 2 * FUNDING - (0 if i % 2 else 5_000)
        assert available == 2 * FUNDING - (60_000 if i % 2 else 5_000)
    await ledger_ok(api)
