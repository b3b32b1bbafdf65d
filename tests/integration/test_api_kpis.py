"""GET /v1/admin/kpis on SQLite and PostgreSQL: exact numbers after a known day of payments.

The day: two mobile-money providers (`alpha` then `beta` for collections, `beta` for
disbursements), real routing with fallback, declines, a provider error, an ambiguous answer, a
P2P transfer, settlements by reconciliation (its signed events through the real `settlement`
consumer) and by people (the ops route), a confirmed mismatch, and the `kpi` consumer's
projection fed by the relay. Every number asserted below follows from that script by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.bootstrap import Kora
from kora.events import DomainEvent, Origin
from kora.events.adapters.outbox import envelope_for
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.domain import RECONCILIATION_PRODUCER
from kora.events.ports import OutgoingMessage
from kora.events.signing import EventSigner
from kora.http.app import create_app
from kora.identity import Role
from kora.kernel import FixedClock
from kora.providers.ports import ProviderOperation, ProviderOutcome, ProviderRequest, ProviderResult
from tests.integration.events.test_settlement_consumer import RECON_KID, recon_verify_keys
from tests.support.api import Api, Customer, fresh_request_headers, new_phone
from tests.support.api import test_settings as settings_for

DAY = "2026-03-10"
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


class ScriptedProvider:
    """A provider whose answer is chosen by the amount's last three digits (a real
    `ProviderGateway`; the simulator plays the same roles over HTTP):
    x111 → certainly not taken (connection refused: routing may try the next provider),
    x222 → declined (`payer_not_found`), x444 → breaker open (not taken), x555 → no answer yet,
    anything else → succeeded."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _answer(self, request: ProviderRequest) -> ProviderResult:
        tail = request.money.amount % 1000
        if tail == 111 and self.name == "alpha":
            return ProviderResult(
                ProviderOutcome.FAILED, failure_code="provider_unavailable:connect_error", not_accepted=True
            )
        if tail == 222:
            return ProviderResult(ProviderOutcome.FAILED, failure_code="payer_not_found")
        if tail == 444:
            return ProviderResult(
                ProviderOutcome.FAILED, failure_code="provider_unavailable:breaker_open", not_accepted=True
            )
        if tail == 555:
            return ProviderResult(ProviderOutcome.PENDING)
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=f"{self.name}-{request.payment_id.hex}")

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        return self._answer(request)

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        return self._answer(request)

    async def status(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        return self._answer(request)


ROUTING = '{"collect": {"XOF": ["alpha", "beta"]}, "disburse": {"XOF": ["beta"]}}'


@dataclass
class World:
    api: Api
    kora: Kora
    clock: FixedClock
    recon: EventSigner

    def headers(self, who: Customer, *, key: str | None = None) -> dict[str, str]:
        fresh = fresh_request_headers(timestamp=int(self.clock.now().timestamp()))
        return who.headers(key=key or uuid.uuid4().hex, fresh=False, **fresh)

    async def staff(self, role: Role) -> Customer:
        phone, password = new_phone(), "staff-pass-" + uuid.uuid4().hex[:10]
        user_id = await self.kora.identity.create_staff(phone, password, role)
        person = Customer(phone, password, f"{role.value}-" + uuid.uuid4().hex[:6], str(user_id), "")
        assert (await self.api.login(person)).status_code == 200
        return person

    async def cash_in(self, who: Customer, amount: int) -> dict[str, Any]:
        response = await self.api.client.post("/v1/cash-ins", json={"amount": amount}, headers=self.headers(who))
        assert response.status_code in (201, 202), response.text
        body: dict[str, Any] = response.json()
        return body

    async def recon_event(self, event_type: str, aggregate: str, payload: dict[str, Any]) -> None:
        """Reconciliation's signed outcome event, through the embedded stream and the real
        `settlement` consumer, as its relay would publish it."""
        event = DomainEvent(event_type, 1, aggregate, str(uuid.uuid4()), payload, self.clock.now())
        envelope = envelope_for(event, Origin(correlation_id="corr-kpi"), self.recon, producer=RECONCILIATION_PRODUCER)
        bus = await self.kora.events.bus()
        assert isinstance(bus, SqlStreamBus)
        runner = await self.kora.events.runner("settlement")
        message = OutgoingMessage(
            envelope.subject, str(envelope.id), envelope.to_json(), {"Nats-Msg-Id": str(envelope.id)}
        )
        assert await bus.publish([message]) == [None]
        [delivery] = await bus.fetch(runner.handler.spec, batch=10, wait_seconds=0.0)
        assert (await runner.process(delivery)).word == "applied"

    async def project(self) -> None:
        """Relay the outbox and run the `kpi` consumer until both are idle."""
        relay = await self.kora.events.relay()
        while await relay.publish_once():
            pass
        bus = await self.kora.events.bus()
        runner = await self.kora.events.runner("kpi")
        while deliveries := await bus.fetch(runner.handler.spec, batch=200, wait_seconds=0.0):
            await runner.process_batch(deliveries)

    async def kpis(self, who: Customer | None, **params: str) -> httpx.Response:
        headers = {} if who is None else who.headers(fresh=False)
        return await self.api.client.get("/v1/admin/kpis", params=params, headers=headers)


@pytest.fixture
async def world(migrated_url: str, tmp_path: Path) -> AsyncIterator[World]:
    key = Ed25519PrivateKey.generate()
    settings = settings_for(
        migrated_url, tmp_path, KORA_PROVIDER_ROUTING=ROUTING, KORA_EVENT_VERIFY_KEYS=recon_verify_keys(key)
    )
    clock = FixedClock(T0)
    kora = Kora(settings, clock=clock, providers=[ScriptedProvider("alpha"), ScriptedProvider("beta")])
    app = create_app(kora)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as client:
            api = Api(client)
            api.kora = kora  # type: ignore[attr-defined]
            yield World(api, kora, clock, EventSigner(RECON_KID, key))


async def a_known_day(w: World) -> dict[str, str]:
    """The script of the day; returns the payment ids by name."""
    alice, bob = await w.api.customer(), await w.api.customer()
    ids = {}
    for name, amount in (
        ("alpha_1", 10_000),  # alpha: CAPTURED, settled by reconciliation at +2h
        ("rerouted", 20_111),  # alpha refuses the connection → beta: CAPTURED, settled by ops at +5h
        ("declined", 5_222),  # alpha: FAILED payer_not_found
        ("broken", 7_444),  # alpha breaker open → beta breaker open: FAILED provider_unavailable:breaker_open
        ("pending", 3_555),  # alpha: no answer yet, INITIATED
        ("alpha_2", 4_000),  # alpha: settled by reconciliation at +3h
        ("alpha_3", 6_000),  # alpha: settled by ops at +5h
    ):
        ids[name] = (await w.cash_in(alice, amount))["id"]
    transfer = await w.api.client.post(
        "/v1/transfers", json={"recipient_wallet_id": bob.wallet_id, "amount": 2_000}, headers=w.headers(alice)
    )
    assert transfer.status_code == 201, transfer.text
    cash_out = await w.api.client.post("/v1/cash-outs", json={"amount": 1_000}, headers=w.headers(alice))
    assert cash_out.status_code == 201, cash_out.text
    assert cash_out.json()["status"] == "CAPTURED"

    w.clock.advance(timedelta(hours=2))
    await w.recon_event("reconciliation.settlement_confirmed", "recon_report", _confirmed("alpha", [ids["alpha_1"]]))
    w.clock.advance(timedelta(hours=1))
    await w.recon_event("reconciliation.settlement_confirmed", "recon_report", _confirmed("alpha", [ids["alpha_2"]]))
    w.clock.advance(timedelta(hours=2))
    admin = await w.staff(Role.ADMIN)
    for provider, payment_ids in (("alpha", [ids["alpha_3"]]), ("beta", [ids["rerouted"]])):
        settled = await w.api.client.post(
            "/v1/ops/settlements",
            json={"provider": provider, "currency": "XOF", "payment_ids": payment_ids, "reference": f"OPS-{provider}"},
            headers=admin.headers(key=uuid.uuid4().hex, fresh=False),
        )
        assert settled.status_code == 200, settled.text
        assert settled.json()["settled"] == 1
    w.clock.advance(timedelta(hours=1))
    mismatch = {
        "case_id": str(uuid.uuid4()),
        "payment_id": ids["rerouted"],
        "outcome": "MISMATCH",
        "reason": "amount",
        "amount": 20_000,
        "currency": "XOF",
    }
    await w.recon_event("reconciliation.mismatch_confirmed", "payment", mismatch)
    await w.project()
    return ids


def _confirmed(provider: str, payment_ids: list[str]) -> dict[str, Any]:
    return {
        "report_id": str(uuid.uuid4()),
        "provider": provider,
        "currency": "XOF",
        "report_day": None,
        "reference": f"recon:{provider}:{uuid.uuid4().hex[:8]}",
        "chunk": 1,
        "chunks": 1,
        "payments": [{"payment_id": i, "amount": 1, "fee": 0, "net": 1} for i in payment_ids],
    }


def by(items: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    [found] = [item for item in items if all(item.get(k) == v for k, v in match.items())]
    return found


async def test_the_kpis_of_a_known_day_are_exact(world: World) -> None:
    await a_known_day(world)
    leader = await world.staff(Role.LEADERSHIP)
    response = await world.kpis(leader, **{"from": DAY, "to": DAY})
    assert response.status_code == 200, response.text
    kpis = response.json()
    assert kpis["range"] == {
        "from": "2026-03-10T00:00:00+00:00",
        "to": "2026-03-11T00:00:00+00:00",
        "as_of": "2026-03-10T15:00:00+00:00",
    }

    payments = kpis["payments"]
    assert by(payments["by_type"], payment_type="cash_in") == {
        "payment_type": "cash_in",
        "currency": "XOF",
        "count": 7,
        "succeeded": 4,
        "failed": 2,
        "cancelled": 0,
        "pending": 1,
        "reversed": 0,
        "volume": 10_000 + 20_111 + 4_000 + 6_000,
        "fees": 0,
        "success_rate": 0.666667,
    }
    assert by(payments["by_type"], payment_type="cash_out")["volume"] == 1_000
    assert by(payments["by_type"], payment_type="p2p")["succeeded"] == 1
    assert payments["by_currency"] == [
        {
            "currency": "XOF",
            "payment_type": None,
            "count": 9,
            "succeeded": 6,
            "failed": 2,
            "cancelled": 0,
            "pending": 1,
            "reversed": 0,
            "volume": 40_111 + 1_000 + 2_000,
            "fees": 0,
            "success_rate": 0.75,
        }
    ]

    assert kpis["success"] == {
        "succeeded": 6,
        "failed": 2,
        "finished": 8,
        "pending": 1,
        "cancelled": 0,
        "rate": 0.75,
        "failed_by_cause": {"declined": 1, "provider_error": 1, "risk": 0, "other": 0},
        "failed_by_code": [
            {"code": "payer_not_found", "cause": "declined", "count": 1},
            {"code": "provider_unavailable:breaker_open", "cause": "provider_error", "count": 1},
        ],
    }

    settlement = kpis["settlement"]
    # alpha: captured at 09:00, settled at 11:00 (7 200 s), 12:00 (10 800 s) and 14:00 (18 000 s);
    # nearest rank: p50 is the 2nd of 3, p95 and p99 the 3rd.
    assert settlement["delays"] == [
        {
            "provider": "alpha",
            "settled": 3,
            "p50_seconds": 10_800,
            "p95_seconds": 18_000,
            "p99_seconds": 18_000,
            "max_seconds": 18_000,
            "late": 0,
        },
        {
            "provider": "beta",
            "settled": 1,
            "p50_seconds": 18_000,
            "p95_seconds": 18_000,
            "p99_seconds": 18_000,
            "max_seconds": 18_000,
            "late": 0,
        },
    ]
    assert settlement["settled"] == [
        {"provider": "alpha", "currency": "XOF", "count": 3, "amount": 20_000, "by_reconciliation": 2},
        {"provider": "beta", "currency": "XOF", "count": 1, "amount": 20_111, "by_reconciliation": 0},
    ]
    assert settlement["unsettled"] == [
        {
            "provider": "beta",
            "payment_type": "cash_out",
            "currency": "XOF",
            "count": 1,
            "amount": 1_000,
            "overdue_count": 0,
            "overdue_amount": 0,
            "oldest_captured_at": "2026-03-10T09:00:00+00:00",
        }
    ]

    assert kpis["reconciliation"] == {
        "reconciled_payments": 3,
        "settled_by_reconciliation": 2,
        "mismatched_payments": 1,
        "mismatch_rate": 0.333333,
        "mismatches": [{"outcome": "MISMATCH", "reason": "amount", "currency": "XOF", "payments": 1, "amount": 20_000}],
        "amount_at_risk": [{"currency": "XOF", "amount": 20_000}],
    }

    alpha, beta = kpis["providers"]
    assert alpha == {
        "provider": "alpha",
        "payments": 5,
        "succeeded": 3,
        "failed": 1,
        "declined": 1,
        "provider_errors": 0,
        "pending": 1,
        "rerouted_away": 2,
        "rerouted_in": 0,
        "requests": 7,
        "errors": 2,
        "error_rate": 0.285714,
        "success_rate": 0.75,
    }
    assert beta == {
        "provider": "beta",
        "payments": 3,
        "succeeded": 2,
        "failed": 1,
        "declined": 0,
        "provider_errors": 1,
        "pending": 0,
        "rerouted_away": 0,
        "rerouted_in": 2,
        "requests": 3,
        "errors": 1,
        "error_rate": 0.333333,
        "success_rate": 0.666667,
    }
    assert kpis["retries"] == {
        "provider_payments": 8,
        "rerouted": 2,
        "retry_rate": 0.25,
        "reroutes": [{"from_provider": "alpha", "to_provider": "beta", "count": 2}],
    }

    daily = kpis["daily"]
    assert by(daily["payments"], payment_type="cash_in", status="CAPTURED") == {
        "day": DAY,
        "payment_type": "cash_in",
        "currency": "XOF",
        "status": "CAPTURED",
        "count": 4,
        "amount": 40_111,
        "fees": 0,
    }
    assert by(daily["payments"], payment_type="cash_in", status="SETTLED")["count"] == 4
    assert by(daily["payments"], payment_type="cash_in", status="FAILED")["amount"] == 5_222 + 7_444
    assert daily["new_customers"] == [{"day": DAY, "count": 2}]  # staff are not customers
    assert set(kpis["sources"]) >= {"payments", "reconciliation", "settlement.unsettled", "daily"}


async def test_unsettled_payments_turn_overdue_and_ranges_split_days(world: World) -> None:
    await a_known_day(world)
    admin = await world.staff(Role.ADMIN)
    world.clock.advance(timedelta(days=2))  # the cash-out was due by the end of J+1
    assert (await world.api.login(admin)).status_code == 200  # its access token expired meanwhile
    later = (await world.kpis(admin, **{"from": DAY})).json()
    [cash_out] = later["settlement"]["unsettled"]
    assert (cash_out["overdue_count"], cash_out["overdue_amount"]) == (1, 1_000)
    assert later["settlement"]["unsettled_by_currency"][0]["overdue_amount"] == 1_000

    # A datetime range: 11:30 to 12:30 holds one settlement (alpha_2 at 12:00), nothing created.
    window = (await world.kpis(admin, **{"from": "2026-03-10T11:30:00Z", "to": "2026-03-10T12:30:00"})).json()
    assert window["range"]["from"] == "2026-03-10T11:30:00+00:00"
    assert window["settlement"]["delays"] == [
        {
            "provider": "alpha",
            "settled": 1,
            "p50_seconds": 10_800,
            "p95_seconds": 10_800,
            "p99_seconds": 10_800,
            "max_seconds": 10_800,
            "late": 0,
        }
    ]
    assert window["success"]["finished"] == 0
    assert window["success"]["rate"] is None
    assert window["reconciliation"]["mismatch_rate"] == 0.0
    # The default range is today, by the service's clock (now 2026-03-12): nothing happened today.
    today = (await world.kpis(admin)).json()
    assert today["range"]["from"] == "2026-03-12T00:00:00+00:00"
    assert today["payments"]["by_type"] == []


async def test_only_leadership_and_admin_read_the_kpis(world: World) -> None:
    customer = await world.api.customer()
    assert (await world.kpis(None)).status_code == 401
    refused = await world.kpis(customer)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "forbidden"
    for role in (Role.SUPPORT, Role.RISK_ANALYST, Role.RECON_REVIEWER):
        assert (await world.kpis(await world.staff(role))).status_code == 403, role
    for role in (Role.LEADERSHIP, Role.ADMIN):
        assert (await world.kpis(await world.staff(role))).status_code == 200, role


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"from": "yesterday"}, "`from` is not an ISO date or datetime"),
        ({"from": "2026-13-01"}, "`from` is not an ISO date (YYYY-MM-DD)"),
        ({"from": "2026-03-10", "to": "2026-03-09"}, "`to` must be after `from`"),
        ({"from": "2026-01-01", "to": "2026-06-30"}, "the range is at most 92 days"),
        ({"from": "2026-03-10T10:00:00Z", "to": "2026-03-10T10:00:00Z"}, "`to` must be after `from`"),
    ],
)
async def test_a_bad_range_is_a_400_problem(world: World, params: dict[str, str], detail: str) -> None:
    leader = await world.staff(Role.LEADERSHIP)
    response = await world.kpis(leader, **params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_range"
    assert response.json()["detail"] == detail


async def test_the_route_is_declared_measured_and_traced(world: World, spans: Any) -> None:
    leader = await world.staff(Role.LEADERSHIP)
    assert (await world.kpis(leader, **{"from": DAY})).status_code == 200
    operation = (await world.api.client.get("/openapi.json")).json()["paths"]["/v1/admin/kpis"]["get"]
    assert {"200", "400", "401", "403"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "X-Device-ID"}
    registry = world.kora.registry
    assert registry.get_sample_value("kora_kpi_query_duration_seconds_count") == 1
    assert (
        registry.get_sample_value(
            "kora_http_requests_total", {"method": "GET", "route": "/v1/admin/kpis", "status": "200"}
        )
        == 1
    )
    names = [span.name for span in spans.get_finished_spans()]
    assert "kpis.report" in names
