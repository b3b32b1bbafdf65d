"""A circuit breaker per provider: pybreaker's state machine, driven from asyncio.

Why not ``CircuitBreaker.call_async``: it needs tornado. Why not ``calling()`` around an
``await``: the context manager binds the outcome to the state object current when the call
*started*, so a call that began while closed and ends after the breaker opened would reopen
it (and reset its timer); its half-open state lets every concurrent call through as a trial;
and its reset timer reads the wall clock. So this class keeps the decisions that depend on
time and concurrency, and lets pybreaker own what it does well — counters, transitions,
listeners — by recording each finished outcome through ``CircuitBreaker.call`` with a
synchronous function (no ``await`` ever runs under pybreaker's lock):

- admission: open and the reset timeout (on an injectable monotonic clock) not elapsed →
  :class:`ProviderUnavailable` ``("breaker_open")`` at once; elapsed → half-open; half-open
  admits ``half_open_max_calls`` trials at a time, rejects the rest as breaker open;
- outcome: a provider fault (unavailable, ambiguous) counts as a failure; a success *or a
  decline* (the provider answered, so it is up) as a success; cancellation and unknown
  exceptions are not counted;
- an outcome is recorded only if the breaker has not changed state since the call was
  admitted (a stale result says nothing about the current state).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import pybreaker
from loguru import logger

from kora.providers.resilience.errors import BREAKER_OPEN, ProviderDeclined, ProviderUnavailable, is_provider_fault
from kora.providers.resilience.metrics import NoopProviderMetrics, ProviderMetrics
from kora.providers.resilience.policies import BreakerPolicy

T = TypeVar("T")

CLOSED = pybreaker.STATE_CLOSED
OPEN = pybreaker.STATE_OPEN
HALF_OPEN = pybreaker.STATE_HALF_OPEN


class _RecordedFault(Exception):
    """Carries a fault into pybreaker so it counts it; never escapes this module."""


def _raise_fault() -> NoReturn:
    raise _RecordedFault


def _succeed() -> None:
    return None


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_change: Callable[[str, str], None]) -> None:
        self._on_change = on_change

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self._on_change(old_state.name if old_state is not None else CLOSED, new_state.name)


class ProviderBreaker:
    """The circuit breaker of one provider. Not thread-safe: use from one event loop."""

    def __init__(
        self,
        provider: str,
        policy: BreakerPolicy | None = None,
        *,
        metrics: ProviderMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.policy = policy or BreakerPolicy()
        self._metrics = metrics or NoopProviderMetrics()
        self._clock = clock
        self._generation = 0
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=self.policy.fail_max,
            reset_timeout=self.policy.reset_timeout,
            success_threshold=self.policy.success_threshold,
            listeners=[_Listener(self._on_change)],
            name=provider,
            throw_new_error_on_trip=False,
        )
        self._metrics.provider_breaker_state(provider, CLOSED)

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (pybreaker's words)."""
        return self._breaker.current_state

    @property
    def fail_counter(self) -> int:
        """Consecutive provider faults counted so far."""
        return self._breaker.fail_counter

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` if the breaker admits it, and record its outcome.

        Raises :class:`ProviderUnavailable` ``("breaker_open")`` without calling ``fn`` when
        open (or half-open with its trials taken); otherwise returns or raises what ``fn``
        does.
        """
        generation, trial = self._admit()
        try:
            result = await fn()
        except ProviderDeclined:
            self._record(generation, fault=False)
            raise
        except Exception as exc:
            if is_provider_fault(exc):
                self._record(generation, fault=True)
            raise
        else:
            self._record(generation, fault=False)
            return result
        finally:
            if trial:
                self._trials_in_flight -= 1

    def _admit(self) -> tuple[int, bool]:
        state = self.state
        if state == OPEN:
            if self._clock() - self._opened_at < self.policy.reset_timeout:
                raise ProviderUnavailable(BREAKER_OPEN, provider=self.provider)
            self._breaker.half_open()
            state = HALF_OPEN
        if state == HALF_OPEN:
            if self._trials_in_flight >= self.policy.half_open_max_calls:
                raise ProviderUnavailable(BREAKER_OPEN, provider=self.provider)
            self._trials_in_flight += 1
            return self._generation, True
        return self._generation, False

    def _record(self, generation: int, *, fault: bool) -> None:
        if generation != self._generation:
            return
        # pybreaker counts the outcome, trips or closes, and notifies the listener; with
        # throw_new_error_on_trip=False it re-raises our marker, which stops here.
        with contextlib.suppress(_RecordedFault, pybreaker.CircuitBreakerError):
            self._breaker.call(_raise_fault if fault else _succeed)

    def _on_change(self, old: str, new: str) -> None:
        self._generation += 1
        if new == OPEN:
            self._opened_at = self._clock()
        self._metrics.provider_breaker_transition(self.provider, old, new)
        self._metrics.provider_breaker_state(self.provider, new)
        log = logger.warning if new == OPEN else logger.info
        log("provider circuit breaker {}: {} -> {}", self.provider, old, new)
