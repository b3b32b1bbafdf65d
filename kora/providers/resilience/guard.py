"""One provider's composed protection: bulkhead → retry (only if safe, within a deadline) →
per attempt: circuit breaker → timeout → the call.

Why retries sit *outside* the breaker and the timeout: every attempt is then counted by the
breaker (a provider failing under retries opens it sooner, and an open breaker stops the
retries), and every attempt gets its own time budget, capped by what is left of the retry
deadline. The bulkhead is outermost: a call holds one slot for its whole retry sequence,
so retries cannot multiply the load on a struggling provider.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import httpx

from kora.providers.resilience.breaker import ProviderBreaker
from kora.providers.resilience.bulkhead import Bulkhead
from kora.providers.resilience.errors import (
    ProviderDeclined,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    classify_httpx_error,
)
from kora.providers.resilience.metrics import NoopProviderMetrics, ProviderMetrics
from kora.providers.resilience.policies import ProviderPolicy
from kora.providers.resilience.retry import Sleep, retry_call
from kora.providers.resilience.timeouts import call_with_timeout

T = TypeVar("T")


def outcome_word(exc: BaseException | None) -> str:
    """The ``outcome`` label of a finished attempt (``cancelled`` is recorded separately)."""
    match exc:
        case None:
            return "succeeded"
        case ProviderDeclined():
            return "declined"
        case ProviderUnavailable():
            return "unavailable"
        case ProviderTimeout():
            return "timeout"
        case _:
            return "error"


class ProviderGuard:
    """Bulkhead, circuit breaker, timeouts and safe retries for one provider.

    Build one per provider at the composition root and share it between every call to that
    provider (the breaker and bulkhead are only meaningful when shared). ``clock``, ``sleep``
    and ``rng`` are injectable so tests never wait and jitter is reproducible.
    """

    def __init__(
        self,
        provider: str,
        policy: ProviderPolicy | None = None,
        *,
        metrics: ProviderMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.policy = policy or ProviderPolicy()
        self._metrics = metrics or NoopProviderMetrics()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not security)
        self.breaker = ProviderBreaker(provider, self.policy.breaker, metrics=self._metrics, clock=clock)
        self.bulkhead = Bulkhead(provider, self.policy.bulkhead, metrics=self._metrics)

    async def call(self, operation: str, fn: Callable[[], Awaitable[T]], *, idempotent_safe: bool = False) -> T:
        """Run ``fn()`` (one request to this provider) under the provider's protections.

        ``fn`` should raise :class:`ProviderDeclined` for a definitive refusal and may let
        ``httpx.HTTPError`` escape (classified here by :func:`classify_httpx_error`).
        ``idempotent_safe`` promises that repeating ``fn`` cannot execute the operation twice
        (the provider deduplicates on our reference); without it nothing is retried.

        Returns ``fn``'s result. Raises :class:`ProviderUnavailable` (certainly not accepted:
        bulkhead full, breaker open, connection refused...), :class:`ProviderTimeout`
        (ambiguous: resolve by status query), :class:`ProviderDeclined` (definitive).
        Exceptions ``fn`` raises that are neither classified nor httpx's propagate unchanged,
        are not retried and not counted by the breaker; callers must treat them as
        ambiguous. Cancellation propagates and frees the bulkhead slot.
        """
        timeout = self.policy.timeout_for(operation)

        async def classified() -> T:
            try:
                return await fn()
            except httpx.HTTPError as exc:
                raise classify_httpx_error(exc, provider=self.provider) from exc

        async def attempt(remaining: float) -> T:
            started = self._clock()

            def record(outcome: str) -> None:
                self._metrics.provider_request(self.provider, operation, outcome, self._clock() - started)

            try:
                result = await self.breaker.call(
                    lambda: call_with_timeout(classified, min(timeout.total, remaining), provider=self.provider)
                )
            except asyncio.CancelledError:
                record("cancelled")
                raise
            except Exception as exc:
                record(outcome_word(exc))
                raise
            record(outcome_word(None))
            return result

        def on_retry(exc: ProviderError) -> None:
            self._metrics.provider_retry(self.provider, operation, exc.reason)

        async with self.bulkhead.slot():
            return await retry_call(
                attempt,
                self.policy.retry,
                idempotent_safe=idempotent_safe,
                rng=self._rng,
                sleep=self._sleep,
                clock=self._clock,
                on_retry=on_retry,
            )


class ProviderGuards:
    """One guard per provider name, built on first use from ``policies`` (or ``default``)."""

    def __init__(
        self,
        policies: Mapping[str, ProviderPolicy] | None = None,
        *,
        default: ProviderPolicy | None = None,
        metrics: ProviderMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._policies = dict(policies or {})
        self._default = default or ProviderPolicy()
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._guards: dict[str, ProviderGuard] = {}

    def get(self, provider: str) -> ProviderGuard:
        guard = self._guards.get(provider)
        if guard is None:
            guard = ProviderGuard(
                provider,
                self._policies.get(provider, self._default),
                metrics=self._metrics,
                clock=self._clock,
                sleep=self._sleep,
                rng=self._rng,
            )
            self._guards[provider] = guard
        return guard
