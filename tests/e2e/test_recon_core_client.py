"""The reconciliation service's CoreClient against a real `kora serve` process (uvicorn, over a
socket): the operator's steps of docs/operations/service-identity.md — the recon key generated
into the dev secrets file, `kora recon service-key` pasted into the core's
KORA_SERVICE_IDENTITIES — then a read, a provider query and a correction (replayed once)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kora.kernel import SystemClock
from kora.reconciliation.adapters.core_client import CoreClient
from kora.reconciliation.service.ports import Correction
from kora.reconciliation.service.settings import ReconSettings
from tests.support.api import Api
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


def run_kora(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kora", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@dataclass
class Core:
    url: str
    env: dict[str, str]
    log: Path


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    """`kora serve` trusting the reconciliation key printed by `kora recon service-key`."""
    port = free_port()
    env = {
        **os.environ,
        "KORA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}",
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "secrets.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        "KORA_RECON_CORE_URL": f"http://127.0.0.1:{port}",
    }
    printed = run_kora(env, "recon", "service-key")
    assert printed.returncode == 0, printed.stderr
    entry = json.loads(printed.stdout)["service_identity"]
    assert "PRIVATE" not in printed.stdout
    env["KORA_SERVICE_IDENTITIES"] = json.dumps([entry])
    log_path = tmp_path / "core.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "kora", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("core did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)
        yield Core(url, env, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def test_recon_calls_a_running_core_with_its_own_identity(core: Core) -> None:
    env = core.env
    async with httpx.AsyncClient(base_url=core.url, timeout=10) as http:
        api = Api(http)
        alice = await api.customer(fund=3_000)
        payment_id = (await http.get("/v1/payments", headers=alice.headers())).json()["items"][0]["id"]
        settings = ReconSettings.from_env({k: v for k, v in env.items() if k.startswith("KORA_")})
        client = CoreClient.from_settings(settings, clock=SystemClock())
        try:
            payment = await client.payment(payment_id)
            assert payment is not None
            assert (payment.status, payment.amount) == ("CAPTURED", 3_000)
            queried = await client.query_provider(payment_id)
            assert queried is not None
            assert queried.status == "CAPTURED"
            correction = Correction(
                case_id=uuid.uuid4(),
                payment_id=payment_id,
                kind="manual_debit",
                amount=1_000,
                currency="XOF",
                reason="provider_never_collected",
                proposed_by=f"user:{uuid.uuid4()}",
                approved_by=f"user:{uuid.uuid4()}",
            )
            posted = await client.post_correction(correction)
            replayed = await client.post_correction(correction)
        finally:
            await client.aclose()
        assert (posted.replayed, replayed.replayed, replayed.transaction_id) == (False, True, posted.transaction_id)
        assert (await api.balance(alice))["balance"] == 2_000
    logged = core.log.read_text()
    assert "/v1/service/corrections" in logged
    assert alice.phone_number not in logged
    assert alice.phone_number.lstrip("+") not in logged
    verified = await asyncio.to_thread(run_kora, env, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
