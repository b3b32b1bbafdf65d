"""A micro-benchmark of `SqlRiskActivity.assess_and_reserve`: the labelled dataset's payments
replayed in time order by `concurrency` workers against a migrated database, each call timed
(its own transaction, commit included: an upper bound of what it adds inside a payment's
transaction, which shares the commit). `kora risk bench` prints the result.

Ids are prefixed with a run id, so runs on one database do not mix; the rows stay (the bench is
for a scratch database, never production's).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa

from kora.platform.db import create_engine
from kora.risk.adapters.sql import SqlRiskActivity
from kora.risk.domain.model import RiskRequest
from kora.risk.domain.policy import Policy
from kora.risk.evaluation.dataset import generate
from kora.risk.ports import FixedPolicy

PAYMENTS_PER_CUSTOMER = 44  # what the generator makes per customer over its 28 days


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(q * len(sorted_ms)) - 1))]


@dataclass(frozen=True, slots=True)
class BenchResult:
    payments: int
    concurrency: int
    in_transaction: bool
    customers: int
    seconds: float
    latencies_ms: tuple[float, ...]
    warm_latencies_ms: tuple[float, ...]
    outcomes: Counter[str]
    load: tuple[float, float, float]

    def render(self) -> str:
        all_ms, warm = sorted(self.latencies_ms), sorted(self.warm_latencies_ms)

        def line(name: str, ms: list[float]) -> str:
            return (
                f"{name:<20} p50 {_percentile(ms, 0.50):.2f}  p95 {_percentile(ms, 0.95):.2f}  "
                f"p99 {_percentile(ms, 0.99):.2f}  max {_percentile(ms, 1.0):.2f}  (n={len(ms)})"
            )

        return "\n".join(
            [
                f"assess_and_reserve: {self.payments} payments, {self.customers} payers, "
                f"concurrency {self.concurrency}, "
                + ("inside the caller's transaction" if self.in_transaction else "own transaction (BEGIN, COMMIT)")
                + f", {self.seconds:.1f} s ({self.payments / self.seconds:.0f}/s)",
                line("latency ms, all", all_ms),
                line("after the warm-up", warm),
                "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
                "load average at start: " + " ".join(f"{x:.2f}" for x in self.load),
            ]
        )


async def run_bench(
    url: str, policy: Policy, *, payments: int, concurrency: int, seed: int = 1, in_transaction: bool = False
) -> BenchResult:
    """Replay and time. `in_transaction`: each call runs inside a transaction the bench opened
    (and already used), and only the call is timed — what it adds to a payment's transaction,
    whose BEGIN and COMMIT it shares; otherwise each call is its own transaction, both included."""
    customers = max(20, payments // PAYMENTS_PER_CUSTOMER)
    dataset = generate(seed=seed, customers=customers, policy=policy)
    work = dataset.payments[:payments]
    run = uuid.uuid4().hex[:8]
    queue: asyncio.Queue[tuple[int, RiskRequest]] = asyncio.Queue()
    for i, payment in enumerate(work):
        r = payment.request
        queue.put_nowait(
            (i, RiskRequest(f"{run}-{r.payer_id}", f"{run}-{r.payee_id}", r.amount, r.currency, r.type,
                            r.device_id, r.tier, r.at))
        )  # fmt: skip
    latencies: list[float] = [0.0] * len(work)
    outcomes: Counter[str] = Counter()
    engine = create_engine(url, pool_size=concurrency)
    store = SqlRiskActivity(engine, FixedPolicy(policy))

    async def worker() -> None:
        while not queue.empty():
            i, request = queue.get_nowait()
            if in_transaction:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("SELECT 1"))  # the payment's own first statement
                    started = time.perf_counter()
                    reservation = await store.assess_and_reserve(f"{run}-{i}", request, connection=conn)
                    latencies[i] = (time.perf_counter() - started) * 1000
            else:
                started = time.perf_counter()
                reservation = await store.assess_and_reserve(f"{run}-{i}", request)
                latencies[i] = (time.perf_counter() - started) * 1000
            outcomes[reservation.decision.outcome.label] += 1

    load = os.getloadavg()
    try:
        async with engine.connect():  # open the pool before the clock starts
            pass
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    warm = tuple(ms for ms, p in zip(latencies, work, strict=True) if p.request.at >= dataset.warmup_until)
    return BenchResult(
        payments=len(work),
        concurrency=concurrency,
        in_transaction=in_transaction,
        customers=customers,
        seconds=seconds,
        latencies_ms=tuple(latencies),
        warm_latencies_ms=warm,
        outcomes=outcomes,
        load=load,
    )
