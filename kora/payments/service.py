"""Payment use cases: P2P transfers, cash-in and cash-out, reads.

Each use case owns its unit of work: the payment row, its status history, its ledger
postings, its audit record and its idempotency record commit together or not at all. A
provider is never called while a transaction is open: cash-in/out commit the intent first,
call the provider, then record the outcome in a second transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from loguru import logger
from opentelemetry import trace

from kora.audit import AuditEvent
from kora.kernel import Clock, InvalidAmount, Money, UnknownCurrency, new_id
from kora.ledger import (
    AccountKind,
    Direction,
    InsufficientFunds,
    LedgerError,
    LedgerStorageRefused,
    Leg,
    PostingRequest,
)
from kora.payments.domain.errors import (
    FundsUnavailable,
    InvalidPaymentAmount,
    PaymentNotFound,
    RecipientNotFound,
    SameWallet,
    UnknownProvider,
    WalletNotFound,
    WrongCurrency,
)
from kora.payments.domain.idempotency import (
    IdempotencyRequest,
    IdempotencyRequestInProgress,
    Outcome,
    decide,
    fingerprint,
    validate_key,
)
from kora.payments.domain.model import (
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentType,
)
from kora.payments.ports import (
    PaymentsUnitOfWork,
    PaymentsUnitOfWorkFactory,
    ProviderRegistry,
    RecipientDirectory,
)
from kora.platform.group_commit import GroupCommit
from kora.providers import (
    STATUS_UNREACHABLE,
    ProviderGateway,
    ProviderOperation,
    ProviderOutcome,
    ProviderRequest,
    ProviderResult,
)

_tracer = trace.get_tracer("kora.payments")


class PaymentMetrics(Protocol):
    def payment_finished(self, payment_type: str, status: str) -> None: ...

    def amount_moved(self, payment_type: str, currency: str, amount: int) -> None: ...

    def idempotent_replay(self, route: str) -> None: ...

    def idempotency_conflict(self, reason: str) -> None: ...

    def ledger_posted(self, kind: str, seconds: float) -> None: ...

    def group_commit(self, size: int) -> None: ...

    def group_commit_fallback(self) -> None: ...

    def late_confirmation(self, payment_type: str) -> None: ...


class NullPaymentMetrics:
    def payment_finished(self, payment_type: str, status: str) -> None:
        pass

    def amount_moved(self, payment_type: str, currency: str, amount: int) -> None:
        pass

    def idempotent_replay(self, route: str) -> None:
        pass

    def idempotency_conflict(self, reason: str) -> None:
        pass

    def ledger_posted(self, kind: str, seconds: float) -> None:
        pass

    def group_commit(self, size: int) -> None:
        pass

    def group_commit_fallback(self) -> None:
        pass

    def late_confirmation(self, payment_type: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """The answer to a money-moving request: the payment view on success, or the stored
    failure `{code, detail}`; `replayed` when it comes from an earlier request's record."""

    outcome: Outcome
    body: dict[str, Any]
    replayed: bool = False


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

    def fingerprint_body(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "currency": self.currency,
            "recipient_phone_number": self.recipient_phone_number,
            "recipient_wallet_id": str(self.recipient_wallet_id) if self.recipient_wallet_id else None,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class ProviderMoveCommand:
    user_id: uuid.UUID
    amount: int
    currency: str
    idempotency_key: str | None
    provider: str | None = None
    correlation_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency, "provider": self.provider}


class _DuplicateInFlight(Exception):
    """A concurrent request with the same key committed first."""


@dataclass(frozen=True, slots=True)
class PaymentsConfig:
    wallet_currency: str = "XOF"
    idempotency_ttl: timedelta = timedelta(hours=24)
    # Concurrent transfers share one transaction (group commit), at most this many at once;
    # 0 (the default here; the service's settings turn it on) means one transaction each.
    group_commit_max: int = 0


class PaymentsService:
    def __init__(
        self,
        *,
        uow_factory: PaymentsUnitOfWorkFactory,
        directory: RecipientDirectory,
        providers: ProviderRegistry,
        clock: Clock,
        config: PaymentsConfig | None = None,
        metrics: PaymentMetrics | None = None,
    ) -> None:
        self._uow = uow_factory
        self._directory = directory
        self._providers = providers
        self._clock = clock
        self._config = config or PaymentsConfig()
        self._metrics: PaymentMetrics = metrics or NullPaymentMetrics()
        self._group: GroupCommit[_TransferJob, PaymentResult] | None = (
            GroupCommit(self._transfer_batch, max_size=self._config.group_commit_max)
            if self._config.group_commit_max > 0
            else None
        )

    # ----------------------------------------------------------------- validation helpers
    def _money(self, amount: int, code: str) -> Money:
        try:
            money = Money.payable(amount, code)
        except UnknownCurrency as exc:
            raise WrongCurrency(str(exc)) from exc
        except InvalidAmount as exc:
            raise InvalidPaymentAmount(str(exc)) from exc
        if money.currency != self._config.wallet_currency:
            raise WrongCurrency(f"wallets are held in {self._config.wallet_currency}; {money.currency} is refused")
        return money

    async def _wallet_id(self, uow: PaymentsUnitOfWork, user_id: uuid.UUID) -> uuid.UUID:
        account = await uow.ledger.open_wallet(user_id, self._config.wallet_currency)
        return account.id

    # ----------------------------------------------------------------- idempotency plumbing
    async def _start(
        self, uow: PaymentsUnitOfWork, idem: IdempotencyRequest, payment_id: uuid.UUID
    ) -> PaymentResult | None:
        """Inside the use case's transaction: replay a known key, or claim it (in flight)."""
        now = self._clock.now()

        async def claim() -> bool:
            return await uow.idempotency.insert(
                idem,
                outcome=Outcome.IN_FLIGHT,
                body=None,
                payment_id=payment_id,
                at=now,
                expires_at=now + self._config.idempotency_ttl,
            )

        # Claim first (the common case, one statement); on PostgreSQL a concurrent claim of the
        # same key waits here until the other transaction ends.
        if await claim():
            return None
        record = await uow.idempotency.get(idem.scope, idem.key)
        if record is None:
            raise _DuplicateInFlight
        if record.is_expired(now) and record.outcome is not Outcome.IN_FLIGHT:
            # An in-flight key never expires: its payment may still be moving at a provider.
            await uow.idempotency.delete(idem.scope, idem.key)
            if await claim():
                return None
            raise _DuplicateInFlight
        return self._replay(decide(record, idem))

    def _replay(self, stored: Any) -> PaymentResult:
        self._metrics.idempotent_replay("money")
        return PaymentResult(stored.outcome, stored.body, replayed=True)

    async def _replay_after_race(self, idem: IdempotencyRequest) -> PaymentResult:
        async with self._uow() as uow:
            record = await uow.idempotency.get(idem.scope, idem.key)
        if record is None:  # the other request failed and released the key; tell the caller to retry
            raise IdempotencyRequestInProgress("a concurrent request with this key did not complete")
        try:
            return self._replay(decide(record, idem))
        except PaymentError as exc:
            self._metrics.idempotency_conflict(exc.code)
            raise

    async def _store_failure(
        self,
        idem: IdempotencyRequest,
        exc: Exception,
        *,
        payment_type: PaymentType,
        actor: str,
        correlation_id: str | None,
    ) -> PaymentResult:
        code = getattr(exc, "code", "payment_failed")
        body = {"code": code, "detail": str(exc)}
        now = self._clock.now()
        async with self._uow() as uow:
            inserted = await uow.idempotency.insert(
                idem,
                outcome=Outcome.FAILED,
                body=body,
                payment_id=None,
                at=now,
                expires_at=now + self._config.idempotency_ttl,
            )
            if not inserted:
                return await self._replay_after_race(idem)
            await uow.audit.record(
                actor=actor,
                action=f"payment.{payment_type.value}.refused",
                subject=actor,
                correlation_id=correlation_id,
                outcome="failure",
                details={"code": code},
            )
            await uow.commit()
        self._metrics.payment_finished(payment_type.value, "REFUSED")
        logger.info("payment refused", payment_type=payment_type.value, code=code)
        return PaymentResult(Outcome.FAILED, body)

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
        except _DuplicateInFlight:
            return await self._replay_after_race(job.idem)
        except (LedgerError, RecipientNotFound, SameWallet, WalletNotFound) as exc:
            return await self._store_failure(
                job.idem,
                _business_error(exc),
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
                    try:
                        plans[i] = await self._plan_transfer(uow, jobs[i], payment_ids[i], at)
                    except (RecipientNotFound, SameWallet, WalletNotFound) as exc:
                        plans[i] = exc
                postable = [i for i in ready if isinstance(plans[i], tuple)]
                outcomes = await uow.ledger.post_many(
                    [
                        PostingRequest("p2p", _legs(plans[i]), payment_ids[i], jobs[i].cmd.correlation_id)
                        for i in postable
                    ]
                )
                for i, outcome in zip(postable, outcomes, strict=True):
                    if isinstance(outcome, LedgerError):
                        plans[i] = outcome
                settled: list[Payment] = []
                completions: list[tuple[IdempotencyRequest, Outcome, dict[str, Any]]] = []
                events: list[AuditEvent] = []
                for i in ready:
                    job, plan = jobs[i], plans[i]
                    if isinstance(plan, Exception):
                        failure = _business_error(plan)
                        body = {"code": failure.code, "detail": str(failure)}
                        results[i] = PaymentResult(Outcome.FAILED, body)
                        completions.append((job.idem, Outcome.FAILED, body))
                        events.append(_refusal_event(job, failure.code))
                        continue
                    payment = plan[0]
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
                    events.append(_settled_event(job, payment))
                await uow.payments.add_many(settled)
                await uow.idempotency.complete_many(completions)
                await uow.audit.record_many(events)
                await uow.commit()
            for payment in settled:
                self._metrics.ledger_posted("p2p", uow.ledger.last_posting_seconds)
                self._metrics.payment_finished(payment.type.value, payment.status.value)
                self._metrics.amount_moved(payment.type.value, payment.money.currency, payment.money.amount)
            for i in results:
                jobs[i].grouped = True
                if results[i].outcome is Outcome.FAILED:
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
        payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="funds checked", actor=job.actor)
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
            await uow.ledger.post(kind="p2p", legs=legs, payment_id=payment.id, correlation_id=cmd.correlation_id)
            payment.transition(PaymentStatus.CAPTURED, at=at, reason="posted to ledger", actor=actor)
            payment.transition(PaymentStatus.SETTLED, at=at, reason="internal transfer settles at once", actor="system")
            await uow.payments.add(payment)
            view = payment.view()
            await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
            await uow.audit.record_many([_settled_event(job, payment)])
            await uow.commit()
        self._metrics.ledger_posted("p2p", uow.ledger.last_posting_seconds)
        self._finished(payment)
        return PaymentResult(Outcome.SUCCEEDED, view)

    def _finished(self, payment: Payment) -> None:
        self._metrics.payment_finished(payment.type.value, payment.status.value)
        if payment.status is PaymentStatus.SETTLED:
            self._metrics.amount_moved(payment.type.value, payment.money.currency, payment.money.amount)
        logger.info(
            "payment {status}",
            status=payment.status.value,
            payment_id=str(payment.id),
            payment_type=payment.type.value,
            amount=payment.money.amount,
            currency=payment.money.currency,
        )

    # ----------------------------------------------------------------- cash-in / cash-out
    async def cash_in(self, cmd: ProviderMoveCommand) -> PaymentResult:
        """Fund the wallet from the customer's mobile-money account through a provider."""
        return await self._provider_move(cmd, PaymentType.CASH_IN)

    async def cash_out(self, cmd: ProviderMoveCommand) -> PaymentResult:
        """Withdraw from the wallet to the customer's mobile-money account; funds are held
        (AUTHORIZED) before the provider is called and captured when it confirms."""
        return await self._provider_move(cmd, PaymentType.CASH_OUT)

    def _gateway(self, name: str | None) -> ProviderGateway:
        chosen = name or self._providers.default
        gateway = self._providers.get(chosen)
        if gateway is None:
            raise UnknownProvider(f"provider {chosen!r} is not configured")
        return gateway

    async def _provider_move(self, cmd: ProviderMoveCommand, kind: PaymentType) -> PaymentResult:
        money = self._money(cmd.amount, cmd.currency)
        gateway = self._gateway(cmd.provider)
        op = kind.value
        idem = IdempotencyRequest(
            f"user:{cmd.user_id}", validate_key(cmd.idempotency_key), fingerprint(op, cmd.fingerprint_body())
        )
        actor = f"user:{cmd.user_id}"
        with _tracer.start_as_current_span(f"payments.{op}", attributes={"kora.provider": gateway.name}):
            try:
                started = await self._begin_provider_move(cmd, kind, money, gateway.name, idem, actor)
            except _DuplicateInFlight:
                return await self._replay_after_race(idem)
            except (LedgerError, WalletNotFound) as exc:
                return await self._store_failure(
                    idem,
                    _business_error(exc),
                    payment_type=kind,
                    actor=actor,
                    correlation_id=cmd.correlation_id,
                )
            except PaymentError as exc:
                self._metrics.idempotency_conflict(exc.code)
                raise
            if isinstance(started, PaymentResult):
                return started
            payment, hold_id = started
            account = await self._directory.mobile_money_number(cmd.user_id)
            request = ProviderRequest(payment.id, money, account_ref=account, correlation_id=cmd.correlation_id)
            # Once the intent is committed, the call and its outcome run to the end even if the
            # client goes away (shielded): the payment must not be left half-done by a disconnect.
            return await asyncio.shield(
                self._call_provider_and_finish(gateway, kind, request, hold_id, idem, actor, cmd.correlation_id)
            )

    async def _call_provider_and_finish(
        self,
        gateway: ProviderGateway,
        kind: PaymentType,
        request: ProviderRequest,
        hold_id: uuid.UUID | None,
        idem: IdempotencyRequest,
        actor: str,
        correlation_id: str | None,
    ) -> PaymentResult:
        with _tracer.start_as_current_span(f"provider.{gateway.name}.{kind.value}"):
            try:
                result = await (gateway.collect(request) if kind is PaymentType.CASH_IN else gateway.disburse(request))
            except Exception as exc:  # an ambiguous outcome: never guess, keep it pending
                logger.opt(exception=exc).warning("provider call ended without an answer", provider=gateway.name)
                result = ProviderResult(ProviderOutcome.PENDING)
        return await self._finish_provider_move(request.payment_id, hold_id, result, idem, actor, correlation_id)

    async def _begin_provider_move(
        self,
        cmd: ProviderMoveCommand,
        kind: PaymentType,
        money: Money,
        provider: str,
        idem: IdempotencyRequest,
        actor: str,
    ) -> PaymentResult | tuple[Payment, uuid.UUID | None]:
        async with self._uow() as uow:
            at = self._clock.now()
            wallet = await self._wallet_id(uow, cmd.user_id)
            payment = Payment.initiate(
                type=kind,
                money=money,
                at=at,
                initiated_by=cmd.user_id,
                actor=actor,
                payer_wallet_id=wallet if kind is PaymentType.CASH_OUT else None,
                payee_wallet_id=wallet if kind is PaymentType.CASH_IN else None,
                payer_user_id=cmd.user_id if kind is PaymentType.CASH_OUT else None,
                payee_user_id=cmd.user_id if kind is PaymentType.CASH_IN else None,
                provider=provider,
                correlation_id=cmd.correlation_id,
            )
            replay = await self._start(uow, idem, payment.id)
            if replay is not None:
                return replay
            hold_id: uuid.UUID | None = None
            if kind is PaymentType.CASH_OUT:
                hold = await uow.ledger.place_hold(wallet, money, payment_id=payment.id)
                hold_id = hold.id
                payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="funds held", actor=actor)
            await uow.payments.add(payment)
            await uow.audit.record(
                actor=actor,
                action=f"payment.{kind.value}.{payment.status.value.lower()}",
                subject=f"payment:{payment.id}",
                correlation_id=cmd.correlation_id,
                details={"amount": money.amount, "currency": money.currency, "provider": provider},
            )
            await uow.commit()
        return payment, hold_id

    async def _finish_provider_move(
        self,
        payment_id: uuid.UUID,
        hold_id: uuid.UUID | None,
        result: ProviderResult,
        idem: IdempotencyRequest | None,
        actor: str,
        correlation_id: str | None,
        *,
        give_up: bool = False,
    ) -> PaymentResult:
        """Record a provider's answer on a payment it was asked to move. Idempotent: a payment
        already in a definite state is left as it is (the request and the sweeper may both get
        an answer). With `give_up`, a payment still PENDING past its maximum age ends FAILED
        (`provider_unresolved`), its hold released; reconciliation will catch a late success."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id, for_update=True)
            if payment is None:  # pragma: no cover - committed just before
                raise PaymentNotFound(str(payment_id))
            provider_actor = f"provider:{payment.provider}"
            at = self._clock.now()
            if idem is None:  # the sweeper: find the key of the request that created it
                record = await uow.idempotency.find_by_payment(payment.id)
                idem = None if record is None else IdempotencyRequest(record.scope, record.key, record.fingerprint)
            if payment.status in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED):
                if hold_id is None:
                    hold = await uow.ledger.active_hold_for_payment(payment.id)
                    hold_id = None if hold is None else hold.id
                payment.provider_ref = result.provider_ref or payment.provider_ref
                if result.outcome is ProviderOutcome.SUCCEEDED:
                    await self._capture_and_settle(uow, payment, hold_id, provider_actor, correlation_id)
                elif result.outcome is ProviderOutcome.FAILED or give_up:
                    if hold_id is not None:
                        await uow.ledger.release_hold(hold_id)
                    code = result.failure_code or "provider_declined"
                    if result.outcome is not ProviderOutcome.FAILED:
                        code, provider_actor = "provider_unresolved", "system"
                    payment.fail(at=at, code=code, actor=provider_actor)
                await uow.payments.save(payment)
                await uow.audit.record(
                    actor=provider_actor,
                    action=f"payment.{payment.type.value}.{payment.status.value.lower()}",
                    subject=f"payment:{payment.id}",
                    correlation_id=correlation_id,
                    outcome="failure" if payment.failure_code else "success",
                    details={"amount": payment.money.amount, "currency": payment.money.currency},
                )
            elif _contradicts(payment.status, result.outcome):
                # The provider now says the opposite of what we recorded (e.g. a success after we
                # gave up): never silently ignored — it needs a person (and reconciliation).
                logger.error(
                    "provider answer contradicts a definite payment",
                    payment_id=str(payment.id),
                    recorded=payment.status.value,
                    provider_outcome=result.outcome.value,
                )
                await uow.audit.record(
                    actor=provider_actor,
                    action=f"payment.{payment.type.value}.conflicting_answer",
                    subject=f"payment:{payment.id}",
                    correlation_id=correlation_id,
                    outcome="denied",
                    details={"recorded": payment.status.value, "provider_outcome": result.outcome.value},
                )
            view = payment.view()
            if idem is not None:
                await uow.idempotency.complete(idem, outcome=Outcome.SUCCEEDED, body=view)
            await uow.commit()
        self._finished(payment)
        return PaymentResult(Outcome.SUCCEEDED, view)

    async def sweep_pending(
        self,
        *,
        older_than: timedelta,
        give_up_after: timedelta,
        limit: int = 500,
        stop: asyncio.Event | None = None,
    ) -> dict[str, int]:
        """Resolve provider payments left INITIATED/AUTHORIZED (a timeout, a crash between the
        two transactions, a provider still deciding): ask the provider for the status of each
        (never guess, never re-send), record the answer, and end those still undecided after
        `give_up_after` as FAILED. Stops between payments once `stop` is set. Returns counts by
        what happened."""
        now = self._clock.now()
        async with self._uow() as uow:
            pending = await uow.payments.find_unresolved(updated_before=now - older_than, limit=limit)
        counts = {"settled": 0, "failed": 0, "still_pending": 0, "gave_up": 0, "errors": 0}
        for payment in pending:
            if stop is not None and stop.is_set():  # shutting down: the rest waits for the next pass
                break
            try:
                counts[await self._sweep_one(payment, now, give_up_after)] += 1
            except Exception as exc:  # one bad payment must not starve the others
                logger.opt(exception=exc).error("sweeping a pending payment failed", payment_id=str(payment.id))
                counts["errors"] += 1
        if pending:
            logger.info("pending payments swept", **counts)
        return counts

    async def _sweep_one(self, payment: Payment, now: datetime, give_up_after: timedelta) -> str:
        gateway = self._providers.get(payment.provider or "")
        if gateway is None:
            raise UnknownProvider(f"provider {payment.provider!r} is not configured")
        operation = ProviderOperation.COLLECT if payment.type is PaymentType.CASH_IN else ProviderOperation.DISBURSE
        account = await self._directory.mobile_money_number(payment.initiated_by)
        request = ProviderRequest(payment.id, payment.money, account_ref=account, correlation_id=payment.correlation_id)
        with _tracer.start_as_current_span(f"provider.{gateway.name}.status"):
            result = await gateway.status(request, operation)
        if result.outcome is ProviderOutcome.PENDING:
            # Give up only on what the provider itself said (still pending, or never heard of
            # it) past the maximum age — never because it could not be asked.
            expired = now - payment.created_at >= give_up_after
            if not expired or result.failure_code == STATUS_UNREACHABLE:
                return "still_pending" if result.failure_code != STATUS_UNREACHABLE else "errors"
            await self._finish_provider_move(
                payment.id, None, result, None, "system", payment.correlation_id, give_up=True
            )
            return "gave_up"
        finished = await self._finish_provider_move(payment.id, None, result, None, "system", payment.correlation_id)
        if finished.body.get("status") == PaymentStatus.SETTLED.value and result.outcome is ProviderOutcome.SUCCEEDED:
            self._metrics.late_confirmation(payment.type.value)
            return "settled"
        return "failed"

    async def _capture_and_settle(
        self,
        uow: PaymentsUnitOfWork,
        payment: Payment,
        hold_id: uuid.UUID | None,
        actor: str,
        correlation_id: str | None,
    ) -> None:
        at = self._clock.now()
        provider = payment.provider or "unknown"
        money = payment.money
        clearing = await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, money.currency, provider)
        bank = await uow.ledger.system_account(AccountKind.SETTLEMENT_BANK, money.currency, provider)
        if payment.type is PaymentType.CASH_IN:
            assert payment.payee_wallet_id is not None
            payment.transition(PaymentStatus.AUTHORIZED, at=at, reason="provider confirmed collection", actor=actor)
            capture = [
                Leg(clearing.id, Direction.DEBIT, money),
                Leg(payment.payee_wallet_id, Direction.CREDIT, money),
            ]
            settle = [Leg(bank.id, Direction.DEBIT, money), Leg(clearing.id, Direction.CREDIT, money)]
        else:
            assert payment.payer_wallet_id is not None
            capture = [
                Leg(payment.payer_wallet_id, Direction.DEBIT, money),
                Leg(clearing.id, Direction.CREDIT, money),
            ]
            settle = [Leg(clearing.id, Direction.DEBIT, money), Leg(bank.id, Direction.CREDIT, money)]
        kind = payment.type.value
        await uow.ledger.post(
            kind=f"{kind}.capture",
            legs=capture,
            payment_id=payment.id,
            correlation_id=correlation_id,
            capture_holds=[hold_id] if hold_id else (),
        )
        payment.transition(PaymentStatus.CAPTURED, at=at, reason="provider confirmed", actor=actor)
        await uow.ledger.post(
            kind=f"{kind}.settlement", legs=settle, payment_id=payment.id, correlation_id=correlation_id
        )
        payment.transition(PaymentStatus.SETTLED, at=at, reason="sandbox provider settles at once", actor=actor)

    # ----------------------------------------------------------------- reads
    async def get_payment(self, payment_id: uuid.UUID, *, viewer: uuid.UUID, privileged: bool) -> dict[str, Any]:
        """The payment's view; PaymentNotFound for anyone who is not a party (or support/admin)."""
        async with self._uow() as uow:
            payment = await uow.payments.get(payment_id)
        if payment is None or not (privileged or payment.is_party(viewer)):
            raise PaymentNotFound("no such payment")
        return payment.view()

    async def list_payments(
        self, user_id: uuid.UUID, *, limit: int, cursor: uuid.UUID | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        async with self._uow() as uow:
            payments = await uow.payments.list_for_user(user_id, limit=limit + 1, before_id=cursor)
        page = payments[:limit]
        next_cursor = str(page[-1].id) if len(payments) > limit else None
        return [p.view() for p in page], next_cursor

    async def wallet(self, user_id: uuid.UUID) -> dict[str, Any]:
        async with self._uow() as uow:
            wallet_id = await self._wallet_id(uow, user_id)
            balance = await uow.ledger.balance(wallet_id)
            await uow.commit()
        return {
            "wallet_id": str(wallet_id),
            "currency": balance.currency,
            "balance": balance.posted,
            "available_balance": balance.available,
        }

    async def wallet_entries(
        self, user_id: uuid.UUID, *, limit: int, cursor: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        async with self._uow() as uow:
            wallet_id = await self._wallet_id(uow, user_id)
            entries = await uow.ledger.history(wallet_id, limit=limit + 1, before_sequence=cursor)
            await uow.commit()
        page = entries[:limit]
        next_cursor = str(page[-1].sequence) if len(entries) > limit else None
        return [
            {
                "id": str(e.id),
                "sequence": e.sequence,
                "direction": e.direction.value,
                "amount": e.amount if e.direction is Direction.CREDIT else -e.amount,
                "currency": e.currency,
                "balance_after": e.balance_after,
                "payment_id": str(e.payment_id) if e.payment_id else None,
                "transaction_id": str(e.transaction_id),
                "created_at": e.created_at.isoformat(),
            }
            for e in page
        ], next_cursor


def _business_error(exc: Exception) -> PaymentError:
    """Ledger refusals are reported in the payment's words. A refusal by the database itself
    (a guard tripped: a bug or corruption, never the customer's doing) is not a business
    outcome: it propagates, nothing is stored against the key, and the caller gets a 500."""
    if isinstance(exc, LedgerStorageRefused):
        raise exc
    if isinstance(exc, PaymentError):
        return exc
    if isinstance(exc, InsufficientFunds):
        return FundsUnavailable("the wallet's available balance does not cover this payment")
    if isinstance(exc, LedgerError):
        error = PaymentError(str(exc) or "the ledger refused the posting")
        error.code = "ledger_refused"
        return error
    raise exc


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


def _settled_event(job: _TransferJob, payment: Payment) -> AuditEvent:
    return AuditEvent(
        actor=job.actor,
        action="payment.p2p.settled",
        subject=f"payment:{payment.id}",
        correlation_id=job.cmd.correlation_id,
        details={"amount": payment.money.amount, "currency": payment.money.currency},
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


def _contradicts(recorded: PaymentStatus, outcome: ProviderOutcome) -> bool:
    if outcome is ProviderOutcome.SUCCEEDED:
        return recorded is PaymentStatus.FAILED
    if outcome is ProviderOutcome.FAILED:
        return recorded in (PaymentStatus.CAPTURED, PaymentStatus.SETTLED)
    return False
