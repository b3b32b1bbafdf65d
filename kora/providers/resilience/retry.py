"""Retries with exponential backoff and full jitter, only where a retry cannot move money
twice.

"Full jitter" (AWS Architecture Blog, *Exponential Backoff And Jitter*): the sleep before
retry ``n`` is uniform in ``[0, min(cap, base * 2**n))``, which spreads retries of many
clients instead of synchronising them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

from kora.providers.resilience.errors import (
    BREAKER_OPEN,
    BULKHEAD_FULL,
    ProviderDeclined,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from kora.providers.resilience.policies import RetryPolicy

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
MonotonicClock = Callable[[], float]


def full_jitter_delay(policy: RetryPolicy, retry_index: int, rng: random.Random) -> float:
    """The sleep before retry ``retry_index`` (0-based): uniform in ``[0, ceiling)``."""
    return rng.random() * policy.backoff_ceiling(retry_index)


def is_retryable(exc: ProviderError, *, idempotent_safe: bool) -> bool:
    """Whether one more attempt at the *same* provider may follow ``exc``.

    Never without ``idempotent_safe`` (the provider deduplicates on our reference, so a repeat
    cannot execute twice). Never after a decline (definitive) or a fast rejection (breaker
    open, bulkhead full: the answer would not change within a backoff).
    """
    if not idempotent_safe or isinstance(exc, ProviderDeclined):
        return False
    if isinstance(exc, ProviderUnavailable):
        return exc.reason not in (BREAKER_OPEN, BULKHEAD_FULL)
    return isinstance(exc, ProviderTimeout)


def _final_error(exc: ProviderError, *, ambiguous_before: ProviderTimeout | None) -> ProviderError:
    """The error to report once retrying stops. If an earlier attempt was ambiguous, the
    request may already be accepted, and nothing said by a later attempt proves otherwise: a
    decline of the retry (an authentication error, a gateway's 404...) may speak of the retry
    alone while the first attempt goes through. So the whole call stays ambiguous — resolved
    by a status query, never by releasing funds or sending the request elsewhere."""
    if ambiguous_before is None or isinstance(exc, ProviderTimeout):
        return exc
    return ProviderTimeout(ambiguous_before.reason, provider=ambiguous_before.provider)


async def retry_call(
    attempt: Callable[[float], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent_safe: bool,
    rng: random.Random,
    sleep: Sleep = asyncio.sleep,
    clock: MonotonicClock = time.monotonic,
    on_retry: Callable[[ProviderError], None] | None = None,
) -> T:
    """Call ``attempt(remaining_seconds)`` until it returns, retrying per ``policy`` when
    :func:`is_retryable` allows it.

    ``attempt`` receives the time left before the deadline, to cap its own timeout. It must
    raise :class:`ProviderError` subclasses for provider outcomes; anything else propagates
    at once, unretried. ``on_retry`` is told about each error that is being retried, before
    the sleep.

    Raises the last classified error (see :func:`_final_error` for how an earlier ambiguous
    attempt colours it), or :class:`ProviderUnavailable` ``("deadline")`` if the deadline had
    passed before any attempt started (nothing was sent).
    """
    started = clock()
    ambiguous: ProviderTimeout | None = None
    last: ProviderError | None = None
    for index in range(policy.max_attempts):
        remaining = policy.deadline - (clock() - started)
        if remaining <= 0:  # a sleep overran the deadline
            break
        try:
            return await attempt(remaining)
        except ProviderError as exc:
            last = exc
            last_attempt = index + 1 >= policy.max_attempts
            if last_attempt or not is_retryable(exc, idempotent_safe=idempotent_safe):
                _raise_final(exc, ambiguous)
            delay = full_jitter_delay(policy, index, rng)
            if clock() - started + delay >= policy.deadline:
                _raise_final(exc, ambiguous)
            if isinstance(exc, ProviderTimeout) and ambiguous is None:
                ambiguous = exc
            if on_retry is not None:
                on_retry(exc)
            await sleep(delay)
    if last is None:
        raise ProviderUnavailable("deadline")
    _raise_final(last, ambiguous)


def _raise_final(exc: ProviderError, ambiguous: ProviderTimeout | None) -> NoReturn:
    final = _final_error(exc, ambiguous_before=ambiguous)
    if final is exc:
        raise exc
    raise final from exc
