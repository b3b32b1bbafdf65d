"""Per-provider resilience settings: frozen values, validated on construction.

Defaults are sized for mobile-money APIs that answer in 200 ms to 2 s: a total budget per
attempt that covers the slow tail, a short connect timeout (a refused or unreachable
provider is found out fast and is safe to send elsewhere), few retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """Timeouts of one provider operation, in seconds.

    ``connect`` bounds establishing the connection (a timeout there means *not sent*);
    ``read`` bounds waiting for each chunk of the answer; ``total`` bounds the whole attempt
    (enforced with ``asyncio.timeout``; expiry is an ambiguous outcome). ``connect`` and
    ``read`` must not exceed ``total``, so that a connect failure is reported as such
    rather than swallowed by the total budget.
    """

    connect: float = 1.0
    read: float = 3.0
    total: float = 5.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            _positive(name, getattr(self, name))
        if self.connect > self.total or self.read > self.total:
            raise ValueError("connect and read timeouts must not exceed the total timeout")

    def httpx_timeout(self) -> httpx.Timeout:
        """The matching ``httpx.Timeout`` for the adapter's client (writes and pool waits
        bounded like connects: both happen before the provider can have our request)."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.connect, pool=self.connect)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: before retry ``n`` (0-based) sleep a uniform
    random time in ``[0, min(max_delay, base_delay * 2**n))``.

    ``max_attempts`` counts the first call (1 = never retry); ``deadline`` bounds the whole
    sequence, attempts and sleeps included.
    """

    max_attempts: int = 3
    base_delay: float = 0.1
    max_delay: float = 2.0
    deadline: float = 15.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        for name in ("base_delay", "max_delay", "deadline"):
            _positive(name, getattr(self, name))

    def backoff_ceiling(self, retry_index: int) -> float:
        """The upper bound of the sleep before retry ``retry_index`` (0-based)."""
        return min(self.max_delay, self.base_delay * 2.0 ** min(retry_index, 64))


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """``fail_max`` consecutive provider faults open the breaker; it stays open
    ``reset_timeout`` seconds, then lets ``half_open_max_calls`` trial calls through at a time;
    ``success_threshold`` successful trials close it, one failed trial reopens it."""

    fail_max: int = 5
    reset_timeout: float = 30.0
    success_threshold: int = 1
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        if self.fail_max < 1 or self.success_threshold < 1 or self.half_open_max_calls < 1:
            raise ValueError("fail_max, success_threshold and half_open_max_calls must be >= 1")
        _positive("reset_timeout", self.reset_timeout)


@dataclass(frozen=True, slots=True)
class BulkheadPolicy:
    """At most ``max_concurrent`` calls in flight to the provider; a call that finds it full
    waits at most ``max_wait`` seconds (0: rejected at once)."""

    max_concurrent: int = 20
    max_wait: float = 0.0

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if self.max_wait < 0:
            raise ValueError("max_wait must be >= 0")


@dataclass(frozen=True, slots=True)
class ProviderPolicy:
    """Everything the guard of one provider needs. ``timeouts`` overrides ``default_timeout``
    per operation (``collect``, ``disburse``, ``status``...)."""

    default_timeout: TimeoutPolicy = field(default_factory=TimeoutPolicy)
    timeouts: Mapping[str, TimeoutPolicy] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    bulkhead: BulkheadPolicy = field(default_factory=BulkheadPolicy)

    def timeout_for(self, operation: str) -> TimeoutPolicy:
        return self.timeouts.get(operation, self.default_timeout)
