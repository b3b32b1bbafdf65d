"""The circuit breaker: pybreaker's state machine driven from asyncio, counting only
provider faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kora.providers.resilience import (
    BREAKER_OPEN,
    BreakerPolicy,
    ProviderBreaker,
    ProviderDeclined,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from tests.unit.providers.support import FakeClock, RecordingMetrics


def make(
    fail_max: int = 3, reset_timeout: float = 30.0, **kwargs: int
) -> tuple[ProviderBreaker, FakeClock, RecordingMetrics]:
    clock, metrics = FakeClock(), RecordingMetrics()
    policy = BreakerPolicy(fail_max=fail_max, reset_timeout=reset_timeout, **kwargs)
    return ProviderBreaker("mtn", policy, metrics=metrics, clock=clock), clock, metrics


async def ok() -> str:
    return "ok"


def failing(exc: BaseException) -> Callable[[], Awaitable[str]]:
    async def fn() -> str:
        raise exc

    return fn


async def fail(breaker: ProviderBreaker, exc: ProviderError) -> None:
    with pytest.raises(type(exc)):
        await breaker.call(failing(exc))


async def test_opens_after_fail_max_provider_faults_and_fails_fast() -> None:
    breaker, _, metrics = make(fail_max=3)
    assert metrics.states == [("mtn", "closed")]
    await fail(breaker, ProviderUnavailable("connect_error"))
    await fail(breaker, ProviderTimeout("read_timeout"))
    assert breaker.state == "closed"
    assert breaker.fail_counter == 2
    # the third fault is reported as itself (not as a breaker error), and trips the breaker
    await fail(breaker, ProviderTimeout("http_500"))
    assert breaker.state == "open"
    assert metrics.transitions == [("mtn", "closed", "open")]
    assert metrics.states[-1] == ("mtn", "open")

    called = False

    async def must_not_run() -> str:
        nonlocal called
        called = True
        return "ok"

    with pytest.raises(ProviderUnavailable) as caught:
        await breaker.call(must_not_run)
    assert (caught.value.reason, caught.value.provider) == (BREAKER_OPEN, "mtn")
    assert called is False


async def test_declines_are_healthy_answers() -> None:
    breaker, _, _ = make(fail_max=2)
    for _ in range(5):
        await fail(breaker, ProviderDeclined("insufficient_funds"))
    assert breaker.state == "closed"
    assert breaker.fail_counter == 0
    # a decline proves the provider is up: it resets the run of consecutive faults
    await fail(breaker, ProviderUnavailable("connect_error"))
    await fail(breaker, ProviderDeclined("insufficient_funds"))
    await fail(breaker, ProviderUnavailable("connect_error"))
    assert breaker.state == "closed"


async def test_unknown_errors_and_cancellation_are_not_counted() -> None:
    breaker, _, _ = make(fail_max=1)
    with pytest.raises(KeyError):
        await breaker.call(failing(KeyError("bug")))

    async def hang() -> str:
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(breaker.call(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "closed"
    assert breaker.fail_counter == 0


async def test_half_open_after_reset_timeout_then_closes_on_success() -> None:
    breaker, clock, metrics = make(fail_max=1, reset_timeout=30.0)
    await fail(breaker, ProviderUnavailable("connect_error"))
    clock.advance(29.9)
    with pytest.raises(ProviderUnavailable, match=BREAKER_OPEN):
        await breaker.call(ok)
    clock.advance(0.2)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert [t[1:] for t in metrics.transitions] == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


async def test_failed_trial_reopens_for_another_full_timeout() -> None:
    breaker, clock, metrics = make(fail_max=1, reset_timeout=10.0)
    await fail(breaker, ProviderUnavailable("connect_error"))
    clock.advance(10)
    await fail(breaker, ProviderTimeout("read_timeout"))
    assert breaker.state == "open"
    clock.advance(9)
    with pytest.raises(ProviderUnavailable, match=BREAKER_OPEN):
        await breaker.call(ok)
    clock.advance(1)
    assert await breaker.call(ok) == "ok"
    assert [t[2] for t in metrics.transitions] == ["open", "half-open", "open", "half-open", "closed"]


async def test_half_open_lets_one_trial_through_at_a_time() -> None:
    breaker, clock, _ = make(fail_max=1, reset_timeout=1.0)
    await fail(breaker, ProviderUnavailable("connect_error"))
    clock.advance(1)
    release = asyncio.Event()

    async def trial() -> str:
        await release.wait()
        return "ok"

    first = asyncio.create_task(breaker.call(trial))
    await asyncio.sleep(0)
    assert breaker.state == "half-open"
    with pytest.raises(ProviderUnavailable, match=BREAKER_OPEN):
        await breaker.call(ok)
    release.set()
    assert await first == "ok"
    assert breaker.state == "closed"


async def test_a_stale_result_does_not_touch_the_new_state() -> None:
    breaker, _, metrics = make(fail_max=1)
    release = asyncio.Event()

    async def slow_failure() -> str:
        await release.wait()
        raise ProviderTimeout("read_timeout")

    slow = asyncio.create_task(breaker.call(slow_failure))
    await asyncio.sleep(0)
    await fail(breaker, ProviderUnavailable("connect_error"))  # trips while the slow call is out
    assert breaker.state == "open"
    release.set()
    with pytest.raises(ProviderTimeout):
        await slow
    # the late failure neither reopened the breaker (no second transition) nor reset its timer
    assert metrics.transitions == [("mtn", "closed", "open")]


async def test_small_real_reset_timeout_with_the_real_clock() -> None:
    breaker = ProviderBreaker("wave", BreakerPolicy(fail_max=1, reset_timeout=0.02))
    await fail(breaker, ProviderUnavailable("connect_error"))
    with pytest.raises(ProviderUnavailable, match=BREAKER_OPEN):
        await breaker.call(ok)
    await asyncio.sleep(0.03)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="fail_max"):
        BreakerPolicy(fail_max=0)
    with pytest.raises(ValueError, match="reset_timeout"):
        BreakerPolicy(reset_timeout=0)
