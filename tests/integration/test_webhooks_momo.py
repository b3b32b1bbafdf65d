"""MoMo callbacks end to end: Kora tells the simulator where to call back (KORA_PUBLIC_BASE_URL
→ X-Callback-Url); the unsigned callback is only a hint — Kora asks the status API and records
that answer, so a forged callback that lies about the outcome changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.simulator import SimulatorConfig, create_simulator_app
from tests.integration.simulator.conftest import RunningServer, serve
from tests.support.api import Api, Customer
from tests.support.api import test_settings as settings_for
from tests.support.net import free_port


@dataclass
class Stack:
    simulator: RunningServer
    api: Api

    async def customer(self, code: str) -> Customer:
        phone = f"+22505{uuid.uuid4().int % 100:02d}0000{code}"
        password = "momo-hook-" + uuid.uuid4().hex[:10]
        registered = await self.api.client.post("/v1/auth/register", json={"phone_number": phone, "password": password})
        assert registered.status_code == 201, registered.text
        body = registered.json()
        customer = Customer(phone, password, "device-" + uuid.uuid4().hex[:8], body["user_id"], body["wallet_id"])
        await self.api.login(customer)
        return customer

    async def status(self, customer: Customer, payment_id: str) -> str:
        response = await self.api.client.get(f"/v1/payments/{payment_id}", headers=customer.headers())
        return str(response.json()["status"])

    async def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.simulator.url) as admin:
            response = await admin.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json()


@pytest.fixture
async def stack(migrated_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    simulator = serve(create_simulator_app(SimulatorConfig.for_tests()))
    port = free_port()
    settings = settings_for(
        migrated_url,
        tmp_path,
        KORA_PROVIDER_MOMO_URL=simulator.url,
        KORA_DEFAULT_PROVIDER="momo",
        KORA_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        KORA_SWEEP_INTERVAL_SECONDS="0",  # only callbacks resolve payments here
    )
    kora = serve(create_app(Kora(settings)), port=port)
    async with httpx.AsyncClient(base_url=kora.url, timeout=10) as client:
        try:
            yield Stack(simulator, Api(client))
        finally:
            kora.stop()
            simulator.stop()


async def test_a_callback_prompts_a_status_query_that_settles_the_payment(stack: Stack) -> None:
    customer = await stack.customer("40")  # stuck at the provider until resolved
    response = await stack.api.cash_in(customer, 6_000)
    payment_id = response.json()["id"]
    assert response.json()["status"] == "INITIATED"
    [operation] = (await stack.sim("GET", "/_sim/ledger", params={"reference": payment_id}))["operations"]

    # A forged callback claims success: Kora asks the provider, which still says PENDING.
    lie = {"externalId": payment_id, "status": "SUCCESSFUL", "financialTransactionId": "fake"}
    forged = await stack.api.client.post("/v1/webhooks/momo", json=lie)
    assert (forged.status_code, forged.json()) == (200, {"status": "received"})
    assert await stack.status(customer, payment_id) == "INITIATED"

    await stack.sim("POST", f"/_sim/operations/{operation['id']}/resolve", json={"status": "succeeded"})
    for _ in range(100):  # the simulator's one callback arrives; Kora asks and records
        if await stack.status(customer, payment_id) == "CAPTURED":
            break
        await asyncio.sleep(0.05)
    assert await stack.status(customer, payment_id) == "CAPTURED"
    assert (await stack.api.balance(customer))["balance"] == 6_000
    [delivered] = (await stack.sim("GET", "/_sim/ledger", params={"reference": payment_id}))["operations"]
    # Sent to the X-Callback-Url Kora gave, and answered 2xx.
    assert (delivered["callbacks_sent"], delivered["callbacks_delivered"]) == (1, 1)

    # A later callback that lies about a failure changes nothing either.
    late_lie = await stack.api.client.post("/v1/webhooks/momo", json={"externalId": payment_id, "status": "FAILED"})
    assert late_lie.status_code == 200
    assert await stack.status(customer, payment_id) == "CAPTURED"


async def test_a_callback_that_names_no_payment_is_refused(stack: Stack) -> None:
    response = await stack.api.client.post("/v1/webhooks/momo", json={"status": "SUCCESSFUL"})
    assert response.status_code == 400
    assert response.json()["code"] == "webhook_malformed"
    unknown = await stack.api.client.post("/v1/webhooks/momo", json={"externalId": str(uuid.uuid4())})
    assert (unknown.status_code, unknown.json()) == (200, {"status": "received"})
