"""The operations module's ports: where controls are stored, how a change is made durable
with its audit record, and where the switches are exported as metrics."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, Self

from kora.audit import AuditRecorder
from kora.operations.domain import Control, ControlKind, ControlSnapshot


class ControlStore(Protocol):
    """The switches that are on, one row each. Adds and deletes inside the caller's
    transaction, never commits."""

    async def all(self) -> list[Control]:
        """Every control that is on."""
        ...

    async def get(self, kind: ControlKind, target: str, *, for_update: bool = False) -> Control | None: ...

    async def put(self, control: Control) -> None:
        """Set the control (insert, or replace the one of the same kind and target)."""
        ...

    async def remove(self, kind: ControlKind, target: str) -> bool:
        """Clear the control; False when it was not on."""
        ...


class ControlsUnitOfWork(Protocol):
    """One transaction: the control change and its audit record commit together or not at all."""

    @property
    def controls(self) -> ControlStore: ...

    @property
    def audit(self) -> AuditRecorder: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...


class ControlMetrics(Protocol):
    def publish(self, snapshot: ControlSnapshot, providers: Iterable[str]) -> None:
        """Export every operation's and provider's switch (0 or 1) as the snapshot says."""
        ...

    def refused(self, operation: str, reason: str) -> None:
        """A request of `operation` was refused by a control (`operation_paused`,
        `provider_disabled`, `no_provider`)."""
        ...

    def refresh_failed(self) -> None:
        """The controls could not be read: the process goes on with the last ones it read."""
        ...
