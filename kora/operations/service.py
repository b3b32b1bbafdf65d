"""Operational controls: set and clear them (audited), and answer the payment path's question
"may this go ahead?" from an in-process snapshot.

The payment path must not pay a database query per request for a switch that changes a few
times a year, so the snapshot is cached for `ttl_seconds` (2 s by default) and refreshed in the
background every `ttl_seconds / 2` by `run_refresher` (the API process runs it): a request
reads a dictionary. A change made through this process is visible in it at once; through
another process (the CLI, another API replica), within `ttl_seconds`.

If the controls cannot be read (database down), the last snapshot read stays in force
(fail-static: a pause stays a pause) and the failure is counted; the next attempt is one TTL
later, so a database outage does not turn into a query storm from this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from loguru import logger

from kora.kernel import Clock
from kora.operations.domain import (
    DEFAULT_RETRY_AFTER_SECONDS,
    EMPTY_SNAPSHOT,
    REFUSED_PAUSED,
    REFUSED_PROVIDER_DISABLED,
    Control,
    ControlChange,
    ControlKind,
    ControlSnapshot,
    Operation,
    OperationPaused,
    ProviderDisabled,
    validate_incident,
    validate_provider_name,
    validate_reason,
    validate_retry_after,
)
from kora.operations.ports import ControlMetrics, ControlsUnitOfWork

DEFAULT_TTL_SECONDS = 2.0

_ACTIONS = {
    (ControlKind.OPERATION, True): "ops.operation.paused",
    (ControlKind.OPERATION, False): "ops.operation.resumed",
    (ControlKind.PROVIDER, True): "ops.provider.disabled",
    (ControlKind.PROVIDER, False): "ops.provider.enabled",
}


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """What an operator asks for when switching something off."""

    reason: str
    actor: str
    incident: str | None = None
    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS
    correlation_id: str | None = None


class OperationalControls:
    """Pause/resume operations and disable/enable providers, each change audited in its own
    transaction; the current switches for the payment path, cached."""

    def __init__(
        self,
        uow_factory: Callable[[], ControlsUnitOfWork],
        *,
        clock: Clock,
        metrics: ControlMetrics,
        providers: Iterable[str],
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._uow = uow_factory
        self._clock = clock
        self._metrics = metrics
        self._providers = tuple(providers)
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._snapshot = EMPTY_SNAPSHOT
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers configured in this deployment (the only ones that may be disabled)."""
        return self._providers

    @property
    def ttl_seconds(self) -> float:
        return self._ttl

    # ------------------------------------------------------------------ the payment path
    def cached(self) -> ControlSnapshot:
        """The last snapshot read, however old (no I/O)."""
        return self._snapshot

    def disabled_providers(self) -> dict[str, int]:
        """The provider registry's `ProviderAvailability`: disabled provider → retry-after,
        from the cached snapshot (the HTTP guard refreshed it just before, when stale)."""
        return self._snapshot.disabled_providers()

    async def snapshot(self) -> ControlSnapshot:
        """The switches, from the cache while it is younger than the TTL, else read again
        (one reader at a time; the others wait for its result)."""
        if self._fresh():
            return self._snapshot
        async with self._lock:
            if not self._fresh():
                await self._reload()
        return self._snapshot

    async def ensure_open(self, operation: Operation, *, provider: str | None = None) -> None:
        """Raises `OperationPaused` when `operation` is paused, `ProviderDisabled` when the
        client named a provider that is disabled. Costs no I/O while the cache is fresh."""
        snapshot = await self.snapshot()
        pause = snapshot.pause_of(operation)
        if pause is not None:
            self._metrics.refused(operation.value, REFUSED_PAUSED)
            raise OperationPaused(operation, pause.retry_after_seconds)
        if provider is not None:
            disabled = snapshot.disabled.get(provider)
            if disabled is not None:
                self._metrics.refused(operation.value, REFUSED_PROVIDER_DISABLED)
                raise ProviderDisabled(provider, disabled.retry_after_seconds)

    def count_refusal(self, operation: Operation, reason: str) -> None:
        """A request of `operation` was refused by the controls elsewhere (no provider left in
        its route: the provider registry's `NoProviderAvailable`)."""
        self._metrics.refused(operation.value, reason)

    async def refresh(self) -> ControlSnapshot:
        """Read the switches now (the operator's view: never the cache)."""
        async with self._lock:
            await self._reload()
        return self._snapshot

    async def run_refresher(self, stop: asyncio.Event) -> None:
        """Keep the cache warm (and the metrics current) until `stop` is set, so requests
        never wait on a read."""
        interval = self._ttl / 2
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # _reload already logs and counts; never let the loop die
                logger.opt(exception=exc).error("operational controls refresher failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    def _fresh(self) -> bool:
        return self._loaded_at is not None and self._monotonic() - self._loaded_at < self._ttl

    async def _reload(self) -> None:
        try:
            async with self._uow() as uow:
                controls = await uow.controls.all()
        except Exception as exc:
            # Fail static: keep the last switches read, try again in one TTL.
            self._loaded_at = self._monotonic()
            self._metrics.refresh_failed()
            logger.opt(exception=exc).warning("operational controls could not be read; keeping the last ones")
            return
        self._install(ControlSnapshot.of(controls))

    def _install(self, snapshot: ControlSnapshot) -> None:
        self._snapshot = snapshot
        self._loaded_at = self._monotonic()
        self._metrics.publish(snapshot, self._providers)

    # ------------------------------------------------------------------ operator commands
    async def pause(self, operation: Operation | str, request: ControlRequest) -> ControlChange:
        """Pause new requests of `operation`. Setting it again replaces the reason."""
        return await self._set(ControlKind.OPERATION, Operation(operation).value, request)

    async def resume(
        self, operation: Operation | str, *, actor: str, correlation_id: str | None = None
    ) -> ControlChange:
        """Let `operation` go ahead again (a no-op, still audited, when it was not paused)."""
        return await self._clear(ControlKind.OPERATION, Operation(operation).value, actor, correlation_id)

    async def disable_provider(self, provider: str, request: ControlRequest) -> ControlChange:
        """Take `provider` out of routing. Raises `UnknownProviderControl` for a provider
        this deployment does not configure."""
        name = validate_provider_name(provider, self._providers)
        return await self._set(ControlKind.PROVIDER, name, request)

    async def enable_provider(self, provider: str, *, actor: str, correlation_id: str | None = None) -> ControlChange:
        name = validate_provider_name(provider, self._providers)
        return await self._clear(ControlKind.PROVIDER, name, actor, correlation_id)

    async def _set(self, kind: ControlKind, target: str, request: ControlRequest) -> ControlChange:
        control = Control(
            kind=kind,
            target=target,
            reason=validate_reason(request.reason),
            incident=validate_incident(request.incident),
            retry_after_seconds=validate_retry_after(request.retry_after_seconds),
            set_by=request.actor,
            set_at=self._clock.now(),
        )
        async with self._uow() as uow:
            previous = await uow.controls.get(kind, target, for_update=True)
            await uow.controls.put(control)
            await uow.audit.record(
                actor=request.actor,
                action=_ACTIONS[(kind, True)],
                subject=control.subject,
                correlation_id=request.correlation_id,
                details={
                    "reason": control.reason,
                    "incident": control.incident,
                    "retry_after_seconds": control.retry_after_seconds,
                    "replaced": previous is not None,
                },
            )
            await uow.commit()
        logger.warning(
            "operational control set", kind=kind.value, target=target, actor=request.actor, incident=control.incident
        )
        await self.refresh()
        return ControlChange(kind, target, control, previous)

    async def _clear(self, kind: ControlKind, target: str, actor: str, correlation_id: str | None) -> ControlChange:
        async with self._uow() as uow:
            previous = await uow.controls.get(kind, target, for_update=True)
            removed = await uow.controls.remove(kind, target)
            await uow.audit.record(
                actor=actor,
                action=_ACTIONS[(kind, False)],
                subject=f"{kind.value}:{target}",
                correlation_id=correlation_id,
                outcome="success" if removed else "noop",
                details={
                    "previous_reason": previous.reason if previous else None,
                    "previous_incident": previous.incident if previous else None,
                    "was_set_at": previous.set_at.isoformat() if previous else None,
                },
            )
            await uow.commit()
        logger.warning("operational control cleared", kind=kind.value, target=target, actor=actor, changed=removed)
        await self.refresh()
        return ControlChange(kind, target, None, previous)
