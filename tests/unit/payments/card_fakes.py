"""A scripted card acquirer and a PaymentsService wired to it on the in-memory fakes."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta

from kora.audit import InMemoryAuditTrail
from kora.kernel import FixedClock, Money
from kora.ledger import AccountKind
from kora.payments import FeeSchedule, Payment, PaymentsConfig, PaymentsService
from kora.providers import (
    AuthorizationState,
    AuthorizationStatus,
    CardAuthorizationRequest,
    CardOutcome,
    CardResult,
    StaticCardAcquirers,
    StaticProviderRegistry,
)
from kora.providers.adapters.sandbox import SandboxGateway
from tests.fakes import FakeDirectory, Harness, InMemoryDatabase, InMemoryUnitOfWorkFactory, RecordingPaymentMetrics

TOKEN = "tok_4111111111111111"
Answer = CardResult | Callable[[], CardResult]


@dataclasses.dataclass
class CardRecordingMetrics(RecordingPaymentMetrics):
    def card_operation(self, operation: str, outcome: str) -> None:
        self.calls.append(("card_operation", (operation, outcome)))

    def chargeback_shortfall(self, currency: str, amount: int) -> None:
        self.calls.append(("chargeback_shortfall", (currency, amount)))

    def fee_collected(self, currency: str, amount: int) -> None:
        self.calls.append(("fee_collected", (currency, amount)))


class ScriptedAcquirer:
    """Answers each operation from its script (the last answer repeats); records every call and
    the number of units of work open at that moment (a provider call must see none)."""

    name = "card"

    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db
        self.answers: dict[str, list[Answer]] = {
            "authorize": [authorized()],
            "capture": [CardResult(CardOutcome.SUCCEEDED)],
            "void": [CardResult(CardOutcome.SUCCEEDED)],
            "refund": [CardResult(CardOutcome.SUCCEEDED, reference="ref_1")],
        }
        self.state = AuthorizationStatus(AuthorizationState.AUTHORIZED, "auth_1", amount=10_000)
        self.calls: list[tuple[str, object]] = []
        self.open_units_at_call: list[int] = []

    def script(self, operation: str, *answers: Answer) -> None:
        self.answers[operation] = list(answers)

    def _answer(self, operation: str, detail: object) -> CardResult:
        self.calls.append((operation, detail))
        self.open_units_at_call.append(self._db.open_units)
        queue = self.answers[operation]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer() if callable(answer) else answer

    async def authorize(self, request: CardAuthorizationRequest) -> CardResult:
        return self._answer("authorize", request)

    async def capture(
        self, authorization_id: str, money: Money, *, reference: uuid.UUID, correlation_id: str | None
    ) -> CardResult:
        return self._answer("capture", (authorization_id, money.amount))

    async def void(self, authorization_id: str, *, reference: uuid.UUID, correlation_id: str | None) -> CardResult:
        return self._answer("void", authorization_id)

    async def refund(
        self, authorization_id: str, money: Money, *, reference: uuid.UUID, correlation_id: str | None
    ) -> CardResult:
        return self._answer("refund", (authorization_id, money.amount))

    async def status(self, authorization_id: str, *, correlation_id: str | None) -> AuthorizationStatus:
        self.calls.append(("status", authorization_id))
        return self.state

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]


def authorized(authorization_id: str = "auth_1") -> CardResult:
    return CardResult(CardOutcome.SUCCEEDED, authorization_id=authorization_id)


@dataclasses.dataclass
class CardWorld:
    service: PaymentsService
    h: Harness
    acquirer: ScriptedAcquirer
    metrics: CardRecordingMetrics
    merchant: uuid.UUID

    async def balance(self, kind: AccountKind, owner: str = "kora") -> int:
        balance = await self.h.balance_of(self.h.account_id(kind, owner))
        return balance.posted if balance else 0

    async def merchant_balance(self) -> tuple[int, int]:
        balance = await self.h.balance_of(self.h.account_id(AccountKind.MERCHANT, str(self.merchant)))
        return (balance.posted, balance.available) if balance else (0, 0)

    def payment(self, payment_id: str | uuid.UUID) -> Payment:
        return self.h.db.payments.payments[uuid.UUID(str(payment_id))]

    def card_operations(self) -> list[tuple[object, ...]]:
        return self.metrics.named("card_operation")

    def later(self, seconds: int = 120) -> None:
        self.h.clock.advance(timedelta(seconds=seconds))


def card_world(*, fee_bps: int = 250, fee_min: int = 0) -> CardWorld:
    clock = FixedClock()
    db = InMemoryDatabase(clock=clock, audit=InMemoryAuditTrail(clock=clock))
    metrics = CardRecordingMetrics()
    config = PaymentsConfig()
    h = Harness(
        db=db,
        clock=clock,
        uow_factory=InMemoryUnitOfWorkFactory(db),
        directory=FakeDirectory(),
        providers=StaticProviderRegistry([SandboxGateway()], default="sandbox"),
        metrics=metrics,
        config=config,
    )
    acquirer = ScriptedAcquirer(db)
    service = PaymentsService(
        uow_factory=h.uow_factory,
        directory=h.directory,
        providers=h.providers,
        clock=clock,
        config=config,
        metrics=metrics,
        acquirers=StaticCardAcquirers([acquirer]),
        card_fees=FeeSchedule(bps=fee_bps, minimum=fee_min),
    )
    return CardWorld(service, h, acquirer, metrics, uuid.uuid4())
