"""Controlled degradation through the real API, on SQLite and PostgreSQL: a paused operation
is refused with 503 and moves no money, a disabled provider is skipped by routing (and with
none left the request is refused, changing nothing), the admin API validates and audits, the
switches are exported as metrics, and `kora ops` drives the same controls."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from click.testing import CliRunner

from kora.audit import list_audit
from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.providers.adapters.sandbox import SandboxGateway
from tests.support.api import Api, Customer
from tests.support.api import test_settings as settings_for

CONTROLS = "/v1/admin/controls"


async def pause(api: Api, admin: Customer, operation: str, **body: Any) -> httpx.Response:
    return await api.client.put(
        f"{CONTROLS}/operations/{operation}",
        json={"reason": "provider outage drill", **body},
        headers=admin.headers(fresh=False),
    )


async def ledger_snapshot(api: Api, customer: Customer) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """The wallet's balances, its entries and its payments: what 'moved no money' compares."""
    wallet = await api.balance(customer)
    entries = (await api.client.get("/v1/wallet/entries", headers=customer.headers())).json()["items"]
    payments = (await api.client.get("/v1/payments", headers=customer.headers())).json()["items"]
    return wallet, entries, payments


def metric(body: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_paused_cash_out_is_refused_with_retry_after_and_moves_no_money(api: Api) -> None:
    admin = await api.admin()
    customer = await api.customer(fund=10_000)
    before = await ledger_snapshot(api, customer)

    paused = await pause(api, admin, "cash-out", incident="INC-4021", retry_after_seconds=120)
    assert paused.status_code == 200, paused.text
    assert paused.json()["active"] is True
    assert paused.json()["changed"] is True

    key, nonce = uuid.uuid4().hex, uuid.uuid4().hex
    refused = await api.cash_out(customer, 4_000, key=key, nonce=nonce)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["Retry-After"] == "120"
    assert refused.json()["code"] == "operation_paused"
    assert await ledger_snapshot(api, customer) == before  # no hold, no entry, no payment

    # Other operations go ahead.
    recipient = await api.customer()
    moved = await api.transfer(customer, recipient_wallet_id=recipient.wallet_id, amount=1_000)
    assert moved.status_code == 201, moved.text

    metrics = (await api.client.get("/metrics")).text
    assert metric(metrics, "kora_operation_paused", operation="cash-out") == 1.0
    assert metric(metrics, "kora_operation_paused", operation="p2p") == 0.0
    assert metric(metrics, "kora_operation_refusals_total", operation="cash-out", reason="operation_paused") == 1.0

    resumed = await api.client.delete(f"{CONTROLS}/operations/cash-out", headers=admin.headers(fresh=False))
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {
        "kind": "operation",
        "target": "cash-out",
        "active": False,
        "changed": True,
        "control": None,
    }
    # The refused request left nothing behind: the same Idempotency-Key and even the same nonce
    # now go through as a first request.
    done = await api.cash_out(customer, 4_000, key=key, nonce=nonce)
    assert done.status_code == 201, done.text
    assert "Idempotent-Replayed" not in done.headers
    assert (await api.balance(customer))["balance"] == 10_000 - 1_000 - 4_000
    metrics = (await api.client.get("/metrics")).text
    assert metric(metrics, "kora_operation_paused", operation="cash-out") == 0.0


async def test_paused_cash_in_p2p_and_merchant_payments_are_refused(api: Api) -> None:
    admin = await api.admin()
    merchant = await api.merchant(admin=admin)
    customer = await api.customer(fund=5_000)
    for operation in ("cash-in", "p2p", "merchant-payment"):
        assert (await pause(api, admin, operation)).status_code == 200
    before = await ledger_snapshot(api, customer)

    refusals = [
        await api.client.post("/v1/cash-ins", json={"amount": 500}, headers=customer.headers(key=uuid.uuid4().hex)),
        await api.transfer(customer, recipient_wallet_id=merchant.wallet_id, amount=500),
        await api.pay_merchant(customer, merchant.merchant_id, 500),
    ]
    assert [(r.status_code, r.json()["code"]) for r in refusals] == [(503, "operation_paused")] * 3
    assert all(r.headers["Retry-After"] == "300" for r in refusals)
    assert await ledger_snapshot(api, customer) == before

    # An unauthenticated caller learns nothing: authentication answers first.
    anonymous = await api.client.post("/v1/transfers", json={"amount": 1, "recipient_wallet_id": merchant.wallet_id})
    assert anonymous.status_code == 401


async def test_the_admin_api_is_admin_only_validates_and_audits(api: Api) -> None:
    admin = await api.admin()
    customer = await api.customer()
    assert (await api.client.get(CONTROLS)).status_code == 401
    assert (await api.client.get(CONTROLS, headers=customer.headers(fresh=False))).status_code == 403
    forbidden = await api.client.put(
        f"{CONTROLS}/operations/cash-out", json={"reason": "not mine to pause"}, headers=customer.headers(fresh=False)
    )
    assert forbidden.status_code == 403

    headers = admin.headers(fresh=False)
    bad = {
        "unknown operation": await api.client.put(
            f"{CONTROLS}/operations/refund", json={"reason": "x" * 10}, headers=headers
        ),
        "no reason": await api.client.put(f"{CONTROLS}/operations/p2p", json={}, headers=headers),
        "unknown field": await pause(api, admin, "p2p", until="tomorrow"),
        "pii in reason": await pause(api, admin, "p2p", reason="customer +225 07 01 02 03 04 says so"),
        "retry after": await pause(api, admin, "p2p", retry_after_seconds=0),
        "unknown provider": await api.client.put(
            f"{CONTROLS}/providers/mtn", json={"reason": "drill"}, headers=headers
        ),
        "bad provider": await api.client.put(f"{CONTROLS}/providers/MTN!", json={"reason": "drill"}, headers=headers),
    }
    codes = {what: (r.status_code, r.json()["code"]) for what, r in bad.items()}
    assert codes == {
        "unknown operation": (422, "validation_error"),
        "no reason": (422, "validation_error"),
        "unknown field": (422, "validation_error"),
        "pii in reason": (422, "invalid_control"),
        "retry after": (422, "validation_error"),
        "unknown provider": (422, "unknown_provider"),
        "bad provider": (422, "validation_error"),
    }
    listed = (await api.client.get(CONTROLS, headers=headers)).json()
    assert [o["paused"] for o in listed["operations"]] == [False] * 4  # nothing was set

    assert (await pause(api, admin, "p2p", incident="INC-1")).status_code == 200
    disabled = await api.client.put(f"{CONTROLS}/providers/sandbox", json={"reason": "drill"}, headers=headers)
    assert disabled.status_code == 200, disabled.text
    listed = (await api.client.get(CONTROLS, headers=headers)).json()
    p2p = next(o for o in listed["operations"] if o["operation"] == "p2p")
    assert p2p["paused"] is True
    assert p2p["incident"] == "INC-1"
    assert p2p["set_by"] == f"user:{admin.user_id}"
    assert listed["providers"] == [
        {
            "provider": "sandbox",
            "configured": True,
            "disabled": True,
            "reason": "drill",
            "incident": None,
            "retry_after_seconds": 300,
            "set_by": f"user:{admin.user_id}",
            "set_at": listed["providers"][0]["set_at"],
        }
    ]
    assert {(r["operation"], r["currency"]): r["effective"] for r in listed["routes"]} == {
        ("collect", "*"): [],
        ("disburse", "*"): [],
    }
    again = await api.client.delete(f"{CONTROLS}/providers/sandbox", headers=headers)
    assert again.json()["changed"] is True
    assert (await api.client.delete(f"{CONTROLS}/providers/sandbox", headers=headers)).json()["changed"] is False

    kora: Kora = api.kora  # type: ignore[attr-defined]
    async with kora.engine.connect() as conn:
        trail = [(e.action, e.subject, e.outcome) for e in reversed(await list_audit(conn, limit=50))]
    ops_trail = [t for t in trail if t[0].startswith("ops.")]
    assert ops_trail == [
        ("ops.operation.paused", "operation:p2p", "success"),
        ("ops.provider.disabled", "provider:sandbox", "success"),
        ("ops.provider.enabled", "provider:sandbox", "success"),
        ("ops.provider.enabled", "provider:sandbox", "noop"),
    ]
    assert (await kora.verify_audit()).ok


# ------------------------------------------------------------------ routing around a disabled provider
class NamedSandbox(SandboxGateway):
    def __init__(self, name: str) -> None:
        self.name = name


ROUTING = {"disburse": {"XOF": ["mtn", "orange"]}, "collect": {"XOF": ["mtn", "orange"]}}


@pytest.fixture
async def routed_api(migrated_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The API with two providers (mtn first, then orange) on every route."""
    settings = settings_for(migrated_url, tmp_path, KORA_PROVIDER_ROUTING=json.dumps(ROUTING))
    kora = Kora(settings, providers=[NamedSandbox("mtn"), NamedSandbox("orange")])
    app = create_app(kora)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as client:
            handle = Api(client)
            handle.kora = kora  # type: ignore[attr-defined]
            yield handle


async def test_a_disabled_provider_is_skipped_by_routing_and_with_none_left_nothing_changes(routed_api: Api) -> None:
    api = routed_api
    admin = await api.admin()
    headers = admin.headers(fresh=False)
    customer = await api.customer(fund=20_000)
    first = await api.cash_out(customer, 1_000)
    assert first.json()["provider"] == "mtn"

    mtn_down = await api.client.put(
        f"{CONTROLS}/providers/mtn",
        json={"reason": "mtn disbursements timing out", "retry_after_seconds": 90},
        headers=headers,
    )
    assert mtn_down.status_code == 200, mtn_down.text
    rerouted = await api.cash_out(customer, 2_000)
    assert rerouted.status_code == 201, rerouted.text
    assert (rerouted.json()["provider"], rerouted.json()["status"]) == ("orange", "CAPTURED")
    cash_in = await api.client.post(
        "/v1/cash-ins", json={"amount": 700}, headers=customer.headers(key=uuid.uuid4().hex)
    )
    assert cash_in.json()["provider"] == "orange"

    # The client may not pick the disabled provider either.
    named = await api.cash_out(customer, 500, provider="mtn")
    assert (named.status_code, named.json()["code"], named.headers["Retry-After"]) == (
        503,
        "provider_unavailable",
        "90",
    )

    orange_down = await api.client.put(f"{CONTROLS}/providers/orange", json={"reason": "orange too"}, headers=headers)
    assert orange_down.status_code == 200
    before = await ledger_snapshot(api, customer)
    refused = await api.cash_out(customer, 3_000)
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "provider_unavailable"
    assert refused.headers["Retry-After"] == "90"  # the soonest either provider may be back
    assert await ledger_snapshot(api, customer) == before

    # Through the payments use case directly (no HTTP guard), the registry still refuses it.
    from kora.payments import ProviderMoveCommand
    from kora.providers import NoProviderAvailable

    kora: Kora = api.kora  # type: ignore[attr-defined]
    with pytest.raises(NoProviderAvailable):
        await kora.payments.cash_out(
            ProviderMoveCommand(
                user_id=uuid.UUID(customer.user_id), amount=3_000, currency="XOF", idempotency_key=uuid.uuid4().hex
            )
        )
    assert await ledger_snapshot(api, customer) == before

    metrics = (await api.client.get("/metrics")).text
    assert metric(metrics, "kora_provider_disabled", provider="mtn") == 1.0
    assert metric(metrics, "kora_provider_disabled", provider="orange") == 1.0
    assert metric(metrics, "kora_operation_refusals_total", operation="cash-out", reason="no_provider") == 1.0
    assert metric(metrics, "kora_operation_refusals_total", operation="cash-out", reason="provider_disabled") == 1.0

    assert (await api.client.delete(f"{CONTROLS}/providers/mtn", headers=headers)).status_code == 200
    back = await api.cash_out(customer, 3_000)
    assert back.json()["provider"] == "mtn"
    assert (await api.balance(customer))["balance"] == 20_000 - 1_000 - 2_000 + 700 - 3_000


# ------------------------------------------------------------------ kora ops
def test_kora_ops_drives_the_same_controls(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kora.cli import main

    monkeypatch.setenv("KORA_DATABASE_URL", migrated_url)
    monkeypatch.setenv("KORA_DEV_SECRETS_FILE", str(tmp_path / "dev-secrets.json"))
    monkeypatch.setenv("KORA_LOG_LEVEL", "WARNING")
    runner = CliRunner()

    def kora(*args: str) -> Any:
        return runner.invoke(main, list(args), catch_exceptions=False)

    status = kora("ops", "status")
    assert status.exit_code == 0, status.output
    assert "operation cash-out          open" in status.output

    paused = kora("ops", "pause", "cash-out", "--reason", "MoMo disbursement outage", "--incident", "INC-77")
    assert paused.exit_code == 0, paused.output
    assert "operation cash-out: PAUSED" in paused.output
    disabled = kora("ops", "provider", "disable", "sandbox", "--reason", "drill", "--retry-after", "60")
    assert disabled.exit_code == 0, disabled.output
    assert kora("ops", "provider", "disable", "mtn", "--reason", "drill").exit_code == 2  # not configured here
    assert kora("ops", "pause", "p2p", "--reason", "call +225 07 01 02 03 04").exit_code == 2  # PII refused

    degraded = kora("ops", "status", "--json")
    assert degraded.exit_code == 1  # something is paused or disabled
    view = json.loads(degraded.output)
    cash_out = next(o for o in view["operations"] if o["operation"] == "cash-out")
    assert (cash_out["paused"], cash_out["reason"], cash_out["incident"], cash_out["set_by"]) == (
        True,
        "MoMo disbursement outage",
        "INC-77",
        "cli",
    )
    assert view["providers"][0]["disabled"] is True
    assert all(route["effective"] == [] for route in view["routes"])

    assert "resumed" in kora("ops", "resume", "cash-out").output
    assert "unchanged" in kora("ops", "resume", "cash-out").output
    assert "enabled" in kora("ops", "provider", "enable", "sandbox").output
    assert kora("ops", "status").exit_code == 0
    audit = kora("audit", "verify")
    assert audit.exit_code == 0, audit.output
