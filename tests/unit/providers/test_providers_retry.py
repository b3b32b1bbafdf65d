"""Retries: full-jitter bounds, attempt and deadline limits, and never a retry that could
move money twice."""

from __future__ import annotations

import random

import pytest

from kora.providers.resilience import (
    BREAKER_OPEN,
    ProviderDeclined,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RetryPolicy,
    full_jitter_delay,
    is_retryable,
    retry_call,
)
from tests.unit.providers.support import FakeClock


class Script:
    """An attempt that raises the scripted errors in order, then returns "ok"."""

    def __init__(self, *errors: ProviderError, on_call: FakeClock | None = None, cost: float = 0.0) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.budgets: list[float] = []
        self._clock = on_call
        self._cost = cost

    async def __call__(self, remaining: float) -> str:
        self.calls += 1
        self.budgets.append(remaining)
        if self._clock is not None:
            self._clock.advance(self._cost)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    assert [policy.backoff_ceiling(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.backoff_ceiling(10_000) == 1.0


def test_full_jitter_stays_within_zero_and_the_ceiling_and_spreads() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    rng = random.Random(42)
    for n in range(8):
        delays = [full_jitter_delay(policy, n, rng) for _ in range(500)]
        ceiling = policy.backoff_ceiling(n)
        assert all(0 <= d < ceiling for d in delays)
        # full jitter: spread over the whole range, not clustered near the ceiling
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy()
    first = [full_jitter_delay(policy, n, random.Random(7)) for n in range(4)]
    again = [full_jitter_delay(policy, n, random.Random(7)) for n in range(4)]
    assert first == again


def test_what_may_be_retried() -> None:
    timeout, refused = ProviderTimeout("read_timeout"), ProviderUnavailable("connect_error")
    assert is_retryable(timeout, idempotent_safe=True)
    assert is_retryable(refused, idempotent_safe=True)
    assert not is_retryable(timeout, idempotent_safe=False)
    assert not is_retryable(refused, idempotent_safe=False)
    assert not is_retryable(ProviderDeclined("insufficient_funds", retryable_elsewhere=True), idempotent_safe=True)
    assert not is_retryable(ProviderUnavailable(BREAKER_OPEN), idempotent_safe=True)


async def test_retries_until_success_with_jittered_sleeps() -> None:
    clock = FakeClock()
    attempt = Script(ProviderTimeout("read_timeout"), ProviderUnavailable("connect_error"))
    retried: list[str] = []
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=10.0)
    result = await retry_call(
        attempt,
        policy,
        idempotent_safe=True,
        rng=random.Random(1),
        sleep=clock.sleep,
        clock=clock,
        on_retry=lambda exc: retried.append(exc.reason),
    )
    assert result == "ok"
    assert attempt.calls == 3
    assert retried == ["read_timeout", "connect_error"]
    expected_rng = random.Random(1)
    assert clock.sleeps == [expected_rng.random() * 0.5, expected_rng.random() * 1.0]


async def test_attempts_are_bounded_and_the_last_error_raised() -> None:
    clock = FakeClock()
    attempt = Script(*(ProviderUnavailable("connect_error") for _ in range(10)))
    with pytest.raises(ProviderUnavailable, match="connect_error"):
        await retry_call(
            attempt,
            RetryPolicy(max_attempts=4),
            idempotent_safe=True,
            rng=random.Random(0),
            sleep=clock.sleep,
            clock=clock,
        )
    assert attempt.calls == 4
    assert len(clock.sleeps) == 3


async def test_no_retry_without_idempotency_even_after_a_timeout() -> None:
    clock = FakeClock()
    attempt = Script(ProviderTimeout("read_timeout"))
    with pytest.raises(ProviderTimeout):
        await retry_call(
            attempt,
            RetryPolicy(max_attempts=5),
            idempotent_safe=False,
            rng=random.Random(0),
            sleep=clock.sleep,
            clock=clock,
        )
    assert attempt.calls == 1
    assert clock.sleeps == []


async def test_declines_are_never_retried() -> None:
    clock = FakeClock()
    attempt = Script(ProviderDeclined("insufficient_funds"))
    with pytest.raises(ProviderDeclined):
        await retry_call(
            attempt, RetryPolicy(), idempotent_safe=True, rng=random.Random(0), sleep=clock.sleep, clock=clock
        )
    assert attempt.calls == 1


async def test_deadline_bounds_attempts_and_budgets() -> None:
    clock = FakeClock()
    # each attempt burns 4 s; the deadline is 10 s: attempt budgets shrink, then it stops
    attempt = Script(*(ProviderTimeout("timeout") for _ in range(10)), on_call=clock, cost=4.0)
    policy = RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.01, deadline=10.0)
    with pytest.raises(ProviderTimeout):
        await retry_call(attempt, policy, idempotent_safe=True, rng=random.Random(0), sleep=clock.sleep, clock=clock)
    assert attempt.calls == 3
    assert attempt.budgets[0] == 10.0
    assert attempt.budgets[1] < 6.0
    assert attempt.budgets[2] < 2.0


async def test_unavailable_after_an_ambiguous_attempt_stays_ambiguous() -> None:
    clock = FakeClock()
    attempt = Script(ProviderTimeout("read_timeout", provider="mtn"), ProviderUnavailable("connect_error"))
    with pytest.raises(ProviderTimeout) as caught:
        await retry_call(
            attempt,
            RetryPolicy(max_attempts=2),
            idempotent_safe=True,
            rng=random.Random(0),
            sleep=clock.sleep,
            clock=clock,
        )
    assert (caught.value.reason, caught.value.provider) == ("read_timeout", "mtn")


async def test_a_decline_after_an_ambiguous_attempt_keeps_the_call_ambiguous() -> None:
    """The first attempt may have been accepted; the retry's decline (an auth error, a gateway
    404...) may speak of the retry alone. Funds must not be released on it: stay ambiguous."""
    clock = FakeClock()
    attempt = Script(ProviderTimeout("read_timeout"), ProviderDeclined("rejected_401", retryable_elsewhere=True))
    with pytest.raises(ProviderTimeout) as caught:
        await retry_call(
            attempt,
            RetryPolicy(max_attempts=2),
            idempotent_safe=True,
            rng=random.Random(0),
            sleep=clock.sleep,
            clock=clock,
        )
    assert caught.value.reason == "read_timeout"


async def test_unclassified_errors_propagate_unretried() -> None:
    clock = FakeClock()
    calls = 0

    async def buggy(remaining: float) -> str:
        nonlocal calls
        calls += 1
        raise KeyError("status")

    with pytest.raises(KeyError):
        await retry_call(
            buggy, RetryPolicy(), idempotent_safe=True, rng=random.Random(0), sleep=clock.sleep, clock=clock
        )
    assert calls == 1


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(deadline=0)
