"""The events of one unit of work, collected while it runs and written to the outbox in its
transaction just before it commits (the transactional outbox, ADR 0018)."""

from __future__ import annotations

from kora.events.domain import DomainEvent, Origin
from kora.observability import get_correlation_id, inject_trace_context


def current_origin() -> Origin:
    """The running request's correlation id and W3C trace context (empty outside a request);
    never baggage, which a client fills as it likes."""
    carrier: dict[str, str] = {}
    inject_trace_context(carrier)
    return Origin(get_correlation_id(), carrier)


class EventRecorder:
    """Modules record facts here (their repositories do, as they write the state change); the
    unit of work drains them into the outbox before committing, or drops them on rollback."""

    def __init__(self) -> None:
        self._pending: list[tuple[DomainEvent, Origin]] = []
        self._origins: dict[str, Origin] = {}

    def bind_origin(self, aggregate_id: str, origin: Origin) -> None:
        """Events of `aggregate_id` come from `origin`: for batched work (group commit) run
        outside the context of the requests it serves."""
        self._origins[aggregate_id] = origin

    def record(self, *events: DomainEvent) -> None:
        default: Origin | None = None
        for event in events:
            origin = self._origins.get(event.aggregate_id)
            if origin is None:
                default = default or current_origin()
                origin = default
            self._pending.append((event, origin))

    def drain(self) -> list[tuple[DomainEvent, Origin]]:
        pending, self._pending = self._pending, []
        return pending

    def __len__(self) -> int:
        return len(self._pending)
