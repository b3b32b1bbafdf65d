"""The `settlement` consumer: the core applies the reconciliation service's outcome events.

- `reconciliation.settlement_confirmed` v1: the provider's report confirms these captured
  payments settled; the core settles them (CAPTURED → SETTLED, one settlement posting each,
  actor `reconciliation`, the report as reference).
- `reconciliation.mismatch_confirmed` v1: a reviewer confirmed a discrepancy; the payment is
  flagged (`payment_flags`, once per payment and case) for support and administrators.

Only the reconciliation service may say either: the runtime's verifier refuses an event of
these types signed by any key not bound to `kora-reconciliation` (and a core event signed by
a reconciliation key), and it goes to the dead-letter queue; `handle` checks the producer again.

Exactly once: the runtime records the event in `processed_events` in the transaction this
consumer's effect runs in. The effect runs in that same transaction, through the core's use
cases on a unit of work bound to it (a SAVEPOINT): settlement postings, status changes, their
outbox events, the audit records and `processed_events` commit together or not at all. On top
of that each payment settles at most once (its row lock, the ledger's unique (payment, step)
index): a second event confirming the same payment (a re-run match, a replay under another
event id) finds it SETTLED and counts it `already_settled`, nothing posted (ADR 0024).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events.domain import RECONCILIATION_PRODUCER, Envelope, EventError, subject_for
from kora.events.ports import ConsumerSpec
from kora.kernel import Clock
from kora.observability.event_metrics import EventMetrics

SETTLEMENT_CONFIRMED = ("reconciliation.settlement_confirmed", 1)
MISMATCH_CONFIRMED = ("reconciliation.mismatch_confirmed", 1)
SOURCE = "reconciliation"


@dataclass(frozen=True, slots=True)
class SettlementInstruction:
    """Settle these payments of `provider` in `currency`, as the report `reference` says."""

    provider: str
    currency: str
    payment_ids: tuple[uuid.UUID, ...]
    reference: str
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class MismatchFlag:
    payment_id: uuid.UUID
    case_id: str
    outcome: str
    reason: str | None
    amount: int | None
    currency: str | None
    at: datetime


class ReconOutcomesPort(Protocol):
    """The core's use cases this consumer drives, on the consumer's connection (its transaction)."""

    async def settle(self, conn: AsyncConnection, instruction: SettlementInstruction) -> Mapping[str, int]:
        """Settle the payments; the count of each outcome (settled, already_settled, rejected)."""
        ...

    async def flag(self, conn: AsyncConnection, flag: MismatchFlag) -> bool:
        """Flag the payment; False when it already carries this case's flag."""
        ...


class SettlementConsumer:
    """An `EventHandler` (kora.events.runtime) named `settlement`."""

    spec = ConsumerSpec("settlement", (subject_for(*SETTLEMENT_CONFIRMED), subject_for(*MISMATCH_CONFIRMED)))
    handles = frozenset({SETTLEMENT_CONFIRMED, MISMATCH_CONFIRMED})

    def __init__(self, *, core: ReconOutcomesPort, clock: Clock, metrics: EventMetrics | None = None) -> None:
        self._core = core
        self._clock = clock
        self._metrics = metrics

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        if event.producer != RECONCILIATION_PRODUCER:  # the verifier refuses it first; never trust one check
            raise EventError("wrong_producer", f"{event.type} from {event.producer!r}"[:200])
        if (event.type, event.version) == SETTLEMENT_CONFIRMED:
            await self._settle(event, conn)
        else:
            await self._flag(event, conn)

    async def _settle(self, event: Envelope, conn: AsyncConnection) -> None:
        p = event.payload
        instruction = SettlementInstruction(
            provider=str(p["provider"]),
            currency=str(p["currency"]),
            payment_ids=tuple(uuid.UUID(str(item["payment_id"])) for item in p["payments"]),
            reference=str(p["reference"]),
            correlation_id=event.correlation_id,
        )
        counts = await self._core.settle(conn, instruction)
        if self._metrics is not None:
            for outcome, n in counts.items():
                if n:
                    self._metrics.recon_settlements.labels(outcome).inc(n)
        if counts.get("rejected"):
            # Reconciliation saw these settled; the core cannot settle them (not captured, another
            # provider...): the settlement report of the run says why, and people look.
            logger.warning("reconciliation confirmed payments the core cannot settle", **_log(event, counts))
        else:
            logger.info("reconciliation settlement applied", **_log(event, counts))

    async def _flag(self, event: Envelope, conn: AsyncConnection) -> None:
        p = event.payload
        amount = p.get("amount")
        flag = MismatchFlag(
            payment_id=uuid.UUID(str(p["payment_id"])),
            case_id=str(p["case_id"]),
            outcome=str(p["outcome"]),
            reason=None if p.get("reason") is None else str(p["reason"]),
            amount=None if amount is None else int(amount),
            currency=None if p.get("currency") is None else str(p["currency"]),
            at=self._clock.now(),
        )
        added = await self._core.flag(conn, flag)
        if added and self._metrics is not None:
            self._metrics.payment_flags.labels(SOURCE, flag.outcome).inc()
        logger.info("payment flagged by reconciliation", outcome=flag.outcome, reason=flag.reason, new=added)


def _log(event: Envelope, counts: Mapping[str, int]) -> dict[str, object]:
    p = event.payload
    return {
        "provider": p["provider"],
        "currency": p["currency"],
        "reference": p["reference"],
        "chunk": p["chunk"],
        **{k: int(v) for k, v in counts.items()},
    }
