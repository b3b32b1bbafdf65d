"""Risk reviews against a real provider (the simulator's MoMo API) and the operational controls,
on SQLite and PostgreSQL: an approved cash-out goes to its provider only when operations allow
it; the sweeper's give-up age runs from the approval, not from when the payment was held; a
retry of the customer's request answers the payment as the decision left it; a second decision
is refused; turning the engine off does not strand held payments."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.identity import Role
from kora.payments.adapters.tables import payments
from kora.simulator import SimulatorConfig, create_simulator_app
from tests.integration.simulator.conftest import RunningServer, serve
from tests.integration.test_api_risk import FUNDING, decide, wallet
from tests.support.api import Api, Customer, new_phone
from tests.support.api import test_settings as settings_for


@dataclass
class Stack:
    api: Api
    kora: Kora  # on the test's event loop (the served one runs on the server's thread)
    simulator: RunningServer

    async def staff(self, role: str) -> Customer:
        phone, password = new_phone(), "staff-pass-" + uuid.uuid4().hex[:10]
        if role == "admin":
            user_id = await self.kora.identity.create_admin(phone, password)
        else:
            user_id = await self.kora.identity.create_staff(phone, password, Role(role))
        member = Customer(phone, password, f"{role}-" + uuid.uuid4().hex[:8], str(user_id), "")
        assert (await self.api.login(member)).status_code == 200
        return member

    async def customer(self, code: str) -> Customer:
        """A customer whose MoMo number asks the simulator for behaviour `code` ("00" succeeds,
        "40" stays pending until resolved); funded through the sandbox provider."""
        phone = f"+22505{uuid.uuid4().int % 100:02d}0000{code}"
        password = "risk-review-" + uuid.uuid4().hex[:10]
        registered = await self.api.client.post("/v1/auth/register", json={"phone_number": phone, "password": password})
        assert registered.status_code == 201, registered.text
        body = registered.json()
        customer = Customer(phone, password, "device-" + uuid.uuid4().hex[:8], body["user_id"], body["wallet_id"])
        await self.api.login(customer)
        for _ in range(5):
            await self.api.cash_in(customer, FUNDING, provider="sandbox")
        return customer


@pytest.fixture
async def stack(migrated_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    simulator = serve(create_simulator_app(SimulatorConfig.for_tests()))
    settings = settings_for(
        migrated_url,
        tmp_path,
        KORA_RISK_ENABLED="true",
        KORA_PROVIDER_MOMO_URL=simulator.url,
        KORA_DEFAULT_PROVIDER="momo",
        KORA_SWEEP_INTERVAL_SECONDS="0",  # the test sweeps when it wants
    )
    server = serve(create_app(Kora(settings)))
    local = Kora(settings)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
            yield Stack(Api(client), local, simulator)
    finally:
        await local.aclose()
        server.stop()
        simulator.stop()


async def held_cash_out(stack: Stack, customer: Customer, **headers: str) -> dict[str, Any]:
    response = await stack.api.client.post(
        "/v1/cash-outs",
        json={"amount": 70_000, "provider": "momo"},  # above the cooled soft limit (62,500): review
        headers=customer.headers(key=headers.get("key", uuid.uuid4().hex)),
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "AUTHORIZED", response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_approval_waits_while_operations_stop_the_provider(stack: Stack) -> None:
    api = stack.api
    alice = await stack.customer("00")
    analyst, admin = await stack.staff("risk_analyst"), await stack.staff("admin")
    held = await held_cash_out(stack, alice)

    disabled = await api.client.put(
        "/v1/admin/controls/providers/momo", json={"reason": "timeouts at the provider"}, headers=admin.headers()
    )
    assert disabled.status_code == 200, disabled.text
    refused = await decide(api, analyst, held["id"], "approve")
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "provider_unavailable"
    assert await wallet(api, alice) == (5 * FUNDING, 5 * FUNDING - 70_000)  # still held
    queue = (await api.client.get("/v1/admin/risk/reviews", headers=analyst.headers())).json()
    assert held["id"] in [item["payment_id"] for item in queue["items"]]

    paused = await api.client.put(
        "/v1/admin/controls/operations/cash-out", json={"reason": "double payouts"}, headers=admin.headers()
    )
    assert paused.status_code == 200, paused.text
    assert (await api.client.delete("/v1/admin/controls/providers/momo", headers=admin.headers())).status_code == 200
    assert (await decide(api, analyst, held["id"], "approve")).json()["code"] == "operation_paused"
    # Rejecting asks no provider: operations do not stop it.
    rejected = await decide(api, analyst, held["id"], "reject")
    assert rejected.status_code == 200, rejected.text
    assert await wallet(api, alice) == (5 * FUNDING, 5 * FUNDING)


async def test_the_give_up_age_of_an_approved_cash_out_runs_from_its_approval(stack: Stack) -> None:
    api, kora = stack.api, stack.kora
    alice = await stack.customer("40")  # the provider keeps it pending
    analyst = await stack.staff("risk_analyst")
    held = await held_cash_out(stack, alice)
    # It waited 25 hours in the queue (a weekend): longer than the sweeper's give-up age.
    async with kora.engine.begin() as conn:
        await conn.execute(
            payments.update()
            .where(payments.c.id == uuid.UUID(held["id"]))
            .values(created_at=kora.clock.now() - timedelta(hours=25))
        )
    approved = await decide(api, analyst, held["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "AUTHORIZED"  # the provider has not answered yet

    swept = await kora.payments.sweep_pending(older_than=timedelta(0), give_up_after=timedelta(hours=24))
    assert swept.get("gave_up", 0) == 0, swept
    assert swept.get("still_pending") == 1, swept
    assert await wallet(api, alice) == (5 * FUNDING, 5 * FUNDING - 70_000)  # still held at the provider
    # Approved, it left the review queue (it waits for the provider, not for a person).
    queue = (await api.client.get("/v1/admin/risk/reviews", headers=analyst.headers())).json()
    assert held["id"] not in [item["payment_id"] for item in queue["items"]]


async def test_a_retry_answers_the_decided_payment_and_a_second_decision_is_refused(stack: Stack) -> None:
    api = stack.api
    alice, bob = await stack.customer("00"), await stack.customer("00")
    analyst = await stack.staff("risk_analyst")
    key = uuid.uuid4().hex
    held = await api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=60_000)
    assert held.json()["status"] == "AUTHORIZED", held.text
    assert (await decide(api, analyst, held.json()["id"], "approve")).status_code == 200
    retry = await api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=60_000)
    assert retry.status_code == 201, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert (retry.json()["id"], retry.json()["status"]) == (held.json()["id"], "SETTLED")

    cash_in = await api.client.post(
        "/v1/cash-ins", json={"amount": 60_000, "provider": "sandbox"}, headers=bob.headers(key=uuid.uuid4().hex)
    )
    assert cash_in.json()["status"] == "INITIATED", cash_in.text  # held: nothing to hold, nobody asked
    assert (await decide(api, analyst, cash_in.json()["id"], "approve")).json()["status"] == "CAPTURED"
    again = await decide(api, analyst, cash_in.json()["id"], "reject")
    assert (again.status_code, again.json()["code"]) == (409, "risk_review_decided")


async def test_turning_the_engine_off_does_not_strand_held_payments(migrated_url: str, tmp_path: Path) -> None:
    from tests.conftest import _api

    async with _api(migrated_url, tmp_path, KORA_RISK_ENABLED="true") as api:
        alice = await api.customer()
        for _ in range(5):
            await api.cash_in(alice, FUNDING)
        bob = await api.customer()
        held = (await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=60_000)).json()
        assert held["status"] == "AUTHORIZED"
    async with _api(migrated_url, tmp_path, KORA_RISK_ENABLED="false") as api:
        analyst = await api.staff("risk_analyst")
        queue = (await api.client.get("/v1/admin/risk/reviews", headers=analyst.headers())).json()
        assert held["id"] in [item["payment_id"] for item in queue["items"]]
        approved = await decide(api, analyst, held["id"], "approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "SETTLED"
        assert await wallet(api, bob) == (60_000, 60_000)
        # and new payments are not judged while it is off
        big = await api.transfer(bob, recipient_wallet_id=alice.wallet_id, amount=55_000)
        assert big.json()["status"] == "SETTLED", big.text
