"""The composed guard: bulkhead → retry (if safe) → breaker → timeout → call."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from kora.providers.resilience import (
    BREAKER_OPEN,
    BULKHEAD_FULL,
    BreakerPolicy,
    BulkheadPolicy,
    ProviderDeclined,
    ProviderGuard,
    ProviderGuards,
    ProviderPolicy,
    ProviderTimeout,
    ProviderUnavailable,
    RetryPolicy,
    TimeoutPolicy,
)
from tests.unit.providers.support import FakeClock, RecordingMetrics

REQUEST = httpx.Request("POST", "http://provider.test/collections")


def guard(policy: ProviderPolicy | None = None) -> tuple[ProviderGuard, FakeClock, RecordingMetrics]:
    clock, metrics = FakeClock(), RecordingMetrics()
    return (
        ProviderGuard("mtn", policy, metrics=metrics, clock=clock, sleep=clock.sleep, rng=random.Random(3)),
        clock,
        metrics,
    )


class Provider:
    """Raises the scripted exceptions in order, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "accepted"


async def test_success_is_returned_and_measured() -> None:
    g, _, metrics = guard()
    assert await g.call("collect", Provider()) == "accepted"
    assert metrics.requests == [("mtn", "collect", "succeeded")]
    assert metrics.in_flight == [1, 0]


async def test_httpx_errors_are_classified_and_safe_calls_retried() -> None:
    g, clock, metrics = guard(ProviderPolicy(retry=RetryPolicy(max_attempts=3)))
    provider = Provider(httpx.ConnectError("refused", request=REQUEST), httpx.ReadTimeout("slow", request=REQUEST))
    assert await g.call("collect", provider, idempotent_safe=True) == "accepted"
    assert provider.calls == 3
    assert metrics.retries == [("mtn", "collect", "connect_error"), ("mtn", "collect", "read_timeout")]
    assert [r[2] for r in metrics.requests] == ["unavailable", "timeout", "succeeded"]
    assert len(clock.sleeps) == 2


async def test_ambiguous_outcome_of_an_unsafe_call_is_raised_not_retried() -> None:
    g, clock, metrics = guard(ProviderPolicy(retry=RetryPolicy(max_attempts=5)))
    provider = Provider(httpx.ReadTimeout("slow", request=REQUEST))
    with pytest.raises(ProviderTimeout) as caught:
        await g.call("disburse", provider)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert provider.calls == 1
    assert metrics.retries == []
    assert clock.sleeps == []


async def test_total_timeout_is_ambiguous() -> None:
    g, _, metrics = guard(ProviderPolicy(default_timeout=TimeoutPolicy(connect=0.01, read=0.01, total=0.01)))

    async def hangs() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(ProviderTimeout, match="timeout"):
        await g.call("disburse", hangs)
    assert metrics.requests == [("mtn", "disburse", "timeout")]


async def test_per_operation_timeout_applies() -> None:
    policy = ProviderPolicy(
        default_timeout=TimeoutPolicy(total=30.0),
        timeouts={"status": TimeoutPolicy(connect=0.01, read=0.01, total=0.01)},
    )
    g, _, _ = guard(policy)

    async def hangs() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(ProviderTimeout):
        await g.call("status", hangs)
    assert policy.timeout_for("collect").total == 30.0


async def test_declines_pass_through_unretried_and_do_not_trip() -> None:
    g, _, metrics = guard(ProviderPolicy(breaker=BreakerPolicy(fail_max=1)))
    provider = Provider(ProviderDeclined("insufficient_funds"))
    with pytest.raises(ProviderDeclined):
        await g.call("disburse", provider, idempotent_safe=True)
    assert provider.calls == 1
    assert g.breaker.state == "closed"
    assert metrics.requests == [("mtn", "disburse", "declined")]


async def test_faults_open_the_breaker_which_stops_retries_and_fails_fast() -> None:
    policy = ProviderPolicy(breaker=BreakerPolicy(fail_max=2, reset_timeout=60), retry=RetryPolicy(max_attempts=5))
    g, _, metrics = guard(policy)
    provider = Provider(*(httpx.ConnectError("refused", request=REQUEST) for _ in range(5)))
    with pytest.raises(ProviderUnavailable) as caught:
        await g.call("collect", provider, idempotent_safe=True)
    # two faults trip the breaker; the third attempt is refused by it, and not retried
    assert provider.calls == 2
    assert caught.value.reason == BREAKER_OPEN
    assert g.breaker.state == "open"
    assert metrics.transitions == [("mtn", "closed", "open")]

    with pytest.raises(ProviderUnavailable, match=BREAKER_OPEN):
        await g.call("collect", Provider())


async def test_breaker_refusal_after_an_ambiguous_attempt_stays_ambiguous() -> None:
    policy = ProviderPolicy(breaker=BreakerPolicy(fail_max=1, reset_timeout=60), retry=RetryPolicy(max_attempts=3))
    g, _, _ = guard(policy)
    provider = Provider(httpx.ReadTimeout("slow", request=REQUEST))
    with pytest.raises(ProviderTimeout, match="read_timeout"):
        await g.call("disburse", provider, idempotent_safe=True)
    assert provider.calls == 1


async def test_bulkhead_full_is_rejected_before_the_provider_is_called() -> None:
    g, _, metrics = guard(ProviderPolicy(bulkhead=BulkheadPolicy(max_concurrent=1)))
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "accepted"

    first = asyncio.create_task(g.call("collect", slow))
    await asyncio.sleep(0)
    second = Provider()
    with pytest.raises(ProviderUnavailable, match=BULKHEAD_FULL):
        await g.call("collect", second)
    assert second.calls == 0
    assert metrics.rejections == ["mtn"]
    release.set()
    assert await first == "accepted"
    assert g.bulkhead.in_flight == 0


async def test_cancellation_frees_the_slot_and_is_measured() -> None:
    g, _, metrics = guard(ProviderPolicy(bulkhead=BulkheadPolicy(max_concurrent=1)))

    async def hangs() -> str:
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(g.call("collect", hangs))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert g.bulkhead.in_flight == 0
    assert metrics.requests == [("mtn", "collect", "cancelled")]
    assert g.breaker.fail_counter == 0


async def test_unclassified_errors_propagate() -> None:
    g, _, metrics = guard()
    with pytest.raises(KeyError):
        await g.call("collect", Provider(KeyError("bug")), idempotent_safe=True)
    assert metrics.requests == [("mtn", "collect", "error")]
    assert g.breaker.fail_counter == 0


def test_guards_are_shared_per_provider() -> None:
    special = ProviderPolicy(bulkhead=BulkheadPolicy(max_concurrent=3))
    guards = ProviderGuards({"wave": special})
    assert guards.get("wave") is guards.get("wave")
    assert guards.get("wave").policy is special
    assert guards.get("mtn").policy == ProviderPolicy()
