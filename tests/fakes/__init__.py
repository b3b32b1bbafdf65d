"""In-memory fakes shared by the unit tests (no I/O): the ledger store, payment repository,
idempotency store and unit of work with commit/rollback semantics, the recipient directory,
scripted provider gateways, recording metrics, and factories wiring them together.

Import as `tests.fakes`.
"""

from tests.fakes.collaborators import (
    FakeDirectory,
    RecordingPaymentMetrics,
    ScriptedAnswer,
    ScriptedGateway,
    failed,
    pending,
    succeeded,
)
from tests.fakes.factories import FUNDING_OWNER, Contents, Harness, make_ledger, make_service
from tests.fakes.ledger import HoldRow, InMemoryLedgerStore, LedgerState, StorageRefusedError
from tests.fakes.payments import (
    IdempotencyRow,
    IdempotencyState,
    InMemoryIdempotencyStore,
    InMemoryPaymentRepository,
    PaymentState,
)
from tests.fakes.uow import InMemoryDatabase, InMemoryUnitOfWork, InMemoryUnitOfWorkFactory, StagedAudit

__all__ = [
    "FUNDING_OWNER",
    "Contents",
    "FakeDirectory",
    "Harness",
    "HoldRow",
    "IdempotencyRow",
    "IdempotencyState",
    "InMemoryDatabase",
    "InMemoryIdempotencyStore",
    "InMemoryLedgerStore",
    "InMemoryPaymentRepository",
    "InMemoryUnitOfWork",
    "InMemoryUnitOfWorkFactory",
    "LedgerState",
    "PaymentState",
    "RecordingPaymentMetrics",
    "ScriptedAnswer",
    "ScriptedGateway",
    "StagedAudit",
    "StorageRefusedError",
    "failed",
    "make_ledger",
    "make_service",
    "pending",
    "succeeded",
]
