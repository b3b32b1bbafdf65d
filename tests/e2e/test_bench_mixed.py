"""Smoke test of `kora bench --scenario mixed` (not a performance assertion): the simulator and
`kora serve` each in their own process on SQLite, an admin made by the CLI to grant the merchant
role, a two-second mixed run with retries, then the ledger verified."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kora.risk import BENCH_POLICY_PATH
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up:\n" + log.read_text()[-3000:])
        time.sleep(0.2)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    sim_port, kora_port = free_port(), free_port()
    simulator, kora = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{kora_port}"
    env = {
        **os.environ,
        "KORA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}",
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "secrets.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        "KORA_LOG_LEVEL": "WARNING",
        "KORA_PROVIDER_MOMO_URL": simulator,
        "KORA_PUBLIC_BASE_URL": kora,
        "KORA_RISK_POLICY_FILE": str(BENCH_POLICY_PATH),  # the load is allowed, every window still read
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, args, ready in (
            ("simulator", ["simulator", "--port", str(sim_port), "--zero-latency"], f"{simulator}/_sim/health"),
            ("server", ["serve", "--port", str(kora_port)], f"{kora}/readyz"),
        ):
            log = tmp_path / f"{name}.log"
            with log.open("w") as out:
                process = subprocess.Popen([sys.executable, "-m", "kora", *args], env=env, stdout=out, stderr=out)
            started.append(process)
            _wait(ready, process, log)
        yield kora, env
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=20)


def test_the_mixed_scenario_runs_and_checks_its_replays(stack: tuple[str, dict[str, str]]) -> None:
    url, env = stack
    phone, password = "+2250799000001", "bench-admin-pass-phrase-1"
    created = subprocess.run(
        [sys.executable, "-m", "kora", "admin", "create", "--phone-number", phone, "--password", password],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr[-2000:]
    bench = [
        *("bench", "--scenario", "mixed", "--url", url, "--concurrency", "6", "--duration", "2", "--users", "4"),
        *("--providers", "momo", "--funding-provider", "sandbox", "--retry-share", "0.5", "--merchants", "2"),
    ]
    env = {**env, "KORA_BENCH_ADMIN_PHONE": phone, "KORA_BENCH_ADMIN_PASSWORD": password}
    result = subprocess.run(
        [sys.executable, "-m", "kora", *bench], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for lane in ("p2p", "merchant", "cash_in@momo", "cash_out@momo", "internal (no provider)", "provider (incl."):
        assert lane in out, out
    replays = next(line for line in out.splitlines() if line.startswith("replays (same key)"))
    sent = int(replays.rsplit("/", 1)[1].split()[0])
    assert sent > 0
    assert f"{sent}/{sent} same payment" in replays
    assert "errors: 0 " in out
    assert '"ok": true' in out  # the ledger verified after the run
