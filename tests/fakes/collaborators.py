"""Fakes of the payments module's other collaborators: the recipient directory, provider
gateways and metrics."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from kora.providers import ProviderOperation, ProviderOutcome, ProviderRequest, ProviderResult


class FakeDirectory:
    """`RecipientDirectory`: phone number → user id."""

    def __init__(self, users: Mapping[str, uuid.UUID] | None = None) -> None:
        self._users = dict(users or {})
        self.lookups = 0

    def add(self, phone_number: str, user_id: uuid.UUID) -> None:
        self._users[phone_number] = user_id

    async def user_for_phone(self, phone_number: str) -> uuid.UUID | None:
        self.lookups += 1
        return self._users.get(phone_number)

    async def mobile_money_number(self, user_id: uuid.UUID) -> str:
        for phone, known in self._users.items():
            if known == user_id:
                return phone
        return "+2250700" + f"{user_id.int % 10**6:06d}"


def succeeded(*, provider_ref: str = "scripted-ref") -> ProviderResult:
    return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=provider_ref)


def failed(code: str, *, provider_ref: str | None = "scripted-ref") -> ProviderResult:
    return ProviderResult(ProviderOutcome.FAILED, provider_ref=provider_ref, failure_code=code)


def pending(*, provider_ref: str | None = None) -> ProviderResult:
    return ProviderResult(ProviderOutcome.PENDING, provider_ref=provider_ref)


ScriptedAnswer: TypeAlias = ProviderResult | BaseException


class ScriptedGateway:
    """A `ProviderGateway` that answers from a script, in order, then keeps giving the last
    answer. An answer that is an exception is raised (e.g. `TimeoutError()`). Every call is
    kept in `calls` as (operation, request)."""

    def __init__(self, *, answers: Sequence[ScriptedAnswer], name: str = "scripted") -> None:
        if not answers:
            raise ValueError("a scripted gateway needs at least one answer")
        self.name = name
        self._answers = list(answers)
        self.calls: list[tuple[str, ProviderRequest]] = []
        # What status queries answer (the sweeper's late confirmations); PENDING unless set.
        self.status_answers: list[ScriptedAnswer] = [ProviderResult(ProviderOutcome.PENDING)]
        self.status_calls: list[tuple[str, ProviderRequest]] = []

    def _answer(self, operation: str, request: ProviderRequest) -> ProviderResult:
        self.calls.append((operation, request))
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        return self._answer("collect", request)

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        return self._answer("disburse", request)

    async def status(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        self.status_calls.append((operation.value, request))
        answer = self.status_answers.pop(0) if len(self.status_answers) > 1 else self.status_answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


@dataclass
class RecordingPaymentMetrics:
    """`PaymentMetrics` that keeps every call as (method, args)."""

    calls: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)

    def named(self, method: str) -> list[tuple[object, ...]]:
        return [args for name, args in self.calls if name == method]

    def payment_finished(self, payment_type: str, status: str) -> None:
        self.calls.append(("payment_finished", (payment_type, status)))

    def payment_failed(self, payment_type: str, cause: str) -> None:
        self.calls.append(("payment_failed", (payment_type, cause)))

    def amount_moved(self, payment_type: str, currency: str, amount: int) -> None:
        self.calls.append(("amount_moved", (payment_type, currency, amount)))

    def idempotent_replay(self, route: str) -> None:
        self.calls.append(("idempotent_replay", (route,)))

    def idempotency_conflict(self, reason: str) -> None:
        self.calls.append(("idempotency_conflict", (reason,)))

    def ledger_posted(self, kind: str, seconds: float) -> None:
        self.calls.append(("ledger_posted", (kind, seconds)))

    def group_commit(self, size: int) -> None:
        self.calls.append(("group_commit", (size,)))

    def group_commit_fallback(self) -> None:
        self.calls.append(("group_commit_fallback", ()))

    def late_confirmation(self, payment_type: str) -> None:
        self.calls.append(("late_confirmation", (payment_type,)))

    def provider_fallback(self, operation: str, from_provider: str, reason: str) -> None:
        self.calls.append(("provider_fallback", (operation, from_provider, reason)))

    def payment_settled(self, provider: str, payment_type: str, delay_seconds: float) -> None:
        self.calls.append(("payment_settled", (provider, payment_type, delay_seconds)))

    def settlement_rejected(self, provider: str, reason: str) -> None:
        self.calls.append(("settlement_rejected", (provider, reason)))

    def settlement_overdue(self, provider: str, currency: str, payments: int, amount: int) -> None:
        self.calls.append(("settlement_overdue", (provider, currency, payments, amount)))
