"""The chaos world: the provider simulator over real HTTP (`python -m kora.simulator`, its own
process), Kora in process on the test's event loop, and Kora's own HTTP app served on that same
loop, so the providers' callbacks and webhooks reach the very Kora the test drives and sweeps.

Three providers: two MoMo-style (`mtn`, `orange`: unsigned callbacks that only prompt a status
query) behind Kora's routing table, and one Wave-style (`wave`: signed webhooks, and the only
style whose API says "reversed", so reversals after success are injected there).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.kernel import FixedClock
from kora.payments.adapters.tables import payments
from kora.providers import ProviderGateway
from kora.providers.adapters.momo import HttpMomoGateway
from kora.providers.adapters.wave import HttpWaveGateway
from kora.providers.resilience import (
    BreakerPolicy,
    BulkheadPolicy,
    ProviderGuard,
    ProviderPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from kora.simulator import ApiStyle, BehaviourMix, LatencyConfig, LatencyKind, ProviderConfig, SimulatorConfig
from tests.support.api import test_settings
from tests.support.net import free_port

MOMO_PROVIDERS = ("mtn", "orange")
WAVE_PROVIDER = "wave"
WAVE_SECRET = "whsec_chaos_0123456789"  # a test secret, shared with the simulator
ROUTING = {"collect": {"XOF": ["mtn", "orange"]}, "disburse": {"XOF": ["orange", "mtn"]}}
PENDING_MIN_AGE = 60
PENDING_MAX_AGE = 3600
UNRESOLVED = ("INITIATED", "AUTHORIZED")

# The injected behaviours, per provider, drawn from a hash of (seed, our payment id). The issue's
# floor: 10 % timeouts, 5 % late successes, 2 % lost and 1 % duplicate callbacks; declines and a
# few stuck payments on top, as real providers have them.
MOMO_MIX = BehaviourMix(
    decline=0.03, timeout=0.10, late_success=0.05, lost_callback=0.02, duplicate_callback=0.01, stuck_pending=0.005
)
# A MoMo-style API shows a reversal as a separate transaction (the status stays SUCCESSFUL), so a
# reversal there can only surface in the settlement report (reconciliation). The Wave-style API
# says "reversed": there Kora must flag it against a captured payment.
WAVE_MIX = MOMO_MIX.model_copy(update={"reversal": 0.05})

# Kora gives a provider call 0.5 s (generous: on a busy 2-core CI box the event loop itself adds
# latency); a held answer (timeout, late success) comes after 0.8 s, so it is always too late.
CALL_BUDGET_SECONDS = 0.5
HOLD_SECONDS = 0.8
SEED = 20_260_101


def simulator_config(*, seed: int = SEED) -> SimulatorConfig:
    """Fast providers (a few ms), no injected behaviour yet: the setup funds wallets cleanly and
    the chaos mix is switched on afterwards (`World.start_chaos`)."""
    quick = LatencyConfig(kind=LatencyKind.UNIFORM, min_ms=1, max_ms=4)
    instant = LatencyConfig.zero()

    def provider(style: ApiStyle) -> ProviderConfig:
        return ProviderConfig(
            style=style,
            latency=quick,
            processing=instant,
            hold_seconds=HOLD_SECONDS,
            webhook_secret=WAVE_SECRET,
            webhook_retries=2,
            webhook_retry_delay_seconds=0.05,
            webhook_timeout_seconds=5.0,
            reversal_after_seconds=0.2,
        )

    providers = {name: provider(ApiStyle.MOMO) for name in MOMO_PROVIDERS}
    providers[WAVE_PROVIDER] = provider(ApiStyle.WAVE)
    return SimulatorConfig(providers=providers, seed=seed, tick_interval_seconds=0.01)


def _policy() -> ProviderPolicy:
    return ProviderPolicy(
        default_timeout=TimeoutPolicy(connect=0.2, read=CALL_BUDGET_SECONDS, total=CALL_BUDGET_SECONDS),
        # One attempt: a timeout stays ambiguous, so callbacks and the sweeper must resolve it.
        retry=RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.05, deadline=1.0),
        breaker=BreakerPolicy(fail_max=8, reset_timeout=0.5),
        bulkhead=BulkheadPolicy(max_concurrent=64, max_wait=0.25),
    )


@dataclass
class World:
    kora: Kora
    clock: FixedClock
    simulator_url: str
    kora_url: str
    admin: httpx.AsyncClient  # the simulator's admin API

    async def patch_provider(self, name: str, **changes: Any) -> None:
        answer = await self.admin.patch(f"/_sim/providers/{name}", json=changes)
        assert answer.status_code == 200, answer.text

    async def start_chaos(self) -> None:
        """Switch on the injected behaviours, and a processing time longer than the status query
        that follows each create: most outcomes now arrive by callback, webhook or sweeper."""
        processing = {"kind": "uniform", "min_ms": 5, "max_ms": 40}
        for name in MOMO_PROVIDERS:
            await self.patch_provider(name, mix=MOMO_MIX.model_dump(), processing=processing)
        await self.patch_provider(WAVE_PROVIDER, mix=WAVE_MIX.model_dump(), processing=processing)

    async def set_outage(self, name: str, *, down: bool) -> None:
        body: dict[str, Any] = {"down": True, "mode": "503"} if down else {"down": False}
        answer = await self.admin.post(f"/_sim/providers/{name}/outage", json=body)
        assert answer.status_code == 200, answer.text

    async def simulator_ledger(self) -> list[dict[str, Any]]:
        answer = await self.admin.get("/_sim/ledger")
        answer.raise_for_status()
        return list(answer.json()["operations"])

    async def unresolved(self) -> int:
        """Payments still waiting on a provider (INITIATED / AUTHORIZED)."""
        query = sa.select(sa.func.count()).select_from(payments).where(payments.c.status.in_(UNRESOLVED))
        async with self.kora.engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def let_providers_finish(self, *, within: float = 15.0) -> None:
        """Wait until the simulator has finished what it will finish on its own (held answers,
        processing, reversals) and Kora has stopped receiving callbacks and webhooks — before
        the clock is moved, so no signed webhook is judged against an aged clock."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            waiting = [
                op
                for op in await self.simulator_ledger()
                if (op["status"] == "pending" and op["behaviour"] != "stuck_pending")
                or (op["behaviour"] == "reversal" and op["status"] == "succeeded")
            ]
            if not waiting:
                break
            await asyncio.sleep(0.1)
        before, now = -1.0, self._webhooks_seen()
        while now != before and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            before, now = now, self._webhooks_seen()

    async def sweep_until_definite(self) -> list[dict[str, int]]:
        """Age the pending payments past the sweeper's minimum age and sweep; what providers
        still cannot answer (never received, stuck) is aged past the maximum and ended."""
        passes = []
        self.clock.advance(timedelta(seconds=PENDING_MIN_AGE + 1))
        for _ in range(6):
            passes.append(await self.kora.sweep_pending())
            if not await self.unresolved():
                break
            self.clock.advance(timedelta(seconds=PENDING_MAX_AGE + 1))
        return passes

    def webhook_outcomes(self) -> dict[str, int]:
        """Kora's own count of the callbacks and webhooks it handled, by provider and outcome."""
        found: Counter[str] = Counter()
        for metric in self.kora.registry.collect():
            if metric.name in ("kora_webhooks_received", "kora_webhooks_rejected"):
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        outcome = sample.labels.get("outcome") or "rejected:" + sample.labels.get("reason", "")
                        found[f"{sample.labels['provider']}:{outcome}"] += int(sample.value)
        return dict(sorted(found.items()))

    def _webhooks_seen(self) -> float:
        return float(sum(self.webhook_outcomes().values()))


def _gateways(simulator_url: str, kora_url: str, client: httpx.AsyncClient) -> dict[str, ProviderGateway]:
    gateways: dict[str, ProviderGateway] = {}
    for name in MOMO_PROVIDERS:
        gateways[name] = HttpMomoGateway(
            name,
            simulator_url,
            client=client,
            guard=ProviderGuard(name, _policy()),
            poll_attempts=1,  # one status query right after the 202, then callbacks and the sweeper
            poll_interval_seconds=0.01,
            callback_url=f"{kora_url}/v1/webhooks/{name}",
        )
    gateways[WAVE_PROVIDER] = HttpWaveGateway(
        WAVE_PROVIDER,
        simulator_url,
        client=client,
        guard=ProviderGuard(WAVE_PROVIDER, _policy()),
        poll_attempts=1,
        poll_interval_seconds=0.01,
    )
    return gateways


@asynccontextmanager
async def _serve_here(kora: Kora, port: int) -> AsyncIterator[None]:
    """Kora's HTTP app on this event loop (the in-process Kora the test drives)."""
    app = create_app(kora, manage_lifecycle=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "Kora's HTTP server did not start"
        yield
    finally:
        server.should_exit = True
        await task


@contextmanager
def simulator_process(config: SimulatorConfig, tmp_path: Path) -> Iterator[str]:
    """`python -m kora.simulator` as its own process (as in production: it shares no GIL and no
    event loop with Kora); yields its base URL."""
    path = tmp_path / "simulator.json"
    path.write_text(config.model_dump_json())
    port = free_port()
    log = (tmp_path / "simulator.log").open("w")
    command = [sys.executable, "-m", "kora.simulator", "--port", str(port), "--config", str(path)]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KORA_LOG_LEVEL": "WARNING"}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/_sim/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "simulator.log").read_text()
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@asynccontextmanager
async def chaos_world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    with simulator_process(simulator_config(), tmp_path) as simulator_url:
        async with _world(database_url, tmp_path, simulator_url) as world:
            yield world


@asynccontextmanager
async def _world(database_url: str, tmp_path: Path, simulator_url: str) -> AsyncIterator[World]:
    port = free_port()
    kora_url = f"http://127.0.0.1:{port}"
    client = httpx.AsyncClient(
        timeout=_policy().default_timeout.httpx_timeout(),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
    )
    gateways = _gateways(simulator_url, kora_url, client)
    settings = test_settings(
        database_url,
        tmp_path,
        KORA_PROVIDER_ROUTING=json.dumps(ROUTING),
        KORA_PROVIDER_WAVE_WEBHOOK_SECRET=WAVE_SECRET,
        KORA_PENDING_MIN_AGE_SECONDS=str(PENDING_MIN_AGE),
        KORA_PENDING_MAX_AGE_SECONDS=str(PENDING_MAX_AGE),
        KORA_SWEEP_INTERVAL_SECONDS="0",  # the test sweeps, on its own clock
        KORA_DB_POOL_SIZE="40",
        KORA_LOG_LEVEL="WARNING",
    )
    # Kora's clock starts at the real time, so the simulator's signed webhooks are inside the
    # tolerance window; it only moves when the test ages the pending payments.
    clock = FixedClock(datetime.now(UTC))
    kora = Kora(settings, clock=clock, providers=list(gateways.values()))
    kora._http_client = client  # closed with Kora
    admin = httpx.AsyncClient(base_url=simulator_url, timeout=10)
    world = World(kora, clock, simulator_url, kora_url, admin)
    try:
        await world.patch_provider(WAVE_PROVIDER, webhook_url=f"{kora_url}/v1/webhooks/{WAVE_PROVIDER}")
        async with _serve_here(kora, port):
            yield world
    finally:
        await admin.aclose()
        await kora.aclose()
