"""The auth routes and the security dependencies, over ASGI, on the in-memory identity fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from kora.http.problems import install_problem_handlers
from kora.http.routes import auth
from kora.http.security import current_principal, require_role
from kora.identity import IdentityError, Principal, Role

from .fakes import PASSWORD, PHONE, World


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.kora = SimpleNamespace(identity=world.service)
    install_problem_handlers(app, (IdentityError,))
    app.include_router(auth.router)

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        return {"user_id": str(principal.user_id)}

    @app.get("/staff")
    async def staff(
        principal: Annotated[Principal, Depends(require_role(Role.SUPPORT, "admin"))],
    ) -> dict[str, str]:
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as http:
        yield http


async def _login(client: httpx.AsyncClient, device: str = "phone-1") -> dict[str, str]:
    response = await client.post(
        "/v1/auth/login", json={"phone_number": PHONE, "password": PASSWORD, "device_id": device}
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def test_register_login_refresh_logout(client: httpx.AsyncClient, world: World) -> None:
    registered = await client.post(
        "/v1/auth/register", json={"phone_number": PHONE, "password": PASSWORD, "display_name": "Awa"}
    )
    assert registered.status_code == 201
    assert set(registered.json()) == {"user_id", "wallet_id"}

    login = await client.post(
        "/v1/auth/login", json={"phone_number": PHONE, "password": PASSWORD, "device_id": "phone-1"}
    )
    assert login.status_code == 200
    assert login.headers["cache-control"] == "no-store"
    tokens = login.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "Bearer"
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "X-Device-ID": "phone-1"}
    me = await client.get("/me", headers=headers)
    assert me.json() == {"user_id": registered.json()["user_id"]}

    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"], "device_id": "phone-1"}
    )
    assert refreshed.status_code == 200
    assert refreshed.headers["cache-control"] == "no-store"

    out = await client.post("/v1/auth/logout", headers=headers)
    assert out.status_code == 204
    assert out.content == b""
    gone = await client.get("/me", headers=headers)
    assert (gone.status_code, gone.json()["code"]) == (401, "invalid_token")


@pytest.mark.parametrize(
    "body",
    [
        {"phone_number": PHONE, "password": PASSWORD, "roles": ["admin"]},
        {"phone_number": PHONE},
        {"phone_number": 221771234567, "password": PASSWORD},
        {"phone_number": PHONE, "password": PASSWORD, "display_name": "x" * 65},
    ],
)
async def test_register_requests_are_strict(client: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await client.post("/v1/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert PASSWORD not in response.text


async def test_domain_errors_become_problems(client: httpx.AsyncClient) -> None:
    weak = await client.post("/v1/auth/register", json={"phone_number": PHONE, "password": "password123"})
    assert (weak.status_code, weak.json()["code"]) == (422, "weak_password")
    bad_phone = await client.post("/v1/auth/register", json={"phone_number": "+1", "password": PASSWORD})
    assert (bad_phone.status_code, bad_phone.json()["code"]) == (422, "invalid_phone_number")
    await client.post("/v1/auth/register", json={"phone_number": PHONE, "password": PASSWORD})
    taken = await client.post("/v1/auth/register", json={"phone_number": PHONE, "password": PASSWORD})
    assert (taken.status_code, taken.json()["code"]) == (409, "phone_number_taken")


async def test_lockout_answers_429_with_retry_after(client: httpx.AsyncClient, world: World) -> None:
    await client.post("/v1/auth/register", json={"phone_number": PHONE, "password": PASSWORD})
    codes = []
    for _ in range(world.settings.login_max_failures):
        response = await client.post(
            "/v1/auth/login", json={"phone_number": PHONE, "password": "wrong password", "device_id": "d"}
        )
        codes.append(response.json()["code"])
    assert codes[-1] == "account_locked"
    assert set(codes[:-1]) == {"invalid_credentials"}
    assert response.status_code == 429
    assert response.headers["retry-after"] == str(world.settings.login_lockout_seconds)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"X-Device-ID": "phone-1"}, "not_authenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz", "X-Device-ID": "phone-1"}, "not_authenticated"),
        ({"Authorization": "Bearer garbage", "X-Device-ID": "phone-1"}, "invalid_token"),
    ],
)
async def test_missing_or_bad_credentials(client: httpx.AsyncClient, headers: dict[str, str], code: str) -> None:
    response = await client.get("/me", headers=headers)
    assert (response.status_code, response.json()["code"]) == (401, code)


async def test_bearer_without_device_and_device_mismatch(client: httpx.AsyncClient) -> None:
    await client.post("/v1/auth/register", json={"phone_number": PHONE, "password": PASSWORD})
    tokens = await _login(client)
    no_device = await client.get("/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert no_device.json()["code"] == "not_authenticated"
    other = await client.get(
        "/me", headers={"Authorization": f"Bearer {tokens['access_token']}", "X-Device-ID": "phone-2"}
    )
    assert (other.status_code, other.json()["code"]) == (401, "device_mismatch")


async def test_require_role(client: httpx.AsyncClient, world: World) -> None:
    await client.post("/v1/auth/register", json={"phone_number": PHONE, "password": PASSWORD})
    tokens = await _login(client)
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "X-Device-ID": "phone-1"}
    denied = await client.get("/staff", headers=headers)
    assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")

    await world.service.create_staff("+2250701020304", PASSWORD, Role.SUPPORT)
    login = await client.post(
        "/v1/auth/login", json={"phone_number": "+2250701020304", "password": PASSWORD, "device_id": "desk"}
    )
    staff_headers = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Device-ID": "desk"}
    assert (await client.get("/staff", headers=staff_headers)).status_code == 200


def test_require_role_refuses_unknown_roles_at_declaration() -> None:
    with pytest.raises(ValueError, match="superuser"):
        require_role("superuser")
    with pytest.raises(ValueError, match="at least one"):
        require_role()


async def test_jwks_endpoint(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    keys = response.json()["keys"]
    assert [key["kid"] for key in keys] == ["k1"]
    assert "d" not in keys[0]  # public only
