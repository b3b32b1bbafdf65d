"""The card payment test stack: the provider simulator (its card acquirer) and Kora, each a real
HTTP server. Kora is served in the test's own event loop, so a test can also call Kora's job
directly (`sweep_card_payments`) on the same database connections; the simulator runs in its
thread and delivers its signed chargeback notifications to Kora over HTTP. One FixedClock,
started at the real time, drives both (authorization expiry, notification timestamps)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.kernel import FixedClock
from kora.ledger import AccountKind
from kora.providers.adapters.card import CARD_SIGNATURE_HEADER, HttpCardAcquirer
from kora.providers.resilience import ProviderGuard, ProviderPolicy, RetryPolicy, TimeoutPolicy
from kora.providers.webhooks import signature_header
from kora.simulator import SimulatorConfig, create_simulator_app
from tests.integration.simulator.conftest import RunningServer, serve
from tests.support.api import Api, Merchant
from tests.support.api import test_settings as settings_for
from tests.support.net import free_port

SECRET = "whsec_card_test_only"  # a test value, shared with the simulator
CARD = "4111111111111111"
DECLINED_CARD = "4000000000000002"  # the simulator's magic: insufficient funds
CHARGEBACK_CARD = "4000000000000070"  # the simulator's magic: a chargeback after capture
TTL_SECONDS = 3600


@dataclass
class CardStack:
    kora: Kora
    clock: FixedClock
    api: Api
    kora_url: str
    simulator: RunningServer

    async def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.simulator.url, timeout=10) as admin:
            response = await admin.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json()

    async def authorization(self, authorization_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.sim("GET", f"/card/v1/authorizations/{authorization_id}")
        return result

    async def authorized(self, merchant: Merchant, amount: int, card: str = CARD, **body: Any) -> dict[str, Any]:
        response = await self.api.card_payment(merchant, amount, card_token=card, **body)
        assert response.status_code == 201, response.text
        payment: dict[str, Any] = response.json()
        assert payment["status"] == "AUTHORIZED", payment
        return payment

    async def captured(self, merchant: Merchant, amount: int, card: str = CARD) -> dict[str, Any]:
        payment = await self.authorized(merchant, amount, card)
        response = await self.api.capture(merchant, payment["id"])
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def balance(self, kind: AccountKind, owner: str = "kora") -> int:
        async with self.kora.unit_of_work() as uow:
            account = await uow.ledger.system_account(kind, "XOF", owner)
            balance = await uow.ledger.balance(account.id)
            await uow.commit()
        return int(balance.posted)

    async def merchant_balance(self, merchant: Merchant) -> tuple[int, int]:
        """(posted, available) of the merchant's account."""
        response = await self.api.client.get("/v1/merchant/balance", headers=merchant.headers(fresh=False))
        assert response.status_code == 200, response.text
        return int(response.json()["balance"]), int(response.json()["available_balance"])

    async def metric(self, name: str, **labels: str) -> float:
        text = (await self.api.client.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    async def audit(self, subject: str) -> list[tuple[str, dict[str, Any]]]:
        import sqlalchemy as sa

        async with self.kora.engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT action, details FROM audit_log WHERE subject = :s ORDER BY chain, position"),
                {"s": subject},
            )
            return [(r.action, json.loads(r.details) if isinstance(r.details, str) else r.details) for r in rows]

    async def notify(self, body: dict[str, Any], *, secret: str = SECRET, at: int | None = None) -> httpx.Response:
        """Deliver an acquirer notification to Kora as the acquirer would (signed)."""
        raw = json.dumps(body, separators=(",", ":")).encode()
        stamp = int(self.clock.now().timestamp()) if at is None else at
        headers = {"Content-Type": "application/json", CARD_SIGNATURE_HEADER: signature_header(secret, stamp, raw)}
        return await self.api.client.post("/v1/webhooks/acquirers/card", content=raw, headers=headers)

    async def wait_for(self, merchant: Merchant, payment_id: str, status: str) -> dict[str, Any]:
        for _ in range(200):
            payment: dict[str, Any] = (await self.api.card(merchant, payment_id)).json()
            if payment["status"] == status:
                return payment
            await asyncio.sleep(0.02)
        raise AssertionError(f"payment stayed {payment['status']}, expected {status}")


def chargeback_event(payment: dict[str, Any], amount: int, *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": "chargeback.created",
        "data": {
            "authorization_id": payment["authorization_id"],
            "merchant_reference": payment["id"],
            "amount": amount,
            "currency": "XOF",
            "reason": "fraud",
        },
    }


@asynccontextmanager
async def card_stack(database_url: str, tmp_path: Path, *, latency_ms: int = 0) -> AsyncIterator[CardStack]:
    clock = FixedClock(datetime.now(UTC))
    config = SimulatorConfig.for_tests()
    card = config.providers["card"]
    card.webhook_secret = SECRET
    card.authorization_ttl_seconds = TTL_SECONDS
    card.chargeback_after_seconds = 0
    simulator = serve(create_simulator_app(config, clock=clock))
    policy = ProviderPolicy(
        default_timeout=TimeoutPolicy(connect=0.3, read=0.4, total=0.4),
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=3.0),
    )
    client = httpx.AsyncClient()
    acquirer = HttpCardAcquirer("card", simulator.url, client=client, guard=ProviderGuard("card", policy))
    settings = settings_for(
        database_url,
        tmp_path,
        KORA_PROVIDER_CARD_WEBHOOK_SECRET=SECRET,
        KORA_SWEEP_INTERVAL_SECONDS="0",  # the tests run the card job themselves
    )
    kora = Kora(settings, clock=clock, acquirers=[acquirer])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(kora), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    serving = asyncio.get_running_loop().create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not serving.done(), "Kora did not start"
        assert time.monotonic() < deadline, "Kora did not start in time"
        await asyncio.sleep(0.01)
    kora_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=kora_url, timeout=10) as http:
            api = Api(http)
            api.kora = kora  # type: ignore[attr-defined]
            stack = CardStack(kora, clock, api, kora_url, simulator)
            patch: dict[str, Any] = {"webhook_url": f"{kora_url}/v1/webhooks/acquirers/card"}
            if latency_ms:
                patch["latency"] = {"kind": "fixed", "min_ms": latency_ms, "max_ms": latency_ms}
            await stack.sim("PATCH", "/_sim/providers/card", json=patch)
            yield stack
    finally:
        server.should_exit = True
        await serving
        await client.aclose()
        simulator.stop()
