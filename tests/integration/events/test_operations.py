"""Operators' tools on dead letters and replay, through the admin API and the `kora` command:
role-checked, problem+json on bad input, PII-free views, every action in the audit trail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kora.audit.adapters.tables import audit_log
from kora.bootstrap import Kora
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.adapters.tables import event_stream
from kora.events.ports import OutgoingMessage
from tests.support.api import Api, Customer


async def _forged_dead_letter(api: Api) -> tuple[Kora, Customer]:
    """Traffic relayed to the embedded stream, plus one forged copy of a payment event that the
    real `kpi` consumer refuses."""
    kora: Kora = api.kora  # type: ignore[attr-defined]
    customer = await api.customer(fund=4_000)
    relay = await kora.events.relay()
    while await relay.publish_once():
        pass
    bus = await kora.events.bus()
    assert isinstance(bus, SqlStreamBus)
    async with kora.engine.connect() as conn:
        genuine = (
            await conn.execute(sa.select(event_stream).where(event_stream.c.subject.like("%payment%")).limit(1))
        ).one()
    data = json.loads(genuine.data)
    forged = {**data, "id": str(uuid.uuid4()), "payload": {**data["payload"], "amount": 1}}
    await bus.publish([OutgoingMessage(genuine.subject, forged["id"], json.dumps(forged).encode(), {})])
    runner = await kora.events.runner("kpi")
    while deliveries := await bus.fetch(runner.handler.spec, batch=50, wait_seconds=0.05):
        await runner.process_batch(deliveries)
    return kora, customer


async def _actions(kora: Kora) -> list[str]:
    async with kora.engine.connect() as conn:
        return list((await conn.execute(sa.select(audit_log.c.action))).scalars())


async def test_admins_list_redrive_and_drop_dead_letters_over_http(api: Api) -> None:
    kora, customer = await _forged_dead_letter(api)
    admin = await api.admin()

    refused = await api.client.get("/v1/admin/events/dead-letters", headers=customer.headers(fresh=False))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")

    listed = await api.client.get("/v1/admin/events/dead-letters?consumer=kpi", headers=admin.headers(fresh=False))
    assert listed.status_code == 200, listed.text
    [letter] = listed.json()["items"]
    assert (letter["consumer"], letter["reason"], letter["status"]) == ("kpi", "forged", "open")
    assert customer.phone_number not in listed.text

    bad = await api.client.get("/v1/admin/events/dead-letters?status=lost", headers=admin.headers(fresh=False))
    assert bad.status_code == 422

    retried = await api.client.post(
        f"/v1/admin/events/dead-letters/{letter['id']}/retry", headers=admin.headers(fresh=False)
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["outcome"] == "dead_lettered"  # still forged: it stays open

    no_reason = await api.client.post(
        f"/v1/admin/events/dead-letters/{letter['id']}/drop", json={}, headers=admin.headers(fresh=False)
    )
    assert no_reason.status_code == 422
    dropped = await api.client.post(
        f"/v1/admin/events/dead-letters/{letter['id']}/drop",
        json={"reason": "forged copy, reported to security"},
        headers=admin.headers(fresh=False),
    )
    assert dropped.status_code == 200, dropped.text
    again = await api.client.post(
        f"/v1/admin/events/dead-letters/{letter['id']}/drop",
        json={"reason": "twice"},
        headers=admin.headers(fresh=False),
    )
    assert again.status_code == 404
    assert again.json()["code"] == "dead_letter_not_found"
    remaining = await api.client.get("/v1/admin/events/dead-letters", headers=admin.headers(fresh=False))
    assert remaining.json()["items"] == []

    actions = await _actions(kora)
    assert "events.dead_letter.retried" in actions
    assert "events.dead_letter.dropped" in actions
    assert (await kora.verify_audit()).ok


def _kora(env: dict[str, str], *args: str) -> tuple[int, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "kora", *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    try:
        return result.returncode, json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"kora {' '.join(args)}: {result.returncode} {result.stdout} {result.stderr[-2000:]}")


async def test_the_command_line_tools(sqlite_api: Api, tmp_path: Path, migrated_sqlite_url: str) -> None:
    kora, _ = await _forged_dead_letter(sqlite_api)
    env = {
        **os.environ,
        "KORA_DATABASE_URL": migrated_sqlite_url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
        "KORA_LOG_LEVEL": "WARNING",
    }
    code, status = _kora(env, "events", "status")
    assert code == 0
    assert status["outbox_backlog"] == 0
    assert status["dead_letters_open"] == {"kpi": 1}

    code, letters = _kora(env, "events", "dlq", "list", "--consumer", "kpi")
    assert code == 0
    [letter] = letters
    assert letter["reason"] == "forged"

    # Replay to one consumer: it has already applied everything, so nothing is applied again.
    code, replayed = _kora(env, "events", "replay", "--consumer", "kpi", "--from-seq", "1", "--actor", "ops-test")
    assert code == 0
    assert replayed.get("applied", 0) == 0
    assert replayed["duplicate"] > 0
    code, letters = _kora(env, "events", "dlq", "list", "--consumer", "kpi")
    assert [x["id"] for x in letters] == [letter["id"]]  # the replayed forgery is not parked twice

    code, retried = _kora(env, "events", "dlq", "retry", letter["id"], "--actor", "ops-test")
    assert code == 1  # a forged event fails again
    assert retried["outcome"] == "dead_lettered"
    code, dropped = _kora(env, "events", "dlq", "drop", letter["id"], "--actor", "ops-test", "--reason", "forged copy")
    assert code == 0
    assert dropped["status"] == "dropped"
    assert {"events.replayed", "events.dead_letter.dropped"} <= set(await _actions(kora))
