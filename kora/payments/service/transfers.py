"""P2P transfers: one transaction each, or many in one (group commit, ADR 0010)."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loguru import logger
from opentelemetry import trace

from kora.audit import AuditEvent
from kora.events import current_origin
from kora.kernel import Money, new_id
from kora.ledger import (
    AccountKind,
    Direction,
    LedgerError,
    Leg,
    PostingRequest,
)
from kora.payments.domain.errors import (
    RecipientNotFound,
    SameWallet,
    WalletNotFound,
)
from kora.payments.domain.idempotency import (
    IdempotencyRequest,
    Outcome,
    fingerprint,
    validate_key,
)
from kora.payments.domain.model import (
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentType,
)
from kora.payments.domain.risk import RISK_REVIEW, RiskDenied, RiskOutcome, RiskVerdict
from kora.payments.ports import (
    PaymentsUnitOfWork,
)
from kora.payments.service.base import (
    UNKNOWN_DEVICE,
    DuplicateInFlight,
    PaymentResult,
    PaymentsBase,
    business_error,
    risk_denied_body,
)
from kora.platform.group_commit import GroupCommit

_tracer = trace.get_tracer("kora.payments")


@dataclass(frozen=True, slots=True)
class TransferCommand:
    user_id: uuid.UUID
    amount: int
    currency: str
    idempotency_key: str | None
    recipient_phone_number: str | None = None
    recipient_wallet_id: uuid.UUID | None = None
    note: str | None = None
    correlation_id: str | None = None
    # The caller's device (from its session): the risk engine's device binding.
    device_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "currency": self.currency,
            "recipient_phone_number": self.recipient_phone_number,
            "recipient_wallet_id": str(self.recipient_wallet_id) if self.recipient_wallet_id else None,
            "note": self.note,
        }


class Transfers(PaymentsBase):
    """P2P transfers between customer wallets; they settle at once."""

    def __init__(self, **deps: Any) -> None:
        super().__init__(**deps)
        self._group: GroupCommit[_TransferJob, PaymentResult] | None = (
            GroupCommit(self._transfer_batch, max_size=self._config.group_commit_max)
            if self._config.group_commit_max > 0
            else None
        )

    # ----------------------------------------------------------------- P2P
    async def transfer(self, cmd: TransferCommand) -> PaymentResult:
        """Move money between two customer wallets at once (settles immediately).

        Raises input errors (invalid amount/currency/key, key reused with another body, key in
        flight) without storing anything; business refusals (insufficient funds, unknown
        recipient, same wallet) are stored against the key and returned as a FAILED result.
        """
        money = self._money(cmd.amount, cmd.currency)
        if (cmd.recipient_phone_number is None) == (cmd.recipient_wallet_id is None):
            raise RecipientNotFound("give exactly one of recipient_phone_number or recipient_wallet_id")
        idem = IdempotencyRequest(
            f"user:{cmd.user_id}",
            validate_key(cmd.idempotency_key),
            fingerprint("transfer", cmd.fingerprint_body()),
        )
        actor = f"user:{cmd.user_id}"
        with _tracer.start_as_current_span("payments.transfer") as span:
            recipient_user: uuid.UUID | None = None
            if cmd.recipient_phone_number is not None:
                recipient_user = await self._directory.user_for_phone(cmd.recipient_phone_number)
            job = _TransferJob(cmd, money, idem, recipient_user, actor, contextvars.copy_context())
            if self._group is None:
                result = await self._transfer_alone(job)
            else:
                result = await self._group.submit(job)
            if result.outcome is Outcome.FAILED:
                span.set_attribute("kora.payment.refused", str(result.body.get("code")))
            if job.grouped:  # logged here, in the request's own context (correlation id)
                logger.info(
                    "payment {outcome}",
                    outcome="SETTLED" if result.outcome is Outcome.SUCCEEDED else "refused",
                    payment_id=result.body.get("id"),
                    payment_type=PaymentType.P2P.value,
                    code=result.body.get("code"),
                )
        return result

    async def _transfer_alone(self, job: _TransferJob) -> PaymentResult:
        """One transfer in its own transaction."""
        try:
            return await self._transfer(job.cmd, job.money, job.idem, job.recipient_user, job.actor)
        except DuplicateInFlight:
            return await self._replay_after_race(job.idem)
        except (LedgerError, RecipientNotFound, SameWallet, WalletNotFound) as exc:
            return await self._store_failure(
                job.idem,
                business_error(exc),
                payment_type=PaymentType.P2P,
                actor=job.actor,
                correlation_id=job.cmd.correlation_id,
            )
        except PaymentError as exc:
            self._metrics.idempotency_conflict(exc.code)
            raise

    async def _transfer_batch(self, jobs: list[_TransferJob]) -> list[PaymentResult | Exception]:
        """Group commit of concurrent transfers; falls back to one transaction each if the
        shared transaction fails for any reason (nothing of it was committed then)."""
        self._metrics.group_commit(len(jobs))
        if len(jobs) > 1:
            try:
                return await self._transfer_group(jobs)
            except Exception as exc:
                self._metrics.group_commit_fallback()
                logger.opt(exception=exc).warning("group commit failed; retrying one by one", size=len(jobs))
        results: list[PaymentResult | Exception] = []
        for job in jobs:
            try:
                results.append(await self._alone_in_own_context(job))
            except Exception as exc:
                results.append(exc)
        return results

    async def _alone_in_own_context(self, job: _TransferJob) -> PaymentResult:
        """Run one job of a batch alone, in its request's context (logs and spans carry its own
        correlation id), from the group-commit worker."""
        if job.context is None:
            return await self._transfer_alone(job)
        return await asyncio.get_running_loop().create_task(self._transfer_alone(job), context=job.context)

    async def _transfer_group(self, jobs: list[_TransferJob]) -> list[PaymentResult | Exception]:
        with _tracer.start_as_current_span("payments.transfer_group", attributes={"kora.batch.size": len(jobs)}):
            payment_ids = [new_id() for _ in jobs]
            results: dict[int, PaymentResult] = {}
            async with self._uow() as uow:
                at = self._clock.now()
                claimed = await uow.idempotency.claim_many(
                    [(job.idem, pid) for job, pid in zip(jobs, payment_ids, strict=True)],
                    at=at,
                    expires_at=at + self._config.idempotency_ttl,
                )
                ready: list[int] = []
                for i, job in enumerate(jobs):
                    key = (job.idem.scope, job.idem.key)
                    if key in claimed:  # the first job with a key owns it; a repeat replays later
                        claimed.discard(key)
                        ready.append(i)
                plans: dict[int, tuple[Payment, list[Leg]] | Exception] = {}
                for i in ready:
                    context = jobs[i].context
                    if context is not None:  # its events carry its request's trace, not the batch's
                        uow.events.bind_origin(str(payment_ids[i]), context.run(current_origin))
                    try:
                        plans[i] = await self._plan_transfer(uow, jobs[i], payment_ids[i], at)
                    except (RecipientNotFound, SameWallet, WalletNotFound) as exc:
                        plans[i] = exc
                verdicts = await self._assess_group(uow, jobs, plans, ready)
                unsettled = await self._apply_verdicts(uow, plans, verdicts, results, at)
                by_risk = set(results)  # counted with their payments below
                postable = [i for i in ready if isinstance(plans[i], tuple) and i not in results]
                outcomes = await uow.ledger.post_many(
                    [
                        PostingRequest("p2p", _legs(plans[i]), payment_ids[i], jobs[i].cmd.correlation_id)
                        for i in postable
                    ]
                )
                posted: list[uuid.UUID] = []
                for i, outcome in zip(postable, outcomes, strict=True):
                    if isinstance(outcome, LedgerError):
                        plans[i] = outcome
                        await self._risk.released(uow, payment_ids[i])
                    else:
                        posted.append(payment_ids[i])
                await self._risk.captured_many(uow, posted)
                settled: list[Payment] = []
                completions: list[tuple[IdempotencyRequest, Outcome, dict[str, Any]]] = []
                events: list[AuditEvent] = []
                for i in ready:
                    job, plan = jobs[i], plans[i]
                    if i in by_risk:  # denied or held by risk
                        completions.append((job.idem, results[i].outcome, results[i].body))
                        events.append(_risk_event(job, _planned(plan), verdicts[i]))
                        continue
                    if isinstance(plan, Exception):
                        failure = business_error(plan)
                        body = {"code": failure.code, "detail": str(failure)}
                        results[i] = PaymentResult(Outcome.FAILED, body)
                        completions.append((job.idem, Outcome.FAILED, body))
                        events.append(_refusal_event(job, failure.code))
                        continue
                    payment = plan[0]
                    payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="funds checked", actor=job.actor)
                    payment.transition(PaymentStatus.CAPTURED, at=at, reason="posted to ledger", actor=job.actor)
                    payment.transition(
                        PaymentStatus.SETTLED,
                        at=at,
                        reason="internal transfer settles at once",
                        actor="system",
                    )
                    view = payment.view()
                    settled.append(payment)
                    results[i] = PaymentResult(Outcome.SUCCEEDED, view)
                    completions.append((job.idem, Outcome.SUCCEEDED, view))
                    events.append(_settled_event(job, payment, verdicts[i]))
                await uow.payments.add_many(settled + unsettled)
                await uow.idempotency.complete_many(completions)
                await uow.audit.record_many(events)
                await uow.commit()
            for payment in settled:
                self._metrics.ledger_posted("p2p", uow.ledger.last_posting_seconds)
                self._metrics.payment_finished(payment.type.value, payment.status.value)
                self._metrics.amount_moved(payment.type.value, payment.money.currency, payment.money.amount)
            for payment in unsettled:
                if payment.status is PaymentStatus.FAILED:
                    self._finished(payment)
            for i in results:
                jobs[i].grouped = True
                if results[i].outcome is Outcome.FAILED and i not in by_risk:
                    self._metrics.payment_finished(PaymentType.P2P.value, "REFUSED")
        # Jobs whose key was already known (or repeated in this batch) go the single way: replay.
        out: list[PaymentResult | Exception] = []
        for i, job in enumerate(jobs):
            if i in results:
                out.append(results[i])
                continue
            try:
                out.append(await self._alone_in_own_context(job))
            except Exception as exc:
                out.append(exc)
        return out

    async def _assess_group(
        self,
        uow: PaymentsUnitOfWork,
        jobs: list[_TransferJob],
        plans: dict[int, tuple[Payment, list[Leg]] | Exception],
        ready: list[int],
    ) -> dict[int, RiskVerdict]:
        """Risk for every planned transfer of a batch, before any hold or posting; the risk
        gate takes the payers' locks in one order (its lock keys'), and the ledger's row locks
        come only after them, so two batches (or a batch and a lone transfer) cannot deadlock."""
        planned = [i for i in ready if isinstance(plans[i], tuple)]
        verdicts = await self._risk.assess_many(uow, [(_planned(plans[i]), _device(jobs[i].cmd)) for i in planned])
        return dict(zip(planned, verdicts, strict=True))

    async def _apply_verdicts(
        self,
        uow: PaymentsUnitOfWork,
        plans: dict[int, tuple[Payment, list[Leg]] | Exception],
        verdicts: dict[int, RiskVerdict],
        results: dict[int, PaymentResult],
        at: datetime,
    ) -> list[Payment]:
        """Denied transfers fail; reviewed ones hold their funds and wait AUTHORIZED. Their
        answers go in `results`; returns their payments (recorded with the batch, never posted).
        A review whose hold the wallet cannot cover becomes that refusal, its reservation released."""
        unsettled: list[Payment] = []
        reviewed = [i for i, verdict in verdicts.items() if verdict.outcome is RiskOutcome.REVIEW]
        if reviewed:
            # Holds lock their payers' wallets before the batch's postings lock theirs: take
            # every wallet of both at once, in the ledger's order, or two transactions could
            # each wait for a wallet the other holds.
            allowed = [i for i, verdict in verdicts.items() if verdict.outcome is RiskOutcome.ALLOW]
            await uow.ledger.lock(
                [_payer(plans[i]) for i in reviewed] + [leg.account_id for i in allowed for leg in _legs(plans[i])]
            )
        for i, verdict in verdicts.items():
            payment = _planned(plans[i])
            if verdict.outcome is RiskOutcome.DENY:
                payment.fail(at=at, code=RiskDenied.code, actor="risk")
            elif verdict.outcome is RiskOutcome.REVIEW:
                try:
                    await uow.ledger.place_hold(_payer(plans[i]), payment.money, payment_id=payment.id)
                except LedgerError as exc:
                    plans[i] = exc
                    await self._risk.released(uow, payment.id)
                    continue
                payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="held for risk review", actor="risk")
                payment.pending_operation = RISK_REVIEW
            else:
                continue
            unsettled.append(payment)
            results[i] = _risk_result(payment, verdict)
        return unsettled

    async def _plan_transfer(
        self, uow: PaymentsUnitOfWork, job: _TransferJob, payment_id: uuid.UUID, at: datetime
    ) -> tuple[Payment, list[Leg]]:
        cmd = job.cmd
        sender_wallet = await self._wallet_id(uow, cmd.user_id)
        recipient_wallet, recipient_user = await self._recipient(uow, cmd, job.recipient_user)
        if recipient_wallet == sender_wallet:
            raise SameWallet("a wallet cannot pay itself")
        payment = Payment.initiate(
            payment_id=payment_id,
            type=PaymentType.P2P,
            money=job.money,
            at=at,
            initiated_by=cmd.user_id,
            actor=job.actor,
            payer_wallet_id=sender_wallet,
            payee_wallet_id=recipient_wallet,
            payer_user_id=cmd.user_id,
            payee_user_id=recipient_user,
            correlation_id=cmd.correlation_id,
        )
        legs = [
            Leg(sender_wallet, Direction.DEBIT, job.money),
            Leg(recipient_wallet, Direction.CREDIT, job.money),
        ]
        return payment, legs

    async def _recipient(
        self, uow: PaymentsUnitOfWork, cmd: TransferCommand, recipient_user: uuid.UUID | None
    ) -> tuple[uuid.UUID, uuid.UUID]:
        if cmd.recipient_wallet_id is not None:
            account = await uow.ledger.account(cmd.recipient_wallet_id)
            if account is None or account.kind is not AccountKind.WALLET:
                raise RecipientNotFound("no wallet with this id")
            return account.id, uuid.UUID(account.owner_ref)
        if recipient_user is None:
            raise RecipientNotFound("no customer with this phone number")
        return await self._wallet_id(uow, recipient_user), recipient_user

    async def _transfer(
        self,
        cmd: TransferCommand,
        money: Money,
        idem: IdempotencyRequest,
        recipient_user: uuid.UUID | None,
        actor: str,
    ) -> PaymentResult:
        job = _TransferJob(cmd, money, idem, recipient_user, actor)
        async with self._uow() as uow:
            at = self._clock.now()
            payment_id = new_id()
            replay = await self._start(uow, idem, payment_id)
            if replay is not None:
                return replay
            payment, legs = await self._plan_transfer(uow, job, payment_id, at)
            # Allowed, it is posted in this transaction: its reservation counts for good at once
            # (a refused posting rolls both back).
            verdict = await self._risk.assess(uow, payment, device_id=_device(cmd), settles_now=True)
            if verdict.outcome is RiskOutcome.DENY:
                return await self._refuse_for_risk(uow, payment, verdict, idem, actor)
            if verdict.outcome is RiskOutcome.REVIEW:
                return await self._hold_for_review(uow, payment, verdict, idem, hold_funds=True)
            payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="funds checked", actor=actor)
            await uow.ledger.post(kind="p2p", legs=legs, payment_id=payment.id, correlation_id=cmd.correlation_id)
            payment.transition(PaymentStatus.CAPTURED, at=at, reason="posted to ledger", actor=actor)
            payment.transition(PaymentStatus.SETTLED, at=at, reason="internal transfer settles at once", actor="system")
            await uow.payments.add(payment)
            view = payment.view()
            await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
            await uow.audit.record_many([_settled_event(job, payment, verdict)])
            await uow.commit()
        self._metrics.ledger_posted("p2p", uow.ledger.last_posting_seconds)
        self._finished(payment)
        return PaymentResult(Outcome.SUCCEEDED, view)


@dataclass(slots=True)
class _TransferJob:
    cmd: TransferCommand
    money: Money
    idem: IdempotencyRequest
    recipient_user: uuid.UUID | None
    actor: str
    context: contextvars.Context | None = None
    grouped: bool = False


def _legs(plan: tuple[Payment, list[Leg]] | Exception) -> list[Leg]:
    assert isinstance(plan, tuple)
    return plan[1]


def _planned(plan: tuple[Payment, list[Leg]] | Exception) -> Payment:
    assert isinstance(plan, tuple)
    return plan[0]


def _payer(plan: tuple[Payment, list[Leg]] | Exception) -> uuid.UUID:
    payer = _planned(plan).payer_wallet_id
    assert payer is not None
    return payer


def _device(cmd: TransferCommand) -> str:
    return cmd.device_id or UNKNOWN_DEVICE


def _risk_result(payment: Payment, verdict: RiskVerdict) -> PaymentResult:
    """A grouped transfer's answer when risk denied it (FAILED, as `_refuse_for_risk` answers)
    or held it for review (its AUTHORIZED view)."""
    if verdict.outcome is RiskOutcome.DENY:
        return PaymentResult(Outcome.FAILED, risk_denied_body(payment))
    return PaymentResult(Outcome.SUCCEEDED, payment.view())


def _risk_event(job: _TransferJob, payment: Payment, verdict: RiskVerdict) -> AuditEvent:
    denied = verdict.outcome is RiskOutcome.DENY
    return AuditEvent(
        actor="risk",
        action="payment.p2p.risk_denied" if denied else "payment.p2p.held_for_review",
        subject=f"payment:{payment.id}",
        correlation_id=job.cmd.correlation_id,
        outcome="failure" if denied else "success",
        details={"amount": payment.money.amount, "currency": payment.money.currency, **verdict.audit_details()},
    )


def _settled_event(job: _TransferJob, payment: Payment, verdict: RiskVerdict) -> AuditEvent:
    return AuditEvent(
        actor=job.actor,
        action="payment.p2p.settled",
        subject=f"payment:{payment.id}",
        correlation_id=job.cmd.correlation_id,
        details={"amount": payment.money.amount, "currency": payment.money.currency, **verdict.audit_details()},
    )


def _refusal_event(job: _TransferJob, code: str) -> AuditEvent:
    return AuditEvent(
        actor=job.actor,
        action="payment.p2p.refused",
        subject=job.actor,
        correlation_id=job.cmd.correlation_id,
        outcome="failure",
        details={"code": code},
    )
