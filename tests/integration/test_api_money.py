"""The payment API end to end in process, on SQLite and PostgreSQL: wallets, cash-in/out,
transfers, history, idempotency, permissions and problem+json errors."""

from __future__ import annotations

import uuid

from tests.support.api import Api

PROBLEM = "application/problem+json"


async def test_cash_in_transfer_cash_out_and_history(api: Api) -> None:
    alice = await api.customer(fund=10_000)
    bob = await api.customer()

    sent = await api.transfer(alice, recipient_phone_number=bob.phone_number, amount=2_500, note="loyer")
    assert sent.status_code == 201, sent.text
    payment = sent.json()
    assert payment["type"] == "p2p"
    assert payment["status"] == "SETTLED"
    assert [h["status"] for h in payment["status_history"]] == [
        "INITIATED",
        "AUTHORIZED",
        "CAPTURED",
        "SETTLED",
    ]

    by_wallet = await api.transfer(bob, recipient_wallet_id=alice.wallet_id, amount=500)
    assert by_wallet.status_code == 201, by_wallet.text

    assert await api.balance(alice) == {
        "wallet_id": alice.wallet_id,
        "currency": "XOF",
        "balance": 8_000,
        "available_balance": 8_000,
    }
    assert (await api.balance(bob))["balance"] == 2_000

    out = await api.client.post("/v1/cash-outs", json={"amount": 1_000}, headers=alice.headers(key=uuid.uuid4().hex))
    assert out.status_code == 201, out.text
    assert out.json()["status"] == "CAPTURED"  # the provider settles it J+1
    assert [h["status"] for h in out.json()["status_history"]] == [
        "INITIATED",
        "AUTHORIZED",
        "CAPTURED",
    ]
    assert (await api.balance(alice))["balance"] == 7_000

    entries = await api.client.get("/v1/wallet/entries?limit=2", headers=alice.headers())
    assert entries.status_code == 200
    page = entries.json()
    assert [e["amount"] for e in page["items"]] == [-1_000, 500]
    assert [e["balance_after"] for e in page["items"]] == [7_000, 8_000]
    assert page["items"][0]["payment_id"] == out.json()["id"]
    rest = await api.client.get(f"/v1/wallet/entries?limit=10&cursor={page['next_cursor']}", headers=alice.headers())
    assert [e["amount"] for e in rest.json()["items"]] == [-2_500, 10_000]
    assert rest.json()["next_cursor"] is None

    listed = await api.client.get("/v1/payments?limit=2", headers=alice.headers())
    ids = [p["id"] for p in listed.json()["items"]]
    assert ids == [out.json()["id"], by_wallet.json()["id"]]
    more = await api.client.get(f"/v1/payments?limit=10&cursor={listed.json()['next_cursor']}", headers=alice.headers())
    assert next(p["id"] for p in more.json()["items"]) == payment["id"]

    report = await api.kora.verify_ledger()  # type: ignore[attr-defined]
    assert report.ok, report.violations


async def test_only_parties_read_a_payment(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    bob = await api.customer()
    eve = await api.customer()
    payment = (await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=100)).json()

    for reader in (alice, bob):
        seen = await api.client.get(f"/v1/payments/{payment['id']}", headers=reader.headers())
        assert seen.status_code == 200
        assert seen.json()["status_history"][-1]["status"] == "SETTLED"
    hidden = await api.client.get(f"/v1/payments/{payment['id']}", headers=eve.headers())
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == PROBLEM
    assert hidden.json()["code"] == "payment_not_found"
    unknown = await api.client.get(f"/v1/payments/{uuid.uuid4()}", headers=alice.headers())
    assert unknown.status_code == 404
    listed = await api.client.get("/v1/payments", headers=eve.headers())
    assert listed.json()["items"] == []


async def test_idempotency_replays_and_refuses_reuse(api: Api) -> None:
    alice = await api.customer(fund=5_000)
    bob = await api.customer()
    key = "transfer-" + uuid.uuid4().hex

    first = await api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=1_000)
    again = await api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=1_000)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert (await api.balance(alice))["balance"] == 4_000

    other_body = await api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=999)
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"
    assert (await api.balance(alice))["balance"] == 4_000

    # Keys are scoped to the caller: Bob may use the same key for his own request.
    bobs = await api.transfer(bob, key=key, recipient_wallet_id=alice.wallet_id, amount=10)
    assert bobs.status_code == 201
    assert "Idempotent-Replayed" not in bobs.headers


async def test_refusals_are_stored_and_replayed(api: Api) -> None:
    alice = await api.customer(fund=100)
    bob = await api.customer()
    key = uuid.uuid4().hex
    refused = await api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=101)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "insufficient_funds"
    replay = await api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=101)
    assert replay.status_code == 422
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await api.balance(alice))["balance"] == 100
    assert (await api.balance(bob))["balance"] == 0


async def test_money_posts_need_an_idempotency_key(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    for path, body in (
        ("/v1/transfers", {"recipient_wallet_id": str(uuid.uuid4()), "amount": 10}),
        ("/v1/cash-ins", {"amount": 10}),
        ("/v1/cash-outs", {"amount": 10}),
    ):
        response = await api.client.post(path, json=body, headers=alice.headers())
        assert response.status_code == 400, path
        assert response.json()["code"] == "idempotency_key_missing"
    assert (await api.balance(alice))["balance"] == 1_000


async def test_bad_input_gets_a_problem_and_changes_nothing(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    bob = await api.customer()
    cases = [
        ({"recipient_wallet_id": bob.wallet_id, "amount": 10.5}, "validation_error"),
        ({"recipient_wallet_id": bob.wallet_id, "amount": "10"}, "validation_error"),
        ({"recipient_wallet_id": bob.wallet_id, "amount": 0}, "validation_error"),
        ({"recipient_wallet_id": bob.wallet_id, "amount": -5}, "validation_error"),
        ({"recipient_wallet_id": bob.wallet_id, "amount": 10, "admin": True}, "validation_error"),
        ({"recipient_wallet_id": bob.wallet_id, "amount": 10, "currency": "EUR"}, "currency_mismatch"),
        ({"recipient_wallet_id": bob.wallet_id, "amount": 10, "currency": "ABC"}, "currency_mismatch"),
        ({"recipient_wallet_id": bob.wallet_id, "amount": 10_000_001}, "invalid_amount"),
        ({"recipient_phone_number": "0707070707", "amount": 10}, "validation_error"),
        ({"amount": 10}, "recipient_not_found"),
        ({"recipient_wallet_id": alice.wallet_id, "amount": 10}, "same_wallet"),
        ({"recipient_wallet_id": str(uuid.uuid4()), "amount": 10}, "recipient_not_found"),
    ]
    for body, code in cases:
        response = await api.transfer(alice, **body)
        assert response.status_code in (400, 422), (body, response.text)
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["code"] == code, (body, problem)
        assert problem["type"] == f"urn:kora:problem:{code}"
        assert problem["status"] == response.status_code
        assert problem["correlation_id"] == response.headers["X-Correlation-ID"]
    malformed = await api.client.post(
        "/v1/transfers",
        content=b"{not json",
        headers={**alice.headers(key=uuid.uuid4().hex), "Content-Type": "application/json"},
    )
    assert malformed.status_code in (400, 422)
    assert malformed.json()["code"] in ("malformed_request", "validation_error")
    assert (await api.balance(alice))["balance"] == 1_000
    assert (await api.balance(bob))["balance"] == 0


async def test_errors_never_echo_the_input(api: Api) -> None:
    alice = await api.customer()
    response = await api.transfer(alice, recipient_phone_number="+225-not-a-number", amount=10)
    assert response.status_code == 422
    assert "+225-not-a-number" not in response.text


async def test_correlation_id_is_kept_when_well_formed(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    bob = await api.customer()
    mine = "req-" + uuid.uuid4().hex
    response = await api.client.post(
        "/v1/transfers",
        json={"recipient_wallet_id": bob.wallet_id, "amount": 1},
        headers=alice.headers(key=uuid.uuid4().hex, **{"X-Correlation-ID": mine}),
    )
    assert response.headers["X-Correlation-ID"] == mine
    bad = await api.client.get("/healthz", headers={"X-Correlation-ID": "not ok\tat all"})
    assert bad.headers["X-Correlation-ID"] != "not ok\tat all"
    assert len(bad.headers["X-Correlation-ID"]) >= 8
    fresh = await api.client.get("/healthz")
    assert fresh.headers["X-Correlation-ID"]


async def test_requests_need_authentication(api: Api) -> None:
    for method, path in (("GET", "/v1/wallet"), ("GET", "/v1/payments"), ("POST", "/v1/transfers")):
        response = await api.client.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 401, path
        assert response.headers["content-type"] == PROBLEM


async def test_ops_endpoints(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).status_code == 200
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    assert jwks["keys"]
    assert all("d" not in key for key in jwks["keys"])
    spec = (await api.client.get("/openapi.json")).json()
    for path in (
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/wallet",
        "/v1/wallet/entries",
        "/v1/cash-ins",
        "/v1/cash-outs",
        "/v1/transfers",
        "/v1/payments",
        "/v1/payments/{payment_id}",
        "/v1/admin/ledger/verify",
    ):
        assert path in spec["paths"], path
    assert "Problem" in spec["components"]["schemas"]
