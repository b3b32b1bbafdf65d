"""`kora bench --scenario mixed`: P2P transfers, merchant payments, cash-ins and cash-outs against
a running Kora server, over HTTP like real clients, with client retries.

Each operation (and, for cash-ins/outs, each provider) has its own *lane* of workers, sized by
the mix, so a slow or failing provider only slows its own lanes: what the other lanes keep is
what the server keeps (the bulkhead's promise), not an artefact of a load generator whose workers
all ended up waiting on the slow provider.

A share of the payments is sent a second time with the same Idempotency-Key (and a fresh
anti-replay pair, as a real client's retry): the replay must name the same payment and say
`Idempotent-Replayed: true`, else it counts as an error. Latencies are per lane and grouped:
`internal` (P2P and merchant: no provider time) apart from `provider` (cash-in/out: they include
the provider's answer). Only for servers on this machine.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

OPERATIONS = ("p2p", "merchant", "cash_in", "cash_out")
PROVIDER_OPERATIONS = frozenset({"cash_in", "cash_out"})
DEFAULT_MIX = "p2p=40,merchant=20,cash_in=20,cash_out=20"
_PATHS = {
    "p2p": "/v1/transfers",
    "merchant": "/v1/merchant-payments",
    "cash_in": "/v1/cash-ins",
    "cash_out": "/v1/cash-outs",
}


def parse_mix(text: str) -> dict[str, int]:
    """`p2p=40,merchant=20,cash_in=20,cash_out=20` → weights (missing operations weigh 0)."""
    weights = dict.fromkeys(OPERATIONS, 0)
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in weights or not value.isdigit():
            raise ValueError(f"bad mix entry {part!r}: expected e.g. {DEFAULT_MIX}")
        weights[name] = int(value)
    if not any(weights.values()):
        raise ValueError("the mix has no operation with a weight above 0")
    return weights


def percentile(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank), NaN when there is nothing to rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


@dataclass(frozen=True)
class Lane:
    operation: str
    provider: str | None = None
    workers: int = 1

    @property
    def name(self) -> str:
        return f"{self.operation}@{self.provider}" if self.provider else self.operation


@dataclass
class LaneStats:
    latencies: list[float] = field(default_factory=list)  # answered 201, first attempts only
    outcomes: Counter[str] = field(default_factory=Counter)  # the payment's status in the answer


@dataclass
class MixedResult:
    concurrency: int
    duration: float
    lanes: list[Lane]
    stats: dict[str, LaneStats]
    wallets: int = 0
    merchants: int = 0
    retry_share: float = 0.0
    replay_latencies: list[float] = field(default_factory=list)
    replays_sent: int = 0
    replay_mismatches: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "<http status> <problem code>"
    notes: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def _row(self, label: str, latencies: list[float], workers: str, outcomes: str = "") -> str:
        rate = len(latencies) / self.duration if self.duration else 0.0
        return (
            f"{label:<26}{workers:>7}{len(latencies):>8}{rate:>9.1f}"
            f"{percentile(latencies, 0.50):>8.1f}{percentile(latencies, 0.95):>8.1f}"
            f"{percentile(latencies, 0.99):>8.1f}{percentile(latencies, 1.0):>9.1f}   {outcomes}"
        ).rstrip()

    def render(self) -> str:
        """One row per lane, then the internal / provider / overall groups, replays and errors."""
        lines = [
            f"scenario mixed: {self.concurrency} workers for {self.duration:.1f}s, {self.wallets} wallets, "
            f"{self.merchants} merchants; {self.retry_share:.0%} of payments re-sent with their Idempotency-Key",
            f"{'lane':<26}{'workers':>7}{'ok':>8}{'req/s':>9}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>9}   "
            "(ms; outcomes of the payments answered)",
        ]
        groups: dict[str, list[float]] = {"internal": [], "provider": [], "all": []}
        for lane in self.lanes:
            stats = self.stats[lane.name]
            outcomes = " ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items()))
            lines.append(self._row(lane.name, stats.latencies, str(lane.workers), outcomes))
            group = "provider" if lane.operation in PROVIDER_OPERATIONS else "internal"
            groups[group] += stats.latencies
            groups["all"] += stats.latencies
        lines.append(self._row("internal (no provider)", groups["internal"], "", "P2P + merchant"))
        lines.append(self._row("provider (incl. provider)", groups["provider"], "", "cash-in + cash-out"))
        lines.append(self._row("all", groups["all"], str(self.concurrency)))
        matched = self.replays_sent - self.replay_mismatches
        lines.append(
            self._row("replays (same key)", self.replay_latencies, "", f"{matched}/{self.replays_sent} same payment")
        )
        requests = len(groups["all"]) + len(self.replay_latencies) + self.error_count
        rate = self.error_count / requests if requests else 0.0
        lines.append(f"errors: {self.error_count} ({rate:.2%}) {dict(self.errors.most_common())}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Customer:
    token: str
    device_id: str
    wallet_id: str

    def headers(self, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Device-ID": self.device_id,
            "Idempotency-Key": key,
            # Anti-replay (ADR 0012): a new pair on every HTTP request, a retry included.
            "X-Request-Timestamp": str(int(time.time())),
            "X-Request-Nonce": secrets.token_hex(16),
        }


def _phone(rng: random.Random) -> str:
    return "+22507" + "".join(rng.choice("0123456789") for _ in range(8))


async def _login(client: aiohttp.ClientSession, phone: str, password: str) -> tuple[str, str]:
    device = "bench-" + uuid.uuid4().hex[:12]
    body = {"phone_number": phone, "password": password, "device_id": device}
    async with client.post("/v1/auth/login", json=body) as login:
        login.raise_for_status()
        return (await login.json())["access_token"], device


async def _register(client: aiohttp.ClientSession, rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    phone, password = _phone(rng), "bench-" + secrets.token_urlsafe(12)
    async with client.post("/v1/auth/register", json={"phone_number": phone, "password": password}) as reg:
        reg.raise_for_status()
        return phone, password, await reg.json()


async def _customer(client: aiohttp.ClientSession, rng: random.Random, funding: int, provider: str | None) -> Customer:
    phone, password, registered = await _register(client, rng)
    token, device = await _login(client, phone, password)
    customer = Customer(token, device, registered["wallet_id"])
    body: dict[str, Any] = {"amount": funding} | ({"provider": provider} if provider else {})
    async with client.post("/v1/cash-ins", json=body, headers=customer.headers(uuid.uuid4().hex)) as fund:
        fund.raise_for_status()
        status = (await fund.json())["status"]
    if status != "CAPTURED":
        raise RuntimeError(f"funding cash-in ended {status}: use a funding provider that answers at once")
    return customer


async def _merchants(
    client: aiohttp.ClientSession, rng: random.Random, count: int, admin: tuple[str, str] | None
) -> tuple[list[str], str | None]:
    """Merchant account ids to pay, or why merchant payments are skipped."""
    if count <= 0:
        return [], "merchant payments off (--merchants 0)"
    async with client.get("/openapi.json") as spec:
        paths = (await spec.json()).get("paths", {}) if spec.status == 200 else {}
    if "/v1/merchant-payments" not in paths:
        return [], "merchant payments skipped: this server has no POST /v1/merchant-payments"
    if admin is None:
        return [], "merchant payments skipped: no admin to grant the merchant role (--admin-phone, --admin-password)"
    token, device = await _login(client, *admin)
    accounts = []
    for _ in range(count):
        _, _, registered = await _register(client, rng)
        grant = f"/v1/admin/users/{registered['user_id']}/roles"
        headers = {"Authorization": f"Bearer {token}", "X-Device-ID": device}
        async with client.post(grant, json={"role": "merchant"}, headers=headers) as granted:
            granted.raise_for_status()
            accounts.append((await granted.json())["merchant_id"])
    return accounts, None


def plan_lanes(weights: dict[str, int], concurrency: int, providers: list[str | None]) -> list[Lane]:
    """Split `concurrency` workers between the operations by weight (at least one each), and a
    provider operation's workers between `providers` (None: the server routes)."""
    total = sum(weights.values())
    lanes: list[Lane] = []
    for operation in OPERATIONS:
        if not weights[operation]:
            continue
        workers = max(1, round(concurrency * weights[operation] / total))
        targets = providers if operation in PROVIDER_OPERATIONS else [None]
        for i, provider in enumerate(targets):
            share = workers // len(targets) + (1 if i < workers % len(targets) else 0)
            lanes.append(Lane(operation, provider, max(1, share)))
    return lanes


async def _send(
    client: aiohttp.ClientSession, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any], bool, float]:
    started = time.perf_counter()
    try:
        async with client.post(path, json=body, headers=headers) as response:
            payload = await response.json(content_type=None)
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return 0, {"code": type(exc).__name__}, False, time.perf_counter() - started
    return status, payload if isinstance(payload, dict) else {}, replayed, time.perf_counter() - started


def _body(lane: Lane, payer: Customer, wallets: list[Customer], merchants: list[str], rng: random.Random) -> Any:
    amount = rng.randint(1, 500)
    if lane.operation == "p2p":
        recipient = rng.choice([w for w in wallets if w is not payer] or wallets)
        return {"recipient_wallet_id": recipient.wallet_id, "amount": amount}
    if lane.operation == "merchant":
        return {"merchant_id": rng.choice(merchants), "amount": amount, "reference": f"bench-{rng.getrandbits(40)}"}
    return {"amount": amount} | ({"provider": lane.provider} if lane.provider else {})


async def run_mixed_bench(
    *,
    url: str,
    concurrency: int,
    duration: float,
    users: int,
    mix: str = DEFAULT_MIX,
    retry_share: float = 0.07,
    providers: list[str] | None = None,
    funding_provider: str | None = None,
    merchants: int = 3,
    admin: tuple[str, str] | None = None,
    funding: int = 5_000_000,
    seed: int | None = None,
) -> MixedResult:
    """Set up `users` funded wallets and `merchants` merchants, then run every lane for `duration`
    seconds. `providers` spreads cash-ins/outs over named providers (None: the server routes)."""
    if not 0 <= retry_share <= 1:
        raise ValueError("retry_share is a fraction between 0 and 1")
    weights = parse_mix(mix)
    rng = random.Random(seed)  # noqa: S311 - load pattern, not security
    connector = aiohttp.TCPConnector(limit=concurrency + 8)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:
        merchant_ids, skipped = await _merchants(client, rng, merchants, admin)
        notes = [skipped] if skipped else []
        if not merchant_ids:
            weights["merchant"] = 0
        setup = asyncio.Semaphore(8)

        async def make() -> Customer:
            async with setup:
                return await _customer(client, rng, funding, funding_provider)

        wallets = list(await asyncio.gather(*(make() for _ in range(max(users, 2)))))
        lanes = plan_lanes(weights, concurrency, list(providers) if providers else [None])
        result = MixedResult(
            concurrency=sum(lane.workers for lane in lanes),
            duration=duration,
            lanes=lanes,
            stats={lane.name: LaneStats() for lane in lanes},
            wallets=len(wallets),
            merchants=len(merchant_ids),
            retry_share=retry_share,
            notes=notes,
        )
        deadline = time.perf_counter() + duration

        async def worker(lane: Lane) -> None:
            local = random.Random(rng.getrandbits(64))  # noqa: S311
            stats = result.stats[lane.name]
            path = _PATHS[lane.operation]
            while time.perf_counter() < deadline:
                payer = local.choice(wallets)
                body = _body(lane, payer, wallets, merchant_ids, local)
                key = uuid.uuid4().hex
                status, answer, _, elapsed = await _send(client, path, body, payer.headers(key))
                if status != 201:
                    result.errors[f"{status} {answer.get('code', '')}".strip()] += 1
                    continue
                stats.latencies.append(elapsed)
                stats.outcomes[str(answer.get("status"))] += 1
                if local.random() < retry_share:  # the client lost the answer and sends it again
                    await _replay(client, path, body, payer.headers(key), answer.get("id"))

        async def _replay(
            client: aiohttp.ClientSession, path: str, body: dict[str, Any], headers: dict[str, str], first: Any
        ) -> None:
            status, answer, replayed, elapsed = await _send(client, path, body, headers)
            result.replays_sent += 1
            if status != 201 or not replayed or answer.get("id") != first:
                result.replay_mismatches += 1
                result.errors[f"replay_mismatch {status} {answer.get('code', '')}".strip()] += 1
            else:
                result.replay_latencies.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker(lane) for lane in lanes for _ in range(lane.workers)))
        result.duration = time.perf_counter() - started
        return result
