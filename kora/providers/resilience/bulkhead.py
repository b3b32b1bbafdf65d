"""A bulkhead per provider: bounded concurrency with fast rejection, so one slow provider
holds at most its own slots and cannot exhaust the service's connections, tasks or memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

from kora.providers.resilience.errors import BULKHEAD_FULL, ProviderUnavailable
from kora.providers.resilience.metrics import NoopProviderMetrics, ProviderMetrics
from kora.providers.resilience.policies import BulkheadPolicy


class Bulkhead:
    """Concurrency limit of one provider. Use from one event loop."""

    def __init__(
        self, provider: str, policy: BulkheadPolicy | None = None, *, metrics: ProviderMetrics | None = None
    ) -> None:
        self.provider = provider
        self.policy = policy or BulkheadPolicy()
        self._metrics = metrics or NoopProviderMetrics()
        self._semaphore = asyncio.Semaphore(self.policy.max_concurrent)
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block; released on exit, error or
        cancellation.

        Raises :class:`ProviderUnavailable` ``("bulkhead_full")`` when no slot frees up within
        ``max_wait`` (at once when it is 0): nothing was sent to the provider.
        """
        if self._semaphore.locked() and self.policy.max_wait == 0:
            self._reject()
        try:
            async with asyncio.timeout(self.policy.max_wait or None):
                await self._semaphore.acquire()
        except TimeoutError:
            self._reject()
        self._in_flight += 1
        self._metrics.provider_in_flight(self.provider, self._in_flight)
        try:
            yield
        finally:
            self._in_flight -= 1
            self._semaphore.release()
            self._metrics.provider_in_flight(self.provider, self._in_flight)

    def _reject(self) -> NoReturn:
        self._metrics.provider_bulkhead_rejected(self.provider)
        raise ProviderUnavailable(BULKHEAD_FULL, provider=self.provider)
