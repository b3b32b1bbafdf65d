"""Corrections for reconciliation cases: one compensating, balanced journal transaction per
approved case, posted through the ledger (never an edit of an entry), idempotent by case id,
audited with the service, the case, the proposer and the approver. The rules (maker-checker,
which accounts) are the domain's: kora/payments/domain/corrections.py."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import timedelta
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.audit import InvalidAuditRecordError
from kora.kernel import Money
from kora.ledger import AccountKind, Direction, InsufficientFunds, LedgerError, LedgerStorageRefused, Leg
from kora.payments.domain.corrections import (
    CorrectionAlreadyPosted,
    CorrectionCommand,
    CorrectionPlan,
    InvalidCorrection,
    Side,
    check_request,
    customer_wallet,
    plan_correction,
)
from kora.payments.domain.errors import FundsUnavailable, PaymentNotFound, WrongCurrency
from kora.payments.domain.idempotency import IdempotencyRequest, Outcome, decide, fingerprint, validate_key
from kora.payments.domain.model import Payment, PaymentError
from kora.payments.ports import PaymentsUnitOfWork
from kora.payments.service.base import DuplicateInFlight, PaymentResult, PaymentsBase

_tracer = trace.get_tracer("kora.payments")

# A case id stays the key of its correction for ten years, not the API's 24 hours: a case
# retried late replays its answer instead of posting again.
CORRECTION_KEY_TTL = timedelta(days=3650)


class Corrections(PaymentsBase):
    """Posts approved corrections (write-off, manual credit, manual debit) for a service."""

    def __init__(self, *, max_amount: int = 1_000_000, **deps: Any) -> None:
        super().__init__(**deps)
        self._max_amount = max_amount

    async def post_correction(self, cmd: CorrectionCommand) -> PaymentResult:
        """Post the correction `cmd` describes, once per case id (the Idempotency-Key): a retry
        with the same body replays the first answer; another body under the same key is
        refused (IdempotencyKeyReused). Refused, with nothing written: the proposer approving
        their own correction (MakerCheckerViolation), a malformed request (InvalidCorrection,
        InvalidPaymentAmount), an unknown payment (PaymentNotFound), another currency than the
        payment's (WrongCurrency), a kind that does not apply to the payment
        (CorrectionNotApplicable), a second correction of this kind on the payment
        (CorrectionAlreadyPosted), a debit the wallet's available balance does not cover
        (FundsUnavailable). Refusals after the request's shape was checked are audited."""
        attributes = {"kora.correction.kind": cmd.kind.value, "kora.currency": cmd.currency}
        with _tracer.start_as_current_span("payments.correction", attributes=attributes) as span:
            idem = IdempotencyRequest(
                cmd.idempotency_scope,
                validate_key(cmd.idempotency_key),
                fingerprint("correction", cmd.fingerprint_body()),
            )
            try:
                check_request(cmd, max_amount=self._max_amount)
                result = await self._post(cmd, idem)
            except DuplicateInFlight:
                result = await self._replay_after_race(idem)
            except LedgerStorageRefused as exc:
                # The database's one-posting-per-(payment, kind) index: a concurrent case won.
                await self._audit_refusal(cmd, "correction_already_posted")
                raise CorrectionAlreadyPosted("this payment already has a correction of this kind") from exc
            except (InsufficientFunds, FundsUnavailable) as exc:
                await self._audit_refusal(cmd, "insufficient_funds")
                raise FundsUnavailable("the wallet's available balance does not cover this debit") from exc
            except LedgerError as exc:
                await self._audit_refusal(cmd, "ledger_refused")
                error = PaymentError(str(exc) or "the ledger refused the correction")
                error.code = "ledger_refused"
                raise error from exc
            except PaymentError as exc:
                if exc.code.startswith("idempotency_"):
                    self._metrics.idempotency_conflict(exc.code)
                else:
                    await self._audit_refusal(cmd, exc.code)
                raise
            span.set_attribute("kora.replayed", result.replayed)
        if not result.replayed:
            logger.info(
                "correction posted",
                case_id=str(cmd.case_id),
                payment_id=str(cmd.payment_id),
                kind=cmd.kind.value,
                amount=cmd.amount,
                currency=cmd.currency,
                transaction_id=result.body.get("transaction_id"),
            )
        return result

    async def _post(self, cmd: CorrectionCommand, idem: IdempotencyRequest) -> PaymentResult:
        async with self._uow() as uow:
            # The payment row first, then the ledger accounts: the lock order captures and
            # settlements use, so a correction never deadlocks with them.
            payment = await uow.payments.get(cmd.payment_id, for_update=True)
            if payment is None:
                raise PaymentNotFound("no such payment")
            replay = await self._claim(uow, idem)
            if replay is not None:
                return replay
            if payment.money.currency != cmd.currency:
                raise WrongCurrency(f"the payment is in {payment.money.currency}")
            if cmd.amount > payment.money.amount:
                raise InvalidCorrection("a correction cannot move more than its payment's amount")
            plan = plan_correction(cmd.kind, payment)
            ledger_kind = f"correction.{cmd.kind.value}"
            if await uow.ledger.transaction_for_payment(payment.id, ledger_kind) is not None:
                raise CorrectionAlreadyPosted("this payment already has a correction of this kind")
            money = Money(cmd.amount, cmd.currency)
            debit = await self._account(uow, plan.debit, payment)
            credit = await self._account(uow, plan.credit, payment)
            holds: list[uuid.UUID] = []
            if plan.debit == "wallet":
                # Held first, against the available balance (posted minus holds), then captured
                # by the posting: a debit never takes what a pending cash-out holds.
                holds.append((await uow.ledger.place_hold(debit, money, payment_id=None)).id)
            started = time.perf_counter()
            txn, _ = await uow.ledger.post(
                kind=ledger_kind,
                legs=[Leg(debit, Direction.DEBIT, money), Leg(credit, Direction.CREDIT, money)],
                payment_id=payment.id,
                correlation_id=cmd.correlation_id,
                capture_holds=holds,
            )
            self._metrics.ledger_posted(ledger_kind, time.perf_counter() - started)
            body = _answer(cmd, plan, debit=debit, credit=credit, transaction_id=txn.id, posted_at=txn.created_at)
            await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=body)
            try:
                await uow.audit.record(
                    actor=cmd.actor,
                    action=f"ledger.correction.{cmd.kind.value}",
                    subject=f"payment:{payment.id}",
                    correlation_id=cmd.correlation_id,
                    details=_audit_details(cmd) | {"transaction_id": str(txn.id)},
                )
            except InvalidAuditRecordError as exc:  # an operator id that looks like a phone number
                raise InvalidCorrection("proposed_by and approved_by must be opaque ids, not phone numbers") from exc
            await uow.commit()
        return PaymentResult(Outcome.SUCCEEDED, body)

    async def _claim(self, uow: PaymentsUnitOfWork, idem: IdempotencyRequest) -> PaymentResult | None:
        """Claim the case's key inside the posting's transaction (None), or answer the stored
        result. On PostgreSQL a concurrent claim waits for the payment's row lock, then sees
        the first one's record."""
        now = self._clock.now()
        claimed = await uow.idempotency.insert(
            idem, outcome=Outcome.IN_FLIGHT, body=None, payment_id=None, at=now, expires_at=now + CORRECTION_KEY_TTL
        )
        if claimed:
            return None
        record = await uow.idempotency.get(idem.scope, idem.key)
        if record is None:
            raise DuplicateInFlight
        stored = decide(record, idem)
        self._metrics.idempotent_replay("correction")
        return PaymentResult(stored.outcome, stored.body, replayed=True)

    async def _account(self, uow: PaymentsUnitOfWork, side: Side, payment: Payment) -> uuid.UUID:
        currency = payment.money.currency
        if side == "wallet":
            wallet = customer_wallet(payment)
            assert wallet is not None  # plan_correction checked it
            return wallet
        if side == "clearing":
            return (await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, currency, payment.provider or "")).id
        return (await uow.ledger.system_account(AccountKind.SUSPENSE, currency)).id

    async def _audit_refusal(self, cmd: CorrectionCommand, code: str) -> None:
        """A refused correction is audited too (in its own transaction: the refused one rolled
        back): a proposer approving their own correction is worth a trace."""
        try:
            async with self._uow() as uow:
                await uow.audit.record(
                    actor=cmd.actor,
                    action=f"ledger.correction.{cmd.kind.value}",
                    subject=f"payment:{cmd.payment_id}",
                    correlation_id=cmd.correlation_id,
                    outcome="denied",
                    details=_audit_details(cmd) | {"code": code},
                )
                await uow.commit()
        except Exception as exc:  # the refusal itself matters more than its audit record
            logger.opt(exception=exc).error("could not audit a refused correction", case_id=str(cmd.case_id))
        logger.warning("correction refused", case_id=str(cmd.case_id), kind=cmd.kind.value, code=code)


def _audit_details(cmd: CorrectionCommand) -> dict[str, str | int | bool | None]:
    return {
        "case_id": str(cmd.case_id),
        "kind": cmd.kind.value,
        "amount": cmd.amount,
        "currency": cmd.currency,
        # The reviewers' free text may name anything: only its digest enters the core's trail.
        "reason_sha256": hashlib.sha256(cmd.reason.encode()).hexdigest(),
        "proposed_by": cmd.proposed_by,
        "approved_by": cmd.approved_by,
        "service": cmd.actor,
    }


def _answer(
    cmd: CorrectionCommand,
    plan: CorrectionPlan,
    *,
    debit: uuid.UUID,
    credit: uuid.UUID,
    transaction_id: uuid.UUID,
    posted_at: Any,
) -> dict[str, Any]:
    kinds = {"wallet": "wallet", "clearing": "provider_clearing", "suspense": "suspense"}
    return {
        "case_id": str(cmd.case_id),
        "payment_id": str(cmd.payment_id),
        "kind": cmd.kind.value,
        "amount": cmd.amount,
        "currency": cmd.currency,
        "transaction_id": str(transaction_id),
        "debit": {"account_id": str(debit), "account_kind": kinds[plan.debit]},
        "credit": {"account_id": str(credit), "account_kind": kinds[plan.credit]},
        "posted_at": posted_at.isoformat(),
    }
