"""The settlement step (J+N): a provider's captured payments move from provider clearing to
the settlement bank account, CAPTURED → SETTLED.

Driven for now by the provider's settlement report or the bank statement, through the ops
endpoint or `kora payments settle`; reconciliation will drive it later. The step is generic by
the side a payment's capture posted on provider clearing: a new provider-settled payment type
only declares that side in `CLEARING_SIDE_AT_CAPTURE`.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.kernel import Money, UnknownCurrency, currency
from kora.ledger import AccountKind, Direction, LedgerStorageRefused, Leg
from kora.payments.domain.errors import UnknownProvider
from kora.payments.domain.idempotency import (
    IdempotencyRequest,
    IdempotencyRequestInProgress,
    Outcome,
    decide,
    fingerprint,
    validate_key,
)
from kora.payments.domain.model import PROVIDER_CONTRADICTION, Payment, PaymentError, PaymentStatus, PaymentType
from kora.payments.ports import CardAcquirerRegistry, PaymentsUnitOfWork, PaymentsUnitOfWorkFactory
from kora.payments.service.base import PaymentResult, PaymentsBase
from kora.payments.service.settlement_report import SettlementOutcome, SettlementReport

_tracer = trace.get_tracer("kora.payments")

# Which side of provider clearing a payment type's capture posted. Settling posts the other
# side there and the capture's side on the settlement bank account, so clearing returns to
# zero and the bank holds what the provider actually paid (or took).
CLEARING_SIDE_AT_CAPTURE: dict[PaymentType, Direction] = {
    PaymentType.CASH_IN: Direction.DEBIT,  # the provider collected for us: it owes us
    PaymentType.CASH_OUT: Direction.CREDIT,  # the provider paid out for us: we owe it
    PaymentType.CARD: Direction.DEBIT,  # the acquirer captured for the merchant: it owes us
    # A card refund the acquirer paid back to the card: we owe it. (Internal merchant refunds
    # have no provider and settle at once, so a settlement run never selects them.)
    PaymentType.REFUND: Direction.CREDIT,
}
FLOW = {Direction.DEBIT: "collections", Direction.CREDIT: "disbursements"}

CHUNK_SIZE = 200  # payments per transaction: short transactions, few round trips
MAX_PAYMENT_IDS = 1000
# A settlement key still in flight after this long belongs to a run that died (nothing slow
# happens inside one); re-running is safe, since each payment settles at most once.
STALE_CLAIM = timedelta(minutes=15)
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$"
# The ledger kind of an approved reconciliation write-off (kora/payments/service/corrections.py).
WRITE_OFF_KIND = "correction.write_off"
_REFERENCE = re.compile(REFERENCE_PATTERN)


class InvalidSettlementRequest(PaymentError):
    code = "invalid_settlement_request"


@dataclass(frozen=True, slots=True)
class SettlementCommand:
    """Settle `provider`'s captured payments in `currency`: those named in `payment_ids`, or
    all captured on or before `through` (the business day the provider's report covers: a UTC
    day, by our capture time, that has ended), or the named ones captured by then when both
    are given. `reference` names the provider report
    or bank statement; `actor` is who asks (an admin `user:<id>`, `ops`, `reconciliation`)."""

    provider: str
    currency: str
    actor: str
    reference: str
    payment_ids: tuple[uuid.UUID, ...] | None = None
    through: date | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "currency": self.currency,
            "reference": self.reference,
            "through": self.through.isoformat() if self.through else None,
            "payment_ids": sorted(str(i) for i in self.payment_ids) if self.payment_ids is not None else None,
        }


class Settlements(PaymentsBase):
    """Moves captured provider payments to SETTLED, one ledger posting each, in chunked
    transactions."""

    def __init__(self, *, acquirers: CardAcquirerRegistry | None = None, **deps: Any) -> None:
        super().__init__(**deps)
        # Card acquirers settle their captures and refunds like providers do.
        self._acquirers = acquirers

    def on(self, uow_factory: PaymentsUnitOfWorkFactory) -> Settlements:
        """The same use case on other units of work: savepoints of an event consumer's
        transaction, so a settlement and the event that asked for it commit together."""
        other = copy.copy(self)
        other._uow = uow_factory
        return other

    async def settle(self, cmd: SettlementCommand) -> PaymentResult:
        """Settle the payments `cmd` selects; each is SETTLED at most once (under its row lock,
        and the ledger's unique (payment, step) index refuses a second posting). A payment
        already SETTLED is counted `already_settled`, with its amount and flow (in
        `totals.already_settled`, apart from what this run moved); one that cannot be settled (unknown,
        another provider or currency, not CAPTURED, captured after `through`) is `rejected`
        with a reason, nothing posted. With an Idempotency-Key, a retry replays the report.
        Raises InvalidSettlementRequest, UnknownProvider, and the idempotency errors."""
        self._validate(cmd)
        idem = None
        if cmd.idempotency_key is not None:  # the HTTP route requires one; the CLI has none
            idem = IdempotencyRequest(
                cmd.actor, validate_key(cmd.idempotency_key), fingerprint("settlement", cmd.fingerprint_body())
            )
        attributes = {"kora.provider": cmd.provider, "kora.currency": cmd.currency}
        with _tracer.start_as_current_span("payments.settle", attributes=attributes) as span:
            if idem is not None:
                replay = await self._claim(idem)
                if replay is not None:
                    span.set_attribute("kora.replayed", True)
                    return replay
            try:
                report = await self._run(cmd)
            except BaseException:
                if idem is not None:  # let a retry with the same key run again (it is safe)
                    await self._release(idem)
                raise
            body = report.as_dict()
            await self._finish(cmd, idem, body)
            span.set_attribute("kora.settled", body["settled"])
            span.set_attribute("kora.rejected", body["rejected"])
        logger.info(
            "settlement run finished",
            provider=cmd.provider,
            currency=cmd.currency,
            reference=cmd.reference,
            settled=body["settled"],
            already_settled=body["already_settled"],
            rejected=body["rejected"],
            net=body["totals"]["net"],
        )
        return PaymentResult(Outcome.SUCCEEDED, body)

    def _validate(self, cmd: SettlementCommand) -> None:
        acquirer = self._acquirers.get(cmd.provider) if self._acquirers is not None else None
        if self._providers.get(cmd.provider) is None and acquirer is None:
            raise UnknownProvider(f"provider {cmd.provider!r} is not configured")
        try:
            currency(cmd.currency)
        except UnknownCurrency as exc:
            raise InvalidSettlementRequest(str(exc)) from exc
        if not _REFERENCE.fullmatch(cmd.reference):
            raise InvalidSettlementRequest("reference: 1-100 letters, digits and . _ : / -")
        if cmd.payment_ids is None and cmd.through is None:
            raise InvalidSettlementRequest("name the payments (payment_ids) or the day settled (through)")
        if cmd.payment_ids is not None and not 0 < len(cmd.payment_ids) <= MAX_PAYMENT_IDS:
            raise InvalidSettlementRequest(f"payment_ids: 1 to {MAX_PAYMENT_IDS} ids")
        # A day is settled once it has ended (UTC, by our capture time): a run for today would
        # settle payments captured minutes ago that no provider report can contain yet.
        if cmd.through is not None and cmd.through >= self._clock.now().astimezone(UTC).date():
            raise InvalidSettlementRequest(
                "through: a UTC day that has ended (yesterday or earlier); name today's payments with payment_ids"
            )

    # ----------------------------------------------------------------- the run
    async def _run(self, cmd: SettlementCommand) -> SettlementReport:
        report = SettlementReport(cmd)
        if cmd.payment_ids is not None:
            ids = sorted(set(cmd.payment_ids))  # id order: concurrent runs lock rows in one order
            for start in range(0, len(ids), CHUNK_SIZE):
                report.outcomes += await self._settle_chunk(ids[start : start + CHUNK_SIZE], cmd)
            return report
        assert cmd.through is not None
        after: uuid.UUID | None = None
        while True:  # keyset pages: a payment left CAPTURED (refused) is never read twice
            async with self._uow() as uow:
                ids = await uow.payments.find_captured_for_settlement(
                    provider=cmd.provider,
                    currency=cmd.currency,
                    captured_before=_day_after(cmd.through),
                    after_id=after,
                    limit=CHUNK_SIZE,
                )
            if not ids:
                return report
            report.outcomes += await self._settle_chunk(ids, cmd)
            after = ids[-1]

    async def _settle_chunk(self, ids: Sequence[uuid.UUID], cmd: SettlementCommand) -> list[SettlementOutcome]:
        try:
            outcomes = await self._settle_in_one_transaction(ids, cmd)
        except LedgerStorageRefused:
            # The database refused a posting (a second one for a payment's settlement: the
            # payment's state and the ledger disagree). The chunk rolled back; settle its
            # payments one at a time so the others go through and the culprit is named.
            outcomes = []
            for payment_id in ids:
                try:
                    outcomes += await self._settle_in_one_transaction([payment_id], cmd)
                except LedgerStorageRefused:
                    logger.error("the ledger refused a settlement posting", payment_id=str(payment_id))
                    outcomes.append(SettlementOutcome(payment_id, "rejected", "ledger_refused"))
        for o in outcomes:  # after commit: only what is in the books is counted
            if o.outcome == "settled":
                self._metrics.payment_settled(cmd.provider, o.payment_type or "", o.delay_seconds)
            elif o.outcome == "rejected":
                self._metrics.settlement_rejected(cmd.provider, o.reason or "")
        return outcomes

    async def _settle_in_one_transaction(
        self, ids: Sequence[uuid.UUID], cmd: SettlementCommand
    ) -> list[SettlementOutcome]:
        outcomes: list[SettlementOutcome] = []
        async with self._uow() as uow:
            # Every payment row first, in id order, then the two ledger accounts: concurrent
            # runs (and captures, which lock their payment before its accounts) take locks in
            # one global order, so they wait for each other but never deadlock.
            locked = [(i, await uow.payments.get(i, for_update=True)) for i in sorted(ids)]
            accounts: tuple[uuid.UUID, uuid.UUID] | None = None
            for payment_id, payment in locked:
                refusal = _refusal(payment_id, payment, cmd)
                if refusal is not None:
                    outcomes.append(refusal)
                    continue
                assert payment is not None
                if await uow.ledger.transaction_for_payment(payment.id, WRITE_OFF_KIND) is not None:
                    # Its clearing was closed to suspense by an approved write-off: settling it too
                    # would close clearing twice. People decide (a reversal of the write-off first).
                    outcomes.append(SettlementOutcome(payment.id, "rejected", "written_off"))
                    continue
                if accounts is None:
                    accounts = await self._accounts(uow, cmd)
                outcomes.append(await self._settle_one(uow, payment, accounts, cmd))
            await uow.commit()
        return outcomes

    async def _accounts(self, uow: PaymentsUnitOfWork, cmd: SettlementCommand) -> tuple[uuid.UUID, uuid.UUID]:
        clearing = await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, cmd.currency, cmd.provider)
        bank = await uow.ledger.system_account(AccountKind.SETTLEMENT_BANK, cmd.currency, cmd.provider)
        return clearing.id, bank.id

    async def _settle_one(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        accounts: tuple[uuid.UUID, uuid.UUID],
        cmd: SettlementCommand,
    ) -> SettlementOutcome:
        clearing, bank = accounts
        side = CLEARING_SIDE_AT_CAPTURE[payment.type]
        money = Money(payment.captured_amount or payment.money.amount, payment.money.currency)
        started = time.perf_counter()
        await uow.ledger.post(
            kind=f"{payment.type.value}.settlement",
            legs=[Leg(clearing, _other(side), money), Leg(bank, side, money)],
            payment_id=payment.id,
            correlation_id=cmd.correlation_id,
        )
        self._metrics.ledger_posted(f"{payment.type.value}.settlement", time.perf_counter() - started)
        at = self._clock.now()
        payment.transition(
            PaymentStatus.SETTLED, at=at, reason=f"settled by provider report {cmd.reference}", actor=cmd.actor
        )
        await uow.payments.save(payment)
        await uow.audit.record(
            actor=cmd.actor,
            action=f"payment.{payment.type.value}.settled",
            subject=f"payment:{payment.id}",
            correlation_id=cmd.correlation_id,
            details={
                "amount": money.amount,
                "currency": money.currency,
                "provider": cmd.provider,
                "reference": cmd.reference,
            },
        )
        delay = (at - payment.captured_at).total_seconds() if payment.captured_at else 0.0
        return SettlementOutcome(payment.id, "settled", None, FLOW[side], money.amount, payment.type.value, delay)

    # ----------------------------------------------------------------- idempotency
    async def _claim(self, idem: IdempotencyRequest) -> PaymentResult | None:
        """Claim the key (in flight) in its own short transaction; or the stored answer."""
        async with self._uow() as uow:
            now = self._clock.now()
            record = await uow.idempotency.get(idem.scope, idem.key)
            if record is not None and (
                (record.outcome is not Outcome.IN_FLIGHT and record.is_expired(now))
                or (record.outcome is Outcome.IN_FLIGHT and now - record.created_at > STALE_CLAIM)
            ):
                await uow.idempotency.delete(idem.scope, idem.key)
                record = None
            if record is None:
                claimed = await uow.idempotency.insert(
                    idem,
                    outcome=Outcome.IN_FLIGHT,
                    body=None,
                    payment_id=None,
                    at=now,
                    expires_at=now + self._config.idempotency_ttl,
                )
                if claimed:
                    await uow.commit()
                    return None
                record = await uow.idempotency.get(idem.scope, idem.key)
        if record is None:
            raise IdempotencyRequestInProgress("a concurrent request with this key did not complete")
        try:
            stored = decide(record, idem)
        except PaymentError as exc:
            self._metrics.idempotency_conflict(exc.code)
            raise
        self._metrics.idempotent_replay("settlement")
        return PaymentResult(stored.outcome, stored.body, replayed=True)

    async def _release(self, idem: IdempotencyRequest) -> None:
        try:
            async with self._uow() as uow:
                await uow.idempotency.delete(idem.scope, idem.key)
                await uow.commit()
        except Exception as exc:  # the original error matters more; the claim goes stale
            logger.opt(exception=exc).error("could not release a settlement idempotency key")

    async def _finish(self, cmd: SettlementCommand, idem: IdempotencyRequest | None, body: dict[str, Any]) -> None:
        """Store the report against the key and audit the run, in one transaction."""
        async with self._uow() as uow:
            if idem is not None:
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=body)
            await uow.audit.record(
                actor=cmd.actor,
                action="settlement.run",
                subject=f"provider:{cmd.provider}",
                correlation_id=cmd.correlation_id,
                details={
                    "currency": cmd.currency,
                    "reference": cmd.reference,
                    "through": body["through"],
                    "settled": body["settled"],
                    "already_settled": body["already_settled"],
                    "rejected": body["rejected"],
                    "net": body["totals"]["net"],
                },
            )
            await uow.commit()


def _refusal(payment_id: uuid.UUID, payment: Payment | None, cmd: SettlementCommand) -> SettlementOutcome | None:
    """Why this payment is not settled by this run (None: it is settled)."""
    if payment is None:
        return SettlementOutcome(payment_id, "rejected", "not_found")
    reason: str | None = None
    if payment.provider != cmd.provider:
        reason = "other_provider"
    elif payment.money.currency != cmd.currency:
        reason = "other_currency"
    elif payment.status is PaymentStatus.SETTLED:
        side = CLEARING_SIDE_AT_CAPTURE.get(payment.type)
        amount = payment.captured_amount or payment.money.amount
        return SettlementOutcome(payment.id, "already_settled", None, FLOW[side] if side else None, amount)
    elif payment.type not in CLEARING_SIDE_AT_CAPTURE:
        reason = "not_provider_settled"
    elif payment.status is not PaymentStatus.CAPTURED:
        reason = f"status_{payment.status.value.lower()}"
    elif payment.failure_code == PROVIDER_CONTRADICTION:
        reason = PROVIDER_CONTRADICTION  # the provider contradicted it: a person decides first
    elif cmd.through is not None and (payment.captured_at is None or payment.captured_at >= _day_after(cmd.through)):
        reason = "captured_after_through"
    return None if reason is None else SettlementOutcome(payment.id, "rejected", reason)


def _day_after(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), day_time.min, tzinfo=UTC)


def _other(direction: Direction) -> Direction:
    return Direction.CREDIT if direction is Direction.DEBIT else Direction.DEBIT
