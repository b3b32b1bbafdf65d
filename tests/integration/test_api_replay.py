"""Anti-replay over the HTTP API, on SQLite and PostgreSQL: debit requests need a fresh
X-Request-Timestamp and a nonce new to the session; a refused request moves no money."""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa

from kora.observability.testing import capture_logs
from tests.support.api import Api, Customer, fresh_request_headers

PROBLEM = "application/problem+json"


def new_nonce() -> str:
    return uuid.uuid4().hex


async def second_session(api: Api, customer: Customer) -> Customer:
    """The same user logged in again on another device: a second session."""
    other = Customer(
        customer.phone_number, customer.password, "device-" + uuid.uuid4().hex[:8], customer.user_id, customer.wallet_id
    )
    assert (await api.login(other)).status_code == 200
    return other


async def balances(api: Api, *customers: Customer) -> list[int]:
    return [(await api.balance(c))["balance"] for c in customers]


def stamp(offset: int | None) -> int:
    """A timestamp `offset` seconds from now; None for the Unix epoch."""
    return 0 if offset is None else int(time.time()) + offset


def assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == code


async def test_a_fresh_request_passes_and_its_replay_is_refused(api: Api) -> None:
    alice = await api.customer(fund=5_000)
    bob = await api.customer()
    nonce = new_nonce()

    sent = await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1_000)
    assert sent.status_code == 201, sent.text
    # The same request played again (another Idempotency-Key, so only the nonce can stop it).
    replayed = await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1_000)
    assert_problem(replayed, 409, "request_replayed")
    assert "Idempotent-Replayed" not in replayed.headers
    assert await balances(api, alice, bob) == [4_000, 1_000]

    out = await api.cash_out(alice, 500, nonce=nonce)  # the nonce is spent for every route
    assert_problem(out, 409, "request_replayed")
    first_out = await api.cash_out(alice, 500)
    assert first_out.status_code == 201, first_out.text
    again_out = await api.cash_out(alice, 500, nonce=first_out.request.headers["X-Request-Nonce"])
    assert_problem(again_out, 409, "request_replayed")
    assert await balances(api, alice) == [3_500]

    metrics = (await api.client.get("/metrics")).text
    assert 'kora_request_replay_refusals_total{reason="replayed"} 3.0' in metrics


async def test_stale_and_future_timestamps_are_refused(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    bob = await api.customer()
    nonce = new_nonce()
    # Offsets from the clock at each request: a fixed `now` drifts on a loaded machine and
    # `now + 301` becomes acceptable a second later. 330 s stays outside the 300 s window.
    for offset in (-330, 330, -86_400, None):
        stale_request = await api.transfer(
            alice, nonce=nonce, timestamp=stamp(offset), recipient_wallet_id=bob.wallet_id, amount=10
        )
        assert_problem(stale_request, 400, "request_stale")
        assert "server Unix time" in stale_request.json()["detail"]
        assert_problem(await api.cash_out(alice, 10, nonce=nonce, timestamp=stamp(offset)), 400, "request_stale")
    assert await balances(api, alice, bob) == [1_000, 0]
    # Refused as stale, the nonce was not spent: with a correct clock the request passes.
    fixed = await api.transfer(
        alice, nonce=nonce, timestamp=int(time.time()), recipient_wallet_id=bob.wallet_id, amount=10
    )
    assert fixed.status_code == 201, fixed.text
    # A little skew either way is tolerated.
    for skew in (-250, 250):
        skewed = await api.transfer(
            alice, timestamp=int(time.time()) + skew, recipient_wallet_id=bob.wallet_id, amount=1
        )
        assert skewed.status_code == 201, skewed.text


async def test_missing_or_malformed_headers_are_refused(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    bob = await api.customer()
    fresh = fresh_request_headers()
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "request_timestamp_missing"),
        ({"X-Request-Nonce": new_nonce()}, "request_timestamp_missing"),
        ({"X-Request-Timestamp": fresh["X-Request-Timestamp"]}, "request_nonce_missing"),
        ({**fresh, "X-Request-Timestamp": "soon"}, "request_timestamp_invalid"),
        ({**fresh, "X-Request-Timestamp": str(int(time.time() * 1000))}, "request_timestamp_invalid"),
        ({**fresh, "X-Request-Nonce": "too-short"}, "request_nonce_invalid"),
        ({**fresh, "X-Request-Nonce": "not/base64url+" * 2}, "request_nonce_invalid"),
    ]
    for path, body in (
        ("/v1/transfers", {"recipient_wallet_id": bob.wallet_id, "amount": 10}),
        ("/v1/cash-outs", {"amount": 10}),
    ):
        for extra, code in cases:
            headers = alice.headers(key=uuid.uuid4().hex, fresh=False, **extra)
            response = await api.client.post(path, json=body, headers=headers)
            assert_problem(response, 400, code)
            assert response.json()["correlation_id"] == response.headers["X-Correlation-ID"]
    assert await balances(api, alice, bob) == [1_000, 0]


async def test_unauthenticated_requests_are_refused_before_the_nonce_is_looked_at(api: Api) -> None:
    response = await api.client.post("/v1/transfers", json={"amount": 1}, headers=fresh_request_headers())
    assert_problem(response, 401, "not_authenticated")


async def test_cash_in_accepts_the_headers_without_requiring_them(api: Api) -> None:
    alice = await api.customer()
    plain = await api.client.post(
        "/v1/cash-ins", json={"amount": 100}, headers=alice.headers(key=uuid.uuid4().hex, fresh=False)
    )
    assert plain.status_code == 201, plain.text
    nonce = new_nonce()
    sent = await api.client.post(
        "/v1/cash-ins",
        json={"amount": 100},
        headers=alice.headers(key=uuid.uuid4().hex, **fresh_request_headers(nonce=nonce)),
    )
    assert sent.status_code == 201, sent.text
    replayed = await api.client.post(
        "/v1/cash-ins",
        json={"amount": 100},
        headers=alice.headers(key=uuid.uuid4().hex, **fresh_request_headers(nonce=nonce)),
    )
    assert_problem(replayed, 409, "request_replayed")
    stale = await api.client.post(
        "/v1/cash-ins",
        json={"amount": 100},
        headers=alice.headers(key=uuid.uuid4().hex, **fresh_request_headers(timestamp=int(time.time()) - 3_600)),
    )
    assert_problem(stale, 400, "request_stale")
    half = await api.client.post(
        "/v1/cash-ins",
        json={"amount": 100},
        headers=alice.headers(key=uuid.uuid4().hex, fresh=False, **{"X-Request-Nonce": new_nonce()}),
    )
    assert_problem(half, 400, "request_timestamp_missing")
    assert await balances(api, alice) == [200]


async def test_a_nonce_is_bound_to_its_session(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    bob = await api.customer(fund=1_000)
    alice_phone = await second_session(api, alice)
    nonce = new_nonce()

    first = await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1)
    assert first.status_code == 201, first.text
    # The same value in another session (the same user on another device, or another user)
    # is another request.
    other_session = await api.transfer(alice_phone, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1)
    assert other_session.status_code == 201, other_session.text
    other_user = await api.transfer(bob, nonce=nonce, recipient_wallet_id=alice.wallet_id, amount=1)
    assert other_user.status_code == 201, other_user.text
    # ...but not twice in one.
    twice = await api.transfer(alice_phone, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1)
    assert_problem(twice, 409, "request_replayed")
    # A request captured in Alice's first session, played with her other device's id, is
    # refused by the token's device binding before any nonce is looked at.
    stolen = alice.headers(key=uuid.uuid4().hex, **{"X-Device-ID": alice_phone.device_id})
    moved = await api.client.post(
        "/v1/transfers", json={"recipient_wallet_id": bob.wallet_id, "amount": 1}, headers=stolen
    )
    assert_problem(moved, 401, "device_mismatch")
    assert await balances(api, alice, bob) == [999, 1_001]


async def test_a_retry_with_its_idempotency_key_needs_a_fresh_nonce_and_gets_the_first_answer(api: Api) -> None:
    alice = await api.customer(fund=5_000)
    bob = await api.customer()
    key, nonce = "transfer-" + uuid.uuid4().hex, new_nonce()
    body = {"recipient_wallet_id": bob.wallet_id, "amount": 1_000}

    first = await api.transfer(alice, key=key, nonce=nonce, **body)
    assert first.status_code == 201, first.text
    # The anti-replay check runs first: the very same request is refused, not answered.
    same = await api.transfer(alice, key=key, nonce=nonce, **body)
    assert_problem(same, 409, "request_replayed")
    # A retry (new timestamp and nonce, same key) is a new request: it gets the stored answer.
    retry = await api.transfer(alice, key=key, **body)
    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    # Same for a cash-out.
    out_key = "cash-out-" + uuid.uuid4().hex
    out = await api.cash_out(alice, 700, key=out_key)
    out_retry = await api.cash_out(alice, 700, key=out_key)
    assert out_retry.status_code == out.status_code == 201
    assert out_retry.headers["Idempotent-Replayed"] == "true"
    assert out_retry.json()["id"] == out.json()["id"]
    assert await balances(api, alice, bob) == [3_300, 1_000]


async def test_a_replay_is_audited_and_logged_without_secrets(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    bob = await api.customer()
    nonce = new_nonce()
    await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1)
    with capture_logs() as lines:
        replayed = await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1)
    assert_problem(replayed, 409, "request_replayed")
    refusal = [line for line in lines if "anti-replay" in line]
    assert len(refusal) == 1
    assert '"reason": "replayed"' in refusal[0] or '"reason":"replayed"' in refusal[0]
    assert replayed.headers["X-Correlation-ID"] in refusal[0]
    everything = "\n".join(lines)
    for secret in (nonce, alice.access_token, alice.phone_number, alice.device_id):
        assert secret not in everything

    kora = api.kora  # type: ignore[attr-defined]
    async with kora.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text("SELECT actor, outcome, correlation_id FROM audit_log WHERE action = 'auth.request.replayed'")
            )
        ).all()
    assert [(r.actor, r.outcome, r.correlation_id) for r in rows] == [
        (f"user:{alice.user_id}", "denied", replayed.headers["X-Correlation-ID"])
    ]
    assert (await kora.verify_audit()).ok


async def test_openapi_declares_the_headers_and_the_problems(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    for path in ("/v1/transfers", "/v1/cash-outs", "/v1/cash-ins"):
        operation = spec["paths"][path]["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-Request-Timestamp", "X-Request-Nonce", "Idempotency-Key"} <= headers, path
        responses = operation["responses"]
        assert "`request_replayed`" in responses["409"]["description"]
        assert "`idempotency_request_in_progress`" in responses["409"]["description"]
        for code in ("request_stale", "request_nonce_missing", "request_timestamp_invalid", "idempotency_key_missing"):
            assert f"`{code}`" in responses["400"]["description"], (path, code)


async def test_merchant_payments_and_refunds_need_fresh_headers(api: Api) -> None:
    merchant = await api.merchant()
    customer = await api.customer(fund=10_000)
    pay_nonce, refund_nonce = new_nonce(), new_nonce()
    body = {"merchant_id": merchant.merchant_id, "amount": 1_000}

    def pay_headers(nonce: str | None) -> dict[str, str]:
        if nonce is None:
            return customer.headers(key=uuid.uuid4().hex, fresh=False)
        return customer.headers(key=uuid.uuid4().hex, **fresh_request_headers(nonce=nonce))

    paid = await api.client.post("/v1/merchant-payments", json=body, headers=pay_headers(pay_nonce))
    assert paid.status_code == 201, paid.text
    assert_problem(
        await api.client.post("/v1/merchant-payments", json=body, headers=pay_headers(pay_nonce)),
        409,
        "request_replayed",
    )
    assert_problem(
        await api.client.post("/v1/merchant-payments", json=body, headers=pay_headers(None)),
        400,
        "request_timestamp_missing",
    )

    refunds = f"/v1/merchant/payments/{paid.json()['id']}/refunds"

    def refund_headers(nonce: str | None) -> dict[str, str]:
        if nonce is None:
            return merchant.headers(key=uuid.uuid4().hex, fresh=False)
        return merchant.headers(key=uuid.uuid4().hex, **fresh_request_headers(nonce=nonce))

    refunded = await api.client.post(refunds, json={"amount": 100}, headers=refund_headers(refund_nonce))
    assert refunded.status_code == 201, refunded.text
    assert_problem(
        await api.client.post(refunds, json={"amount": 100}, headers=refund_headers(refund_nonce)),
        409,
        "request_replayed",
    )
    assert_problem(
        await api.client.post(refunds, json={"amount": 100}, headers=refund_headers(None)),
        400,
        "request_timestamp_missing",
    )
    assert await balances(api, customer) == [9_100]
    spec = (await api.client.get("/openapi.json")).json()
    for path in ("/v1/merchant-payments", "/v1/merchant/payments/{payment_id}/refunds"):
        operation = spec["paths"][path]["post"]
        assert {"X-Request-Timestamp", "X-Request-Nonce"} <= {p["name"] for p in operation["parameters"]}
        assert "`request_replayed`" in operation["responses"]["409"]["description"]


async def test_a_request_refused_for_its_body_keeps_its_nonce_for_the_corrected_resend(api: Api) -> None:
    alice = await api.customer(fund=5_000)
    bob = await api.customer()
    merchant = await api.merchant()
    nonce = new_nonce()

    bad = await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=-1)
    assert_problem(bad, 422, "validation_error")
    fixed = await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1_000)
    assert fixed.status_code == 201, fixed.text
    assert_problem(
        await api.transfer(alice, nonce=nonce, recipient_wallet_id=bob.wallet_id, amount=1_000), 409, "request_replayed"
    )

    out_nonce = new_nonce()
    assert_problem(await api.cash_out(alice, 500, nonce=out_nonce, unexpected=True), 422, "validation_error")
    assert (await api.cash_out(alice, 500, nonce=out_nonce)).status_code == 201

    def fresh(who: Customer, pay_nonce: str) -> dict[str, str]:
        return who.headers(key=uuid.uuid4().hex, **fresh_request_headers(nonce=pay_nonce))

    pay_nonce, refund_nonce = new_nonce(), new_nonce()
    pay = {"merchant_id": merchant.merchant_id, "amount": 1_000}
    refused = await api.client.post(
        "/v1/merchant-payments", json={**pay, "amount": "lots"}, headers=fresh(alice, pay_nonce)
    )
    assert_problem(refused, 422, "validation_error")
    paid = await api.client.post("/v1/merchant-payments", json=pay, headers=fresh(alice, pay_nonce))
    assert paid.status_code == 201, paid.text
    refunds = f"/v1/merchant/payments/{paid.json()['id']}/refunds"
    assert_problem(
        await api.client.post(refunds, json={}, headers=fresh(merchant, refund_nonce)), 422, "validation_error"
    )
    refunded = await api.client.post(refunds, json={"amount": 100}, headers=fresh(merchant, refund_nonce))
    assert refunded.status_code == 201, refunded.text
    assert await balances(api, alice, bob) == [5_000 - 1_000 - 500 - 1_000 + 100, 1_000]
