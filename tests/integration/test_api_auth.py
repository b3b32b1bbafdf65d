"""Identity over HTTP: registration, login throttling, refresh rotation with reuse detection,
device binding, logout and RBAC."""

from __future__ import annotations

import asyncio
import uuid

from tests.support.api import Api, new_phone


async def test_register_rejects_weak_passwords_and_duplicates(sqlite_api: Api) -> None:
    api = sqlite_api
    phone = new_phone()
    for password in ("short", "password123", "azertyuiop", phone + "x1", phone[4:] + "abc"):
        weak = await api.client.post("/v1/auth/register", json={"phone_number": phone, "password": password})
        assert weak.status_code == 422, password
        assert weak.json()["code"] in ("weak_password", "validation_error")
    ok = await api.client.post("/v1/auth/register", json={"phone_number": phone, "password": "long-and-unusual-42"})
    assert ok.status_code == 201
    assert set(ok.json()) == {"user_id", "wallet_id"}
    again = await api.client.post("/v1/auth/register", json={"phone_number": phone, "password": "another-unusual-43"})
    assert again.status_code == 409
    assert again.json()["code"] == "phone_number_taken"


async def test_login_failures_look_the_same_and_lock_out(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.customer()
    unknown = await api.client.post(
        "/v1/auth/login",
        json={"phone_number": new_phone(), "password": "whatever-123456", "device_id": "d1-abcdef"},
    )
    wrong = await api.client.post(
        "/v1/auth/login",
        json={"phone_number": alice.phone_number, "password": "wrong-pass-123", "device_id": "d1-abcdef"},
    )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["code"] == wrong.json()["code"] == "invalid_credentials"
    assert unknown.json()["detail"] == wrong.json()["detail"]
    for _ in range(10):
        last = await api.client.post(
            "/v1/auth/login",
            json={"phone_number": alice.phone_number, "password": "wrong-pass-123", "device_id": "d1-abcdef"},
        )
    assert last.status_code == 429
    assert last.json()["code"] == "account_locked"
    # Even the right password is refused while locked.
    right = await api.login(alice)
    assert right.status_code == 429


async def test_refresh_rotates_and_reuse_revokes_the_family(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.customer()
    first_refresh = alice.refresh_token
    rotated = await api.client.post(
        "/v1/auth/refresh", json={"refresh_token": first_refresh, "device_id": alice.device_id}
    )
    assert rotated.status_code == 200
    pair = rotated.json()
    assert pair["token_type"] == "Bearer"
    assert pair["refresh_token"] != first_refresh
    assert 0 < pair["expires_in"] <= 900

    replayed = await api.client.post(
        "/v1/auth/refresh", json={"refresh_token": first_refresh, "device_id": alice.device_id}
    )
    assert replayed.status_code == 401
    assert replayed.json()["code"] == "refresh_token_reused"
    # The whole family is gone: the newest refresh token no longer works either.
    newest = await api.client.post(
        "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"], "device_id": alice.device_id}
    )
    assert newest.status_code == 401


async def test_refresh_token_is_bound_to_its_device(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.customer()
    stolen = await api.client.post(
        "/v1/auth/refresh", json={"refresh_token": alice.refresh_token, "device_id": "another-device"}
    )
    assert stolen.status_code == 401


async def test_access_token_is_bound_to_its_device(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.customer()
    ok = await api.client.get("/v1/wallet", headers=alice.headers())
    assert ok.status_code == 200
    other = await api.client.get(
        "/v1/wallet", headers={"Authorization": f"Bearer {alice.access_token}", "X-Device-ID": "other-device"}
    )
    assert other.status_code == 401
    forged = await api.client.get(
        "/v1/wallet",
        headers={"Authorization": f"Bearer {alice.access_token}x", "X-Device-ID": alice.device_id},
    )
    assert forged.status_code == 401


async def test_logout_revokes_the_session(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.customer()
    out = await api.client.post("/v1/auth/logout", headers=alice.headers())
    assert out.status_code == 204
    refresh = await api.client.post(
        "/v1/auth/refresh", json={"refresh_token": alice.refresh_token, "device_id": alice.device_id}
    )
    assert refresh.status_code == 401
    after = await api.client.get("/v1/wallet", headers=alice.headers())
    assert after.status_code == 401


async def test_admin_ledger_verify_needs_the_admin_role(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.customer(fund=100)
    denied = await api.client.get("/v1/admin/ledger/verify", headers=alice.headers())
    assert denied.status_code == 403
    assert denied.json()["code"] == "forbidden"

    phone, password = new_phone(), "admin-pass-" + uuid.uuid4().hex[:8]
    await api.kora.identity.create_admin(phone, password)  # type: ignore[attr-defined]
    login = await api.client.post(
        "/v1/auth/login", json={"phone_number": phone, "password": password, "device_id": "admin-console"}
    )
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Device-ID": "admin-console"}
    report = await api.client.get("/v1/admin/ledger/verify", headers=headers)
    assert report.status_code == 200
    assert report.json()["ok"] is True
    assert report.json()["entries_checked"] >= 2
    # Support and admins may read any payment.
    payment = (await api.client.get("/v1/payments", headers=alice.headers())).json()["items"][0]
    seen = await api.client.get(f"/v1/payments/{payment['id']}", headers=headers)
    assert seen.status_code == 200


async def test_registration_is_not_a_way_to_become_admin(sqlite_api: Api) -> None:
    response = await sqlite_api.client.post(
        "/v1/auth/register",
        json={"phone_number": new_phone(), "password": "long-and-unusual-42", "roles": ["admin"]},
    )
    assert response.status_code == 422


async def test_a_burst_of_parallel_guesses_gets_no_more_tries_than_the_limit(postgres_api: Api) -> None:
    api = postgres_api
    alice = await api.customer()
    body = {"phone_number": alice.phone_number, "password": "wrong-guess-0000", "device_id": "attacker-1"}
    responses = await asyncio.gather(*(api.client.post("/v1/auth/login", json=body) for _ in range(30)))
    checked = [r for r in responses if r.json().get("code") == "invalid_credentials"]
    assert len(checked) <= 5  # KORA_LOGIN_MAX_FAILURES: each attempt is counted before its check
    assert all(r.status_code in (401, 429) for r in responses)
    assert (await api.login(alice)).status_code == 429  # locked, even with the right password


async def test_failed_logins_and_the_lockouts_they_start_are_counted(api: Api) -> None:
    """kora_auth_failures_total and kora_auth_lockouts_total (the login-failure alert's inputs):
    counted by reason and scope, never with a phone number."""
    alice = await api.customer()
    for _ in range(5):  # KORA_LOGIN_MAX_FAILURES: the fifth failure locks the account
        wrong = await api.client.post(
            "/v1/auth/login",
            json={"phone_number": alice.phone_number, "password": "not-the-password-1", "device_id": "d-1"},
        )
        assert wrong.status_code in (401, 423, 429), wrong.text
    locked = await api.client.post(
        "/v1/auth/login",
        json={"phone_number": alice.phone_number, "password": alice.password, "device_id": "d-1"},
    )
    assert locked.status_code != 200
    bad_token = await api.client.get("/v1/wallet", headers={"Authorization": "Bearer nope", "X-Device-ID": "d-1"})
    assert bad_token.status_code == 401
    metrics = (await api.client.get("/metrics")).text
    assert 'kora_auth_failures_total{reason="invalid_credentials"} 5.0' in metrics
    assert 'kora_auth_lockouts_total{scope="account"} 1.0' in metrics
    assert 'kora_auth_failures_total{reason="account_locked"} 1.0' in metrics
    assert 'kora_auth_failures_total{reason="invalid_token"} 1.0' in metrics
    assert alice.phone_number not in metrics
    assert alice.phone_number.lstrip("+") not in metrics
