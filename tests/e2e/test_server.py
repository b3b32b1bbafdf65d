"""The real thing: `kora serve` in its own process, driven over a socket like a client would,
then the operator commands (`ledger verify`, `audit verify`, `bench`) against its database."""

from __future__ import annotations

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

from kora.risk import BENCH_POLICY_PATH
from tests.support.api import fresh_request_headers
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


@dataclass
class Server:
    url: str
    env: dict[str, str]


def kora(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kora", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    else:
        database_url = str(request.getfixturevalue("postgres_database"))
    port = free_port()
    env = {
        **os.environ,
        "KORA_DATABASE_URL": database_url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "secrets.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        # The bench's synthetic load (one 5,000,000 cash-in per wallet, random payees) with
        # the risk engine on: every window read, the load allowed.
        "KORA_RISK_POLICY_FILE": str(BENCH_POLICY_PATH),
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "kora", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
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
                raise AssertionError("server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        yield Server(url, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_walkthrough_then_operator_checks(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        alice_phone, bob_phone = "+2250701020304", "+2250505060708"
        for phone, password in ((alice_phone, "a-long-pass-phrase-1"), (bob_phone, "another-pass-phrase-2")):
            registered = client.post("/v1/auth/register", json={"phone_number": phone, "password": password})
            assert registered.status_code == 201, registered.text
        login = client.post(
            "/v1/auth/login",
            json={"phone_number": alice_phone, "password": "a-long-pass-phrase-1", "device_id": "phone-1"},
        )
        assert login.status_code == 200
        auth = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Device-ID": "phone-1"}

        cash_in = client.post(
            "/v1/cash-ins", json={"amount": 10_000}, headers={**auth, "Idempotency-Key": "cash-in-0001"}
        )
        assert cash_in.status_code == 201
        assert cash_in.json()["status"] == "CAPTURED"  # settled by the provider J+1
        body = {"recipient_phone_number": bob_phone, "amount": 2_500}
        # Debits carry a timestamp and a new nonce; a retry is a new request with the same key.
        first = {**auth, "Idempotency-Key": "transfer-0001", **fresh_request_headers()}
        sent = client.post("/v1/transfers", json=body, headers=first)
        replayed = client.post("/v1/transfers", json=body, headers=first)
        assert replayed.status_code == 409
        assert replayed.json()["code"] == "request_replayed"
        again = client.post(
            "/v1/transfers", json=body, headers={**auth, "Idempotency-Key": "transfer-0001", **fresh_request_headers()}
        )
        assert sent.status_code == again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        out = client.post(
            "/v1/cash-outs",
            json={"amount": 1_000},
            headers={**auth, "Idempotency-Key": "cash-out-0001", **fresh_request_headers()},
        )
        assert out.status_code == 201
        wallet = client.get("/v1/wallet", headers=auth).json()
        assert wallet["balance"] == wallet["available_balance"] == 6_500
        refused = client.post(
            "/v1/transfers",
            json={"recipient_phone_number": bob_phone, "amount": 20_000},
            headers={**auth, "Idempotency-Key": "transfer-0002", **fresh_request_headers()},
        )
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "insufficient_funds"
        # The served default runs the risk engine: above the policy's hard limit it refuses first.
        denied = client.post(
            "/v1/transfers",
            json={"recipient_phone_number": bob_phone, "amount": 999_999},
            headers={**auth, "Idempotency-Key": "transfer-0003", **fresh_request_headers()},
        )
        assert denied.status_code == 422
        assert denied.json()["code"] == "risk_denied"
        assert client.get("/healthz").json() == {"status": "ok"}
        assert "kora_http_requests_total" in client.get("/metrics").text
        assert client.get("/openapi.json").json()["info"]["title"] == "Kora payment API"

    verify = kora(server.env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert '"ok": true' in verify.stdout
    rebuilt = kora(server.env, "ledger", "rebuild-balances")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    audit = kora(server.env, "audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_bench_reports_throughput_and_percentiles(server: Server) -> None:
    result = kora(server.env, "bench", "--url", server.url, "--concurrency", "4", "--duration", "2", "--users", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "throughput:" in result.stdout
    assert "p95" in result.stdout
    assert "errors:         0" in result.stdout
    assert '"ok": true' in result.stdout


def test_admin_is_created_from_the_command_line(server: Server) -> None:
    phone = f"+22507{uuid.uuid4().int % 10**8:08d}"
    created = kora(server.env, "admin", "create", "--phone-number", phone, "--password", "admin-pass-phrase-9")
    assert created.returncode == 0, created.stdout + created.stderr
    with httpx.Client(base_url=server.url, timeout=30) as client:
        login = client.post(
            "/v1/auth/login",
            json={"phone_number": phone, "password": "admin-pass-phrase-9", "device_id": "console"},
        )
        assert login.status_code == 200
        headers = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Device-ID": "console"}
        report = client.get("/v1/admin/ledger/verify", headers=headers)
        assert report.status_code == 200
        assert report.json()["ok"] is True
