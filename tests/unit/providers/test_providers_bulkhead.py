"""The bulkhead: bounded concurrency, fast rejection, slots always given back."""

from __future__ import annotations

import asyncio

import pytest

from kora.providers.resilience import BULKHEAD_FULL, Bulkhead, BulkheadPolicy, ProviderUnavailable
from tests.unit.providers.support import RecordingMetrics


async def hold(bulkhead: Bulkhead, entered: asyncio.Event, release: asyncio.Event) -> None:
    async with bulkhead.slot():
        entered.set()
        await release.wait()


async def test_rejects_at_once_when_full_and_frees_on_completion() -> None:
    metrics = RecordingMetrics()
    bulkhead = Bulkhead("mtn", BulkheadPolicy(max_concurrent=2), metrics=metrics)
    release = asyncio.Event()
    entered = [asyncio.Event(), asyncio.Event()]
    holders = [asyncio.create_task(hold(bulkhead, e, release)) for e in entered]
    await asyncio.gather(*(e.wait() for e in entered))
    assert bulkhead.in_flight == 2

    with pytest.raises(ProviderUnavailable) as caught:
        async with bulkhead.slot():
            pytest.fail("a full bulkhead must not admit")
    assert (caught.value.reason, caught.value.provider) == (BULKHEAD_FULL, "mtn")
    assert metrics.rejections == ["mtn"]

    release.set()
    await asyncio.gather(*holders)
    assert bulkhead.in_flight == 0
    assert metrics.in_flight == [1, 2, 1, 0]
    async with bulkhead.slot():
        assert bulkhead.in_flight == 1


async def test_released_on_error_and_on_cancellation() -> None:
    bulkhead = Bulkhead("mtn", BulkheadPolicy(max_concurrent=1))
    with pytest.raises(RuntimeError):
        async with bulkhead.slot():
            raise RuntimeError("boom")
    assert bulkhead.in_flight == 0

    entered, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(hold(bulkhead, entered, release))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulkhead.in_flight == 0
    async with bulkhead.slot():
        pass


async def test_a_short_wait_admits_when_a_slot_frees_in_time() -> None:
    bulkhead = Bulkhead("mtn", BulkheadPolicy(max_concurrent=1, max_wait=1.0))
    entered, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(bulkhead, entered, release))
    await entered.wait()
    asyncio.get_running_loop().call_soon(release.set)
    async with bulkhead.slot():
        assert bulkhead.in_flight == 1
    await holder


async def test_a_short_wait_rejects_when_nothing_frees() -> None:
    metrics = RecordingMetrics()
    bulkhead = Bulkhead("mtn", BulkheadPolicy(max_concurrent=1, max_wait=0.01), metrics=metrics)
    entered, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(bulkhead, entered, release))
    await entered.wait()
    with pytest.raises(ProviderUnavailable, match=BULKHEAD_FULL):
        async with bulkhead.slot():
            pytest.fail("must not admit")
    assert metrics.rejections == ["mtn"]
    release.set()
    await holder
    async with bulkhead.slot():
        assert bulkhead.in_flight == 1


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        BulkheadPolicy(max_concurrent=0)
    with pytest.raises(ValueError, match="max_wait"):
        BulkheadPolicy(max_wait=-1)
