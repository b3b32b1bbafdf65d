"""The settlement ops endpoints over HTTP on SQLite and PostgreSQL (admin only, Idempotency-Key,
problem+json for bad input), and `kora payments settle` from the command line."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kora.bootstrap import Kora
from kora.cli import main as kora_cli
from kora.payments import ProviderMoveCommand
from kora.platform.settings import Settings
from tests.support.api import Api, new_phone


async def admin_headers(api: Api) -> dict[str, str]:
    phone, password = new_phone(), "admin-pass-" + uuid.uuid4().hex[:8]
    await api.kora.identity.create_admin(phone, password)  # type: ignore[attr-defined]
    login = await api.client.post(
        "/v1/auth/login", json={"phone_number": phone, "password": password, "device_id": "ops-console"}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}", "X-Device-ID": "ops-console"}


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def yesterday() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


async def test_an_admin_settles_a_day_from_the_provider_report(api: Api) -> None:
    alice = await api.customer(fund=10_000)
    cash_out = await api.cash_out(alice, 2_500)
    assert cash_out.status_code == 201, cash_out.text
    assert cash_out.json()["status"] == "CAPTURED"
    admin = await admin_headers(api)
    key = {"Idempotency-Key": "settle-" + uuid.uuid4().hex}

    due = await api.client.get("/v1/ops/settlements/due", params={"provider": "sandbox"}, headers=admin)
    assert due.status_code == 200, due.text
    (item,) = due.json()["items"]
    assert (item["captured"], item["overdue"]) == ({"count": 2, "amount": 12_500}, {"count": 0, "amount": 0})
    assert item["expected"]["net"] == 7_500

    # The API's clock is real: today's captures are settled by the ids the provider's report names.
    ids = [p["id"] for p in (await api.client.get("/v1/payments", headers=alice.headers())).json()["items"]]
    request = {"provider": "sandbox", "currency": "XOF", "payment_ids": ids, "reference": "SBX-2026-STMT-001"}
    settled = await api.client.post("/v1/ops/settlements", json=request, headers={**admin, **key})
    assert settled.status_code == 200, settled.text
    body = settled.json()
    assert (body["settled"], body["already_settled"], body["rejected"]) == (2, 0, 0)
    assert body["totals"]["net"] == 7_500
    assert {o["flow"] for o in body["outcomes"]} == {"collections", "disbursements"}

    replay = await api.client.post("/v1/ops/settlements", json=request, headers={**admin, **key})
    assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (200, "true")
    assert replay.json() == body
    by_day = {"provider": "sandbox", "currency": "XOF", "through": yesterday(), "reference": "SBX-2026-STMT-002"}
    again = await api.client.post(
        "/v1/ops/settlements", json=by_day, headers={**admin, "Idempotency-Key": "settle-" + uuid.uuid4().hex}
    )
    assert (again.json()["settled"], again.json()["outcomes"]) == (0, [])

    payment = await api.client.get(f"/v1/payments/{cash_out.json()['id']}", headers=alice.headers())
    assert payment.json()["status"] == "SETTLED"
    assert (await api.client.get("/v1/ops/settlements/due", headers=admin)).json()["items"] == []
    verify = await api.client.get("/v1/admin/ledger/verify", headers=admin)
    assert verify.json()["ok"] is True
    metrics = (await api.client.get("/metrics")).text
    assert 'kora_settlement_payments_settled_total{provider="sandbox",type="cash_out"} 1.0' in metrics
    assert "kora_settlement_delay_seconds_bucket" in metrics


async def test_customers_may_not_settle_nor_see_the_backlog(api: Api) -> None:
    alice = await api.customer(fund=1_000)
    request = {"provider": "sandbox", "currency": "XOF", "through": today(), "reference": "R-1"}
    denied = await api.client.post("/v1/ops/settlements", json=request, headers=alice.headers(key="settle-key-0001"))
    assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")
    assert denied.headers["content-type"] == "application/problem+json"
    backlog = await api.client.get("/v1/ops/settlements/due", headers=alice.headers())
    assert backlog.status_code == 403
    payments = (await api.client.get("/v1/payments", headers=alice.headers())).json()["items"]
    assert payments[0]["status"] == "CAPTURED"


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"through": "2026-13-01"}, 422, "validation_error"),
        ({"through": 20260101}, 422, "validation_error"),
        ({"payment_ids": []}, 422, "validation_error"),
        ({"reference": "+2250700000001"}, 422, "validation_error"),
        ({"unexpected": True}, 422, "validation_error"),
        ({"provider": "nobody"}, 422, "unknown_provider"),
        ({"through": None}, 422, "invalid_settlement_request"),
        ({"through": "2999-01-01"}, 422, "invalid_settlement_request"),
        ({"through": "today"}, 422, "invalid_settlement_request"),  # the day has not ended
        ({"currency": "ZZZ"}, 422, "invalid_settlement_request"),
        ({"key": None}, 400, "idempotency_key_missing"),
    ],
)
async def test_bad_settlement_requests_are_problems_that_change_nothing(
    sqlite_api: Api, changes: dict[str, Any], status: int, code: str
) -> None:
    api = sqlite_api
    alice = await api.customer(fund=1_000)
    admin = await admin_headers(api)
    request: dict[str, Any] = {"provider": "sandbox", "currency": "XOF", "through": yesterday(), "reference": "R-1"}
    headers = {**admin, "Idempotency-Key": "settle-" + uuid.uuid4().hex}
    if changes.pop("key", "keep") is None:
        del headers["Idempotency-Key"]
    request.update(changes)
    if request.get("through") == "today":
        request["through"] = today()

    answer = await api.client.post("/v1/ops/settlements", json=request, headers=headers)

    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    payments = (await api.client.get("/v1/payments", headers=alice.headers())).json()["items"]
    assert payments[0]["status"] == "CAPTURED"


def test_kora_payments_settle_from_the_command_line(
    migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "KORA_DATABASE_URL": migrated_url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
    }.items():
        monkeypatch.setenv(name, value)

    async def captured_payments() -> list[str]:
        kora = Kora(Settings.from_env())
        try:
            user = (await kora.identity.register(phone_number=new_phone(), password="cli-pass-phrase-1")).user_id
            ids = []
            for amount in (4_000, 1_500):
                cmd = ProviderMoveCommand(user, amount, "XOF", uuid.uuid4().hex)
                ids.append((await kora.payments.cash_in(cmd)).body["id"])
            return ids
        finally:
            await kora.aclose()

    first, second = asyncio.run(captured_payments())
    runner = CliRunner()

    named = runner.invoke(kora_cli, ["payments", "settle", "--provider", "sandbox", "--payment-id", first])
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["settled"] == 1

    not_ended = runner.invoke(kora_cli, ["payments", "settle", "--provider", "sandbox", "--through", today()])
    assert not_ended.exit_code == 2  # today has not ended: no report can hold its payments yet
    assert "invalid_settlement_request" in not_ended.output
    by_day = runner.invoke(
        kora_cli, ["payments", "settle", "--provider", "sandbox", "--through", yesterday(), "--reference", "SBX-CLI-1"]
    )
    assert by_day.exit_code == 0, by_day.output
    assert (json.loads(by_day.stdout)["settled"], json.loads(by_day.stdout)["reference"]) == (0, "SBX-CLI-1")
    by_id = runner.invoke(
        kora_cli, ["payments", "settle", "--provider", "sandbox", "--payment-id", second, "--reference", "SBX-CLI-2"]
    )
    assert by_id.exit_code == 0, by_id.output
    report = json.loads(by_id.stdout)
    assert (report["settled"], report["totals"]["net"], report["reference"]) == (1, 1_500, "SBX-CLI-2")
    assert [o["payment_id"] for o in report["outcomes"]] == [second]

    unknown = runner.invoke(
        kora_cli, ["payments", "settle", "--provider", "sandbox", "--payment-id", str(uuid.uuid4())]
    )
    assert unknown.exit_code == 1  # a rejected payment needs a look
    assert json.loads(unknown.stdout)["outcomes"][0]["reason"] == "not_found"
    nothing = runner.invoke(kora_cli, ["payments", "settle", "--provider", "sandbox"])
    assert nothing.exit_code == 2
    assert "invalid_settlement_request" in nothing.output
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    future = runner.invoke(kora_cli, ["payments", "settle", "--provider", "sandbox", "--through", tomorrow])
    assert future.exit_code == 2
