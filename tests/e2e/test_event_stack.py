"""The production topology, as docker-compose.yml runs it, with real processes: `kora serve`
(relay and consumers not in process), one `kora relay` and one `kora worker` per consumer, each
connected to a nats-server running deploy/nats/nats.conf as its own least-privilege user, on
PostgreSQL. A payment made over HTTP reaches every consumer's tables."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from kora.events.consumers import daily_kpis
from kora.events.consumers.tables import notifications, recon_feed_payments
from kora.platform.db import create_engine
from tests.integration.events.nats_support import SecuredNats, secured_nats
from tests.support.api import fresh_request_headers
from tests.support.net import free_port

pytestmark = pytest.mark.e2e
__all__ = ["secured_nats"]  # the fixture, used by name below

WORKERS = {"notifications": "kora-notifications", "kpi": "kora-kpi", "recon-feed": "kora-recon-feed"}


def _as(env: dict[str, str], user: str, nats: SecuredNats) -> dict[str, str]:
    return {**env, "KORA_NATS_USER": user, "KORA_NATS_PASSWORD": nats.passwords[user]}


@pytest.fixture
def stack(migrated_postgres_url: str, tmp_path: Path, secured_nats: SecuredNats) -> Iterator[tuple[str, str, Path]]:
    port = free_port()
    env = {
        **os.environ,
        "KORA_DATABASE_URL": migrated_postgres_url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "secrets.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        "KORA_EVENTS_BUS": "nats",
        "KORA_NATS_URL": secured_nats.url,
        "KORA_EVENTS_IN_PROCESS": "false",
        "KORA_LOG_LEVEL": "WARNING",
    }
    setup = subprocess.run(
        [sys.executable, "-m", "kora", "events", "setup"],
        env=_as(env, "kora-admin", secured_nats),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    commands = {
        "serve": (["serve", "--port", str(port), "--no-migrate"], env),
        "relay": (["relay"], _as(env, "kora-relay", secured_nats)),
        **{
            f"worker-{name}": (["worker", "--consumer", name], _as(env, user, secured_nats))
            for name, user in WORKERS.items()
        },
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (args, process_env) in commands.items():
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "kora", *args],
                env=process_env,
                stdout=(tmp_path / f"{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if processes["serve"].poll() is not None or time.monotonic() > deadline:
                raise AssertionError("server did not start:\n" + (tmp_path / "serve.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url, migrated_postgres_url, tmp_path
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def _state(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        today = datetime.now(UTC).date()
        async with engine.connect() as conn:
            templates = list((await conn.execute(sa.select(notifications.c.template))).scalars())
            feed = list((await conn.execute(sa.select(recon_feed_payments.c.status))).scalars())
        kpis = await daily_kpis(engine, today - timedelta(days=1), today + timedelta(days=1))
        return {"templates": sorted(templates), "feed": feed, "kpis": kpis}
    finally:
        await engine.dispose()


def test_a_payment_reaches_every_consumer_through_least_privileged_processes(
    stack: tuple[str, str, Path],
) -> None:
    url, database_url, logs = stack
    with httpx.Client(base_url=url, timeout=30) as client:
        phones = ("+2250709080706", "+2250506070809")
        for phone in phones:
            assert (
                client.post(
                    "/v1/auth/register", json={"phone_number": phone, "password": "pass-phrase-e2e-1"}
                ).status_code
                == 201
            )
        login = client.post(
            "/v1/auth/login", json={"phone_number": phones[0], "password": "pass-phrase-e2e-1", "device_id": "phone-1"}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Device-ID": "phone-1"}
        assert (
            client.post(
                "/v1/cash-ins", json={"amount": 5_000}, headers={**auth, "Idempotency-Key": "e2e-cash-in-1"}
            ).status_code
            == 201
        )
        sent = client.post(
            "/v1/transfers",
            json={"recipient_phone_number": phones[1], "amount": 1_200},
            headers={**auth, "Idempotency-Key": "e2e-transfer-1", **fresh_request_headers()},
        )
        assert sent.status_code == 201, sent.text

    deadline = time.monotonic() + 60
    while True:
        state = asyncio.run(_state(database_url))
        settled_p2p = [k for k in state["kpis"] if k.payment_type == "p2p" and k.status == "SETTLED"]
        if (
            settled_p2p
            and {"p2p_sent", "p2p_received", "cash_in_received"} <= set(state["templates"])
            and state["feed"]
        ):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the consumers did not catch up: {state}")
        time.sleep(0.3)
    assert sum(k.count for k in settled_p2p) == 1
    assert sum(k.amount for k in settled_p2p) == 1_200
    assert state["feed"] == ["CAPTURED"]  # the cash-in, awaiting its provider's settlement
    for name in ("relay", *(f"worker-{n}" for n in WORKERS)):
        text = (logs / f"{name}.log").read_text()
        assert "Permissions Violation" not in text, f"{name}: {text[-2000:]}"
        assert "Traceback" not in text, f"{name}: {text[-2000:]}"
        for phone in phones:
            assert phone not in text
