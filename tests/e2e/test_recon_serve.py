"""`kora recon serve` as a real process: it brings its database's schema up to date, answers
/readyz, /metrics and /openapi.json, and refuses an unauthenticated upload with a problem."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port

pytestmark = pytest.mark.e2e


def test_recon_serve_starts_migrates_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KORA_RECON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'recon.db'}",
        "KORA_RECON_REPORT_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "secrets.json"),
    }
    log_path = tmp_path / "recon.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kora", "recon", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("recon did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.2)
        assert ready.json() == {"status": "ready"}  # the schema was migrated at start
        assert ready.headers["x-correlation-id"]
        upload = httpx.post(f"{url}/v1/recon/reports", params={"provider": "momo"}, content=b"x", timeout=5)
        assert upload.status_code == 401
        assert upload.headers["content-type"] == "application/problem+json"
        assert "/v1/recon/summary" in httpx.get(f"{url}/openapi.json", timeout=5).json()["paths"]
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'kora_recon_auth_failures_total{reason="missing"} 1.0' in metrics
        assert 'route="/readyz"' in metrics
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    logged = log_path.read_text()
    assert "reconciliation database schema is up to date" in logged
    assert '"service": "kora-recon"' in logged or '"service":"kora-recon"' in logged
