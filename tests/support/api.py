"""A typed client for driving Kora's HTTP API in tests (in process through ASGI, or over a
real socket)."""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kora.platform.settings import Settings

_numbers = itertools.count(1)


def test_settings(database_url: str, tmp_path: Path, **extra: str) -> Settings:
    """Development-mode settings with cheap Argon2 and secrets in a temp file."""
    env = {
        "KORA_DATABASE_URL": database_url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        "KORA_LOG_LEVEL": "DEBUG",
        # The event pipeline runs in process only in the tests about it (they pass "true").
        "KORA_EVENTS_IN_PROCESS": "false",
        # The risk engine runs only in the tests about it (they pass "true"): the others move
        # more money, faster, than the default policy lets a new customer.
        "KORA_RISK_ENABLED": "false",
        **extra,
    }
    return Settings.from_env(env)


def fresh_request_headers(*, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The anti-replay headers of a sensitive request: now (or `timestamp`, Unix seconds) and a
    new random nonce (or `nonce`)."""
    return {
        "X-Request-Timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "X-Request-Nonce": secrets.token_hex(16) if nonce is None else nonce,
    }


def new_phone() -> str:
    """A unique, valid Côte d'Ivoire mobile number (E.164)."""
    return f"+22507{next(_numbers) + uuid.uuid4().int % 10_000_000:08d}"[:14]


@dataclass
class Customer:
    phone_number: str
    password: str
    device_id: str
    user_id: str
    wallet_id: str
    access_token: str = ""
    refresh_token: str = ""

    def headers(self, *, key: str | None = None, fresh: bool = True, **extra: str) -> dict[str, str]:
        """Bearer token and device id, plus fresh anti-replay headers unless `fresh=False`
        (headers in `extra`, e.g. `**{"X-Request-Nonce": n}`, replace the generated ones)."""
        headers = {"Authorization": f"Bearer {self.access_token}", "X-Device-ID": self.device_id}
        if fresh:
            headers.update(fresh_request_headers())
        headers.update(extra)
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def customer(self, *, fund: int = 0) -> Customer:
        phone = new_phone()
        password = "correct-horse-" + uuid.uuid4().hex[:10]
        reg = await self.client.post("/v1/auth/register", json={"phone_number": phone, "password": password})
        assert reg.status_code == 201, reg.text
        body = reg.json()
        customer = Customer(phone, password, "device-" + uuid.uuid4().hex[:8], body["user_id"], body["wallet_id"])
        await self.login(customer)
        if fund:
            await self.cash_in(customer, fund)
        return customer

    async def login(self, customer: Customer) -> httpx.Response:
        response = await self.client.post(
            "/v1/auth/login",
            json={
                "phone_number": customer.phone_number,
                "password": customer.password,
                "device_id": customer.device_id,
            },
        )
        if response.status_code == 200:
            customer.access_token = response.json()["access_token"]
            customer.refresh_token = response.json()["refresh_token"]
        return response

    async def cash_in(self, customer: Customer, amount: int, **body: Any) -> httpx.Response:
        response = await self.client.post(
            "/v1/cash-ins", json={"amount": amount, **body}, headers=customer.headers(key=uuid.uuid4().hex)
        )
        assert response.status_code == 201, response.text
        return response

    async def transfer(
        self,
        sender: Customer,
        *,
        key: str | None = None,
        nonce: str | None = None,
        timestamp: int | None = None,
        **body: Any,
    ) -> httpx.Response:
        """POST /v1/transfers with a new Idempotency-Key (or `key`) and fresh anti-replay
        headers (or the given `nonce` / `timestamp`)."""
        headers = sender.headers(key=key or uuid.uuid4().hex, **fresh_request_headers(timestamp=timestamp, nonce=nonce))
        return await self.client.post("/v1/transfers", json=body, headers=headers)

    async def cash_out(
        self,
        customer: Customer,
        amount: int,
        *,
        key: str | None = None,
        nonce: str | None = None,
        timestamp: int | None = None,
        **body: Any,
    ) -> httpx.Response:
        """POST /v1/cash-outs, like `transfer` (the status is the caller's to check)."""
        headers = customer.headers(
            key=key or uuid.uuid4().hex, **fresh_request_headers(timestamp=timestamp, nonce=nonce)
        )
        return await self.client.post("/v1/cash-outs", json={"amount": amount, **body}, headers=headers)

    async def balance(self, customer: Customer) -> dict[str, Any]:
        response = await self.client.get("/v1/wallet", headers=customer.headers())
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    # -- merchants ---------------------------------------------------------------------------
    async def admin(self) -> Customer:
        """A new administrator (made as the CLI does), logged in; it has no wallet."""
        phone, password = new_phone(), "admin-pass-" + uuid.uuid4().hex[:10]
        user_id = await self.kora.identity.create_admin(phone, password)  # type: ignore[attr-defined]
        admin = Customer(phone, password, "admin-" + uuid.uuid4().hex[:8], str(user_id), "")
        assert (await self.login(admin)).status_code == 200
        return admin

    async def staff(self, role: str) -> Customer:
        """A new staff member with `role` (made as the CLI does), logged in; no wallet."""
        from kora.identity import Role

        phone, password = new_phone(), "staff-pass-" + uuid.uuid4().hex[:10]
        user_id = await self.kora.identity.create_staff(phone, password, Role(role))  # type: ignore[attr-defined]
        member = Customer(phone, password, f"{role}-" + uuid.uuid4().hex[:8], str(user_id), "")
        assert (await self.login(member)).status_code == 200
        return member

    async def merchant(self, *, admin: Customer | None = None) -> Merchant:
        """A customer granted the merchant role by an admin, logged in again so its token has it."""
        admin = admin or await self.admin()
        customer = await self.customer()
        granted = await self.client.post(
            f"/v1/admin/users/{customer.user_id}/roles", json={"role": "merchant"}, headers=admin.headers()
        )
        assert granted.status_code == 200, granted.text
        merchant = Merchant(**vars(customer), merchant_id=granted.json()["merchant_id"])
        assert (await self.login(merchant)).status_code == 200
        return merchant

    async def pay_merchant(
        self, customer: Customer, merchant_id: str, amount: int, *, key: str | None = None, **body: Any
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/merchant-payments",
            json={"merchant_id": merchant_id, "amount": amount, **body},
            headers=customer.headers(key=key or uuid.uuid4().hex),
        )

    async def refund(
        self, merchant: Customer, payment_id: str, amount: int, *, key: str | None = None, **body: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/merchant/payments/{payment_id}/refunds",
            json={"amount": amount, **body},
            headers=merchant.headers(key=key or uuid.uuid4().hex),
        )

    # -- card payments -----------------------------------------------------------------------
    async def card_payment(
        self,
        merchant: Customer,
        amount: int,
        *,
        card_token: str = "4111111111111111",  # noqa: S107 (the simulator's plain test card)
        key: str | None = None,
        **body: Any,
    ) -> httpx.Response:
        """POST /v1/card-payments (the status is the caller's to check)."""
        return await self.client.post(
            "/v1/card-payments",
            json={"amount": amount, "card_token": card_token, **body},
            headers=merchant.headers(key=key or uuid.uuid4().hex, fresh=False),
        )

    async def capture(
        self, merchant: Customer, payment_id: str, amount: int | None = None, *, key: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/card-payments/{payment_id}/capture",
            json={} if amount is None else {"amount": amount},
            headers=merchant.headers(key=key or uuid.uuid4().hex, fresh=False),
        )

    async def void(self, merchant: Customer, payment_id: str, *, key: str | None = None) -> httpx.Response:
        return await self.client.post(
            f"/v1/card-payments/{payment_id}/void", headers=merchant.headers(key=key or uuid.uuid4().hex, fresh=False)
        )

    async def card_refund(
        self, merchant: Customer, payment_id: str, amount: int, *, key: str | None = None, **body: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/card-payments/{payment_id}/refunds",
            json={"amount": amount, **body},
            headers=merchant.headers(key=key or uuid.uuid4().hex),
        )

    async def card(self, merchant: Customer, payment_id: str) -> httpx.Response:
        return await self.client.get(f"/v1/card-payments/{payment_id}", headers=merchant.headers(fresh=False))


@dataclass
class Merchant(Customer):
    merchant_id: str = ""  # the merchant's account id: what customers pay to
