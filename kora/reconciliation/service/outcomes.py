"""The reconciliation service's outcome events: what it decided, announced to the core as
versioned, signed events (`reconciliation.settlement_confirmed` v1, `reconciliation.mismatch_confirmed`
v1, producer `kora-reconciliation`), written to the service's own outbox in the transaction of
the decision and published by its relay (ADR 0018, ADR 0024).

- `settlement_hook`, a `run_match` hook: the MATCHED payments still CAPTURED on Kora's side are
  confirmed settled, per (provider, currency), at most 1000 payments per event. Recorded in the
  match run's transaction: a run that rolls back announces nothing.
- `record_mismatch_confirmed`: a reviewer confirmed a discrepancy; the core flags the payment.

Payloads carry ids, codes and amounts only: never a phone number, a name or a provider file's text.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events import DomainEvent, Envelope, Origin, current_origin
from kora.events.adapters.outbox import write_outbox
from kora.events.domain import RECONCILIATION_PRODUCER
from kora.events.signing import EventSigner
from kora.kernel import Clock, SystemClock
from kora.reconciliation.adapters.tables import recon_reports
from kora.reconciliation.domain.matching import MatchResult, Outcome
from kora.reconciliation.service.match_run import MatchRun

SETTLEMENT_CONFIRMED = ("reconciliation.settlement_confirmed", 1)
MISMATCH_CONFIRMED = ("reconciliation.mismatch_confirmed", 1)
MAX_PAYMENTS_PER_EVENT = 1000  # the core settles at most this many payments per request
CONFIRMED_OUTCOMES = frozenset({"MISMATCH", "MISSING_INTERNAL", "MISSING_PROVIDER"})
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
_REASON = re.compile(r"^[a-z_]{1,32}$")

# Told what was recorded (event type, count): the worker's metrics.
Recorded = Callable[[str, int], None]


class OutcomeEvents:
    """Records the service's outcome events in a caller's transaction, signed with the service's
    key. Built once per process from `ReconSettings.event_signing_keys`."""

    def __init__(
        self,
        signer: EventSigner,
        *,
        clock: Clock | None = None,
        max_payments: int = MAX_PAYMENTS_PER_EVENT,
        recorded: Recorded | None = None,
    ) -> None:
        if not 1 <= max_payments <= MAX_PAYMENTS_PER_EVENT:
            raise ValueError(f"max_payments must be within 1..{MAX_PAYMENTS_PER_EVENT}")
        self._signer = signer
        self._clock = clock or SystemClock()
        self._max = max_payments
        self._recorded = recorded

    async def settlement_hook(self, conn: AsyncConnection, run: MatchRun) -> None:
        """A `run_match` hook: `reconciliation.settlement_confirmed` for the MATCHED results whose
        payment is CAPTURED in Kora's view (a SETTLED one is settled already), grouped by
        (provider, currency), in chunks of at most `max_payments`. A re-run before the core's
        SETTLED came back announces them again: the core settles each payment once."""
        groups: dict[tuple[str, str], list[MatchResult]] = defaultdict(list)
        for result in run.results:
            internal, line = result.internal, result.line
            matched = result.outcome is Outcome.MATCHED and line is not None
            if matched and internal is not None and internal.status == "CAPTURED":
                groups[(run.provider, internal.currency)].append(result)
        if not groups:
            return
        report_day = await _report_day(conn, run.report_id)
        reference = settlement_reference(run.provider, run.report_id)
        origin = current_origin()
        events: list[tuple[DomainEvent, Origin]] = []
        for (provider, currency), results in sorted(groups.items()):
            ordered = sorted(results, key=lambda r: r.internal.payment_id if r.internal else "")
            chunks = [ordered[i : i + self._max] for i in range(0, len(ordered), self._max)]
            for number, chunk in enumerate(chunks, start=1):
                payload = {
                    "report_id": str(run.report_id),
                    "provider": provider,
                    "currency": currency,
                    "report_day": report_day.isoformat() if report_day else None,
                    "reference": reference,
                    "chunk": number,
                    "chunks": len(chunks),
                    "payments": [_settled_payment(r) for r in chunk],
                }
                events.append((self._event(SETTLEMENT_CONFIRMED, "recon_report", str(run.report_id), payload), origin))
        await self._write(conn, events)
        logger.info(
            "recon settlements confirmed",
            provider=run.provider,
            payments=sum(len(r) for r in groups.values()),
            events=len(events),
        )

    async def record_mismatch_confirmed(
        self,
        conn: AsyncConnection,
        *,
        case_id: uuid.UUID,
        payment_id: str | uuid.UUID,
        outcome: str,
        reason: str | None,
        amount: int | None,
        currency: str | None,
        correlation_id: str | None = None,
    ) -> None:
        """Record `reconciliation.mismatch_confirmed` v1 in `conn`'s transaction (the one that
        closes the review case): the core flags payment `payment_id` for case `case_id`.
        `outcome`: MISMATCH, MISSING_INTERNAL or MISSING_PROVIDER; `reason`: the match reason
        (amount, fee, currency, status, duplicate) or None; `amount` in minor units (> 0) and
        `currency` (ISO 4217) of what is at stake, or None. Raises ValueError for a value the
        contract refuses, before anything is written. The core applies it once per
        (payment, case): recording it again is harmless. Fits the review queue's
        `MismatchRecorder` port (kora.reconciliation.service.case_types)."""
        if outcome not in CONFIRMED_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(sorted(CONFIRMED_OUTCOMES))}")
        if reason is not None and not _REASON.fullmatch(reason):
            raise ValueError("reason: 1-32 lower-case letters or _")
        if amount is not None and (type(amount) is not int or amount <= 0):
            raise ValueError("amount must be a positive integer of minor units")
        if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError("currency must be an ISO 4217 code")
        payment = str(uuid.UUID(str(payment_id)))
        payload = {
            "case_id": str(case_id),
            "payment_id": payment,
            "outcome": outcome,
            "reason": reason,
            "amount": amount,
            "currency": currency,
        }
        origin = current_origin()
        if correlation_id is not None:
            origin = Origin(correlation_id, origin.trace)
        await self._write(conn, [(self._event(MISMATCH_CONFIRMED, "payment", payment, payload), origin)])

    def _event(
        self, contract: tuple[str, int], aggregate_type: str, aggregate_id: str, payload: Mapping[str, Any]
    ) -> DomainEvent:
        return DomainEvent(contract[0], contract[1], aggregate_type, aggregate_id, payload, self._clock.now())

    async def _write(self, conn: AsyncConnection, events: Sequence[tuple[DomainEvent, Origin]]) -> list[Envelope]:
        written = await write_outbox(conn, events, self._signer, at=self._clock.now(), producer=RECONCILIATION_PRODUCER)
        if self._recorded is not None and written:
            self._recorded(written[0].type, len(written))
        return written


def settlement_reference(provider: str, report_id: uuid.UUID) -> str:
    """The settlement's reference in the core's ledger and audit trail: names the report."""
    reference = f"recon:{provider}:{report_id}"
    return reference if _REFERENCE.fullmatch(reference) else f"recon:{report_id}"


def _settled_payment(result: MatchResult) -> dict[str, Any]:
    assert result.internal is not None
    assert result.line is not None
    return {
        "payment_id": result.internal.payment_id,
        "amount": result.line.amount,
        "fee": result.line.fee,
        "net": result.line.net,
    }


async def _report_day(conn: AsyncConnection, report_id: uuid.UUID) -> date | None:
    found = await conn.execute(sa.select(recon_reports.c.report_day).where(recon_reports.c.id == report_id))
    day = found.scalar_one_or_none()
    return day if isinstance(day, date) else None


__all__ = [
    "CONFIRMED_OUTCOMES",
    "MAX_PAYMENTS_PER_EVENT",
    "MISMATCH_CONFIRMED",
    "SETTLEMENT_CONFIRMED",
    "OutcomeEvents",
    "settlement_reference",
]
