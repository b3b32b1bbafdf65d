"""Event pipeline benchmarks (docs/performance.md): relay throughput from the outbox to the
bus, and the end-to-end lag from commit to consumer effect read off a worker's histogram."""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kora.events import DomainEvent, Origin
from kora.events.adapters.outbox import write_outbox


def _payment_event(i: int) -> DomainEvent:
    """A payment.status_changed v1 of the size production writes (~1 KiB enveloped)."""
    payment_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    return DomainEvent(
        type="payment.status_changed",
        version=1,
        aggregate_type="payment",
        aggregate_id=payment_id,
        payload={
            "payment_id": payment_id,
            "payment_type": "p2p",
            "status": "SETTLED",
            "previous_status": "AUTHORIZED",
            "sequence": 4,
            "transitions": [
                {"status": "CAPTURED", "at": now.isoformat(), "reason": "posted to ledger"},
                {"status": "SETTLED", "at": now.isoformat(), "reason": "internal transfer settles at once"},
            ],
            "amount": 1_000 + i % 5_000,
            "currency": "XOF",
            "fee": 0,
            "captured_amount": None,
            "provider": None,
            "provider_ref": None,
            "payer_user_id": str(uuid.uuid4()),
            "payee_user_id": str(uuid.uuid4()),
            "payer_wallet_id": str(uuid.uuid4()),
            "payee_wallet_id": str(uuid.uuid4()),
            "parent_id": None,
            "failure_code": None,
            "captured_at": now.isoformat(),
            "settlement_due": None,
        },
        occurred_at=now,
    )


@dataclass
class RelayBenchResult:
    events: int
    write_seconds: float
    publish_seconds: float
    batch_seconds: list[float]
    batch_size: int

    def render(self) -> str:
        q = statistics.quantiles(self.batch_seconds, n=100) if len(self.batch_seconds) > 1 else [0.0] * 99
        return "\n".join(
            [
                f"outbox writes: {self.events} signed events in {self.write_seconds:.2f} s "
                f"({self.events / self.write_seconds:,.0f} events/s, transactions of 500)",
                f"relay: {self.events} events published in {self.publish_seconds:.2f} s = "
                f"{self.events / self.publish_seconds:,.0f} events/s (batches of {self.batch_size})",
                f"relay batch latency: p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, "
                f"p99 {q[98] * 1000:.1f} ms over {len(self.batch_seconds)} batches",
            ]
        )


async def run_relay_bench(kora: Any, *, events: int, batch_size: int) -> RelayBenchResult:
    """Fill the outbox with `events` real signed events, then publish them all with one relay."""
    from kora.events.relay import Relay

    started = time.perf_counter()
    for start in range(0, events, 500):
        chunk = [(_payment_event(i), Origin()) for i in range(start, min(start + 500, events))]
        async with kora.engine.begin() as conn:
            await write_outbox(conn, chunk, kora.event_signer, at=datetime.now(UTC))
    write_seconds = time.perf_counter() - started
    relay = Relay(kora.engine, await kora.events.bus(), kora.clock, batch_size=batch_size)
    batches: list[float] = []
    published = 0
    started = time.perf_counter()
    while published < events:
        t0 = time.perf_counter()
        n = await relay.publish_once()
        if n == 0:
            break
        batches.append(time.perf_counter() - t0)
        published += n
    return RelayBenchResult(published, write_seconds, time.perf_counter() - started, batches, batch_size)


def histogram_quantiles(metrics_text: str, name: str, quantiles: tuple[float, ...]) -> dict[str, dict[str, float]]:
    """Per label set (consumer), the quantiles of a Prometheus histogram, interpolated within
    buckets as `histogram_quantile` does; also its count."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        buckets: dict[str, list[tuple[float, float]]] = {}
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                key = sample.labels.get("consumer", "")
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
        for key, points in buckets.items():
            points.sort()
            total = points[-1][1]
            result = {"count": total}
            for q in quantiles:
                result[f"p{round(q * 100)}"] = _quantile(points, q * total)
            out[key] = result
    return out


def _quantile(points: list[tuple[float, float]], rank: float) -> float:
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            span = count - previous_count
            return previous_bound + (bound - previous_bound) * ((rank - previous_count) / span if span else 1.0)
        previous_bound, previous_count = bound, count
    return previous_bound


async def lag_report(metrics_url: str) -> dict[str, dict[str, float]]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(metrics_url)).text
    return histogram_quantiles(text, "kora_event_end_to_end_seconds", (0.5, 0.95, 0.99))
