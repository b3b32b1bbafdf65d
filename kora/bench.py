"""`kora bench`: a P2P load against a running Kora server, over HTTP like a real client.

It registers and funds a pool of wallets, then `concurrency` workers send transfers between
random pairs for `duration` seconds, each with its own Idempotency-Key and anti-replay
timestamp and nonce, and reports
throughput, latency percentiles and the error rate. Only for servers on this machine.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import statistics
import time
import uuid
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Wallet:
    token: str
    device_id: str
    wallet_id: str


@dataclass
class BenchResult:
    concurrency: int
    duration: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
        return ordered[index] * 1000

    def render(self) -> str:
        """Throughput, latency percentiles and errors, one line each (the format the docs quote)."""
        throughput = len(self.latencies) / self.duration if self.duration else 0
        error_rate = self.errors / self.requests if self.requests else 0
        mean = statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")
        return "\n".join(
            [
                f"transfers ok:   {len(self.latencies)} in {self.duration:.1f}s (concurrency {self.concurrency})",
                f"throughput:     {throughput:.1f} transfers/s",
                f"latency ms:     p50 {self.percentile(0.50):.1f}  p95 {self.percentile(0.95):.1f}  "
                f"p99 {self.percentile(0.99):.1f}  mean {mean:.1f}  max {self.percentile(1.0):.1f}",
                f"errors:         {self.errors} ({error_rate:.2%}) statuses {dict(sorted(self.statuses.items()))}",
            ]
        )


def _phone() -> str:
    # A plausible Côte d'Ivoire mobile number in E.164, random per run.
    return "+22507" + "".join(random.choice("0123456789") for _ in range(8))  # noqa: S311


async def _new_wallet(client: aiohttp.ClientSession, funding: int) -> Wallet:
    phone, password, device = _phone(), "bench-" + secrets.token_urlsafe(12), "bench-" + uuid.uuid4().hex[:12]
    async with client.post("/v1/auth/register", json={"phone_number": phone, "password": password}) as reg:
        reg.raise_for_status()
        wallet_id = (await reg.json())["wallet_id"]
    login_body = {"phone_number": phone, "password": password, "device_id": device}
    async with client.post("/v1/auth/login", json=login_body) as login:
        login.raise_for_status()
        token = (await login.json())["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Device-ID": device, "Idempotency-Key": uuid.uuid4().hex}
    async with client.post("/v1/cash-ins", json={"amount": funding}, headers=headers) as fund:
        fund.raise_for_status()
    return Wallet(token, device, wallet_id)


async def run_bench(
    *, url: str, concurrency: int, duration: float, users: int, funding: int = 5_000_000
) -> BenchResult:
    """Set up `users` funded wallets, then run `concurrency` workers for `duration` seconds.

    The client is aiohttp (about 0.1 ms of CPU per request), so that on a small machine the
    load generator takes as little as possible from the server it measures."""
    connector = aiohttp.TCPConnector(limit=concurrency + 8)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:
        setup = asyncio.Semaphore(8)

        async def make() -> Wallet:
            async with setup:
                return await _new_wallet(client, funding)

        wallets = await asyncio.gather(*(make() for _ in range(max(users, 2))))
        result = BenchResult(concurrency=concurrency, duration=duration)
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            rng = random.Random()  # noqa: S311 - load pattern, not security
            while time.perf_counter() < deadline:
                sender, recipient = rng.sample(wallets, 2)
                headers = {
                    "Authorization": f"Bearer {sender.token}",
                    "X-Device-ID": sender.device_id,
                    "Idempotency-Key": uuid.uuid4().hex,
                    # Anti-replay (ADR 0012), as a real client sends them on every debit.
                    "X-Request-Timestamp": str(int(time.time())),
                    "X-Request-Nonce": secrets.token_hex(16),
                }
                body = {"recipient_wallet_id": recipient.wallet_id, "amount": rng.randint(1, 500)}
                started = time.perf_counter()
                try:
                    async with client.post("/v1/transfers", json=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                elapsed = time.perf_counter() - started
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == 201:
                    result.latencies.append(elapsed)
                else:
                    result.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.duration = time.perf_counter() - started
        return result
