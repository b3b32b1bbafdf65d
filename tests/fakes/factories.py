"""Typed, keyword-only factories that wire the use cases to the in-memory fakes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from kora.audit import InMemoryAuditTrail
from kora.kernel import FixedClock, Money
from kora.ledger import (
    Account,
    AccountKind,
    Balance,
    Direction,
    Entry,
    InvariantReport,
    Ledger,
    Leg,
    verify_entries,
)
from kora.payments import Payment, PaymentsConfig, PaymentsService
from kora.providers import ProviderGateway, StaticProviderRegistry
from kora.providers.adapters.sandbox import SandboxGateway
from kora.providers.routing import RoutingTable
from tests.fakes.collaborators import FakeDirectory, RecordingPaymentMetrics
from tests.fakes.ledger import HoldRow, InMemoryLedgerStore
from tests.fakes.payments import IdempotencyRow
from tests.fakes.uow import InMemoryDatabase, InMemoryUnitOfWork, InMemoryUnitOfWorkFactory

FUNDING_OWNER = "test-funding"


def make_ledger(*, clock: FixedClock | None = None) -> tuple[Ledger, InMemoryLedgerStore]:
    store = InMemoryLedgerStore()
    return Ledger(store, clock or FixedClock()), store


@dataclass(frozen=True)
class Contents:
    """Everything the in-memory database holds, comparable with ==."""

    accounts: dict[uuid.UUID, Account]
    entries: list[Entry]
    holds: dict[uuid.UUID, HoldRow]
    payments: dict[uuid.UUID, Payment]
    idempotency: dict[tuple[str, str], IdempotencyRow]
    audit_records: int


@dataclass
class Harness:
    """What a payments test needs around the service: the database, the fakes, and helpers
    that read committed state without changing it."""

    db: InMemoryDatabase
    clock: FixedClock
    uow_factory: InMemoryUnitOfWorkFactory
    directory: FakeDirectory
    providers: StaticProviderRegistry
    metrics: RecordingPaymentMetrics
    config: PaymentsConfig

    @property
    def audit(self) -> InMemoryAuditTrail:
        return self.db.audit

    def new_user(self, *, phone: str | None = None) -> uuid.UUID:
        user_id = uuid.uuid4()
        if phone is not None:
            self.directory.add(phone, user_id)
        return user_id

    def contents(self) -> Contents:
        return Contents(
            accounts=dict(self.db.ledger.accounts),
            entries=self.db.ledger.all_entries(),
            holds=dict(self.db.ledger.holds),
            payments=dict(self.db.payments.payments),
            idempotency=dict(self.db.idempotency.rows),
            audit_records=len(self.db.audit.records),
        )

    async def fund(self, user_id: uuid.UUID, amount: int) -> None:
        """Credit the user's wallet from a suspense account (committed)."""
        currency = self.config.wallet_currency
        async with InMemoryUnitOfWork(self.db) as uow:
            wallet = await uow.ledger.open_wallet(user_id, currency)
            source = await uow.ledger.system_account(AccountKind.SUSPENSE, currency, FUNDING_OWNER)
            money = Money(amount, currency)
            await uow.ledger.post(
                kind="test.funding",
                legs=[Leg(source.id, Direction.DEBIT, money), Leg(wallet.id, Direction.CREDIT, money)],
                payment_id=None,
                correlation_id=None,
            )
            await uow.commit()

    def wallet_id(self, user_id: uuid.UUID) -> uuid.UUID | None:
        key = (AccountKind.WALLET, str(user_id), self.config.wallet_currency)
        return self.db.ledger.account_keys.get(key)

    def account_id(self, kind: AccountKind, owner_ref: str) -> uuid.UUID | None:
        return self.db.ledger.account_keys.get((kind, owner_ref, self.config.wallet_currency))

    async def balance_of(self, account_id: uuid.UUID | None) -> Balance | None:
        if account_id is None:
            return None
        return await InMemoryLedgerStore(self.db.ledger.copy()).balance(account_id)

    async def wallet_balance(self, user_id: uuid.UUID) -> Balance | None:
        """The committed balance of the user's wallet; None when it was never opened."""
        return await self.balance_of(self.wallet_id(user_id))

    def verify(self) -> InvariantReport:
        return verify_entries(self.db.ledger.accounts.values(), self.db.ledger.all_entries())

    def stored_payments(self) -> list[Payment]:
        return sorted(self.db.payments.payments.values(), key=lambda p: p.id)

    def transaction_kinds(self, payment_id: uuid.UUID) -> list[str]:
        return [t.kind for t in self.db.ledger.transactions.values() if t.payment_id == payment_id]

    def idempotency_row(self, user_id: uuid.UUID, key: str) -> IdempotencyRow | None:
        return self.db.idempotency.rows.get((f"user:{user_id}", key))

    def audit_actions(self) -> list[str]:
        return self.db.audit.actions()


def make_service(
    *,
    clock: FixedClock | None = None,
    gateways: Sequence[ProviderGateway] | None = None,
    default_provider: str | None = None,
    config: PaymentsConfig | None = None,
    routing: RoutingTable | None = None,
) -> tuple[PaymentsService, Harness]:
    """A PaymentsService on the in-memory fakes (sandbox provider by default) and its harness."""
    clock = clock or FixedClock()
    config = config or PaymentsConfig()
    chosen = list(gateways) if gateways is not None else [SandboxGateway()]
    db = InMemoryDatabase(clock=clock, audit=InMemoryAuditTrail(clock=clock))
    harness = Harness(
        db=db,
        clock=clock,
        uow_factory=InMemoryUnitOfWorkFactory(db),
        directory=FakeDirectory(),
        providers=StaticProviderRegistry(chosen, default=default_provider or chosen[0].name, routing=routing),
        metrics=RecordingPaymentMetrics(),
        config=config,
    )
    service = PaymentsService(
        uow_factory=harness.uow_factory,
        directory=harness.directory,
        providers=harness.providers,
        clock=clock,
        config=config,
        metrics=harness.metrics,
    )
    return service, harness
