"""GroupCommit on plain asyncio: a job alone runs at once, jobs that arrive while a batch runs
go together into the next one (at most max_size), every caller gets its own answer, and one
failing batch or one cancelled caller harms nobody else."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kora.platform.group_commit import GroupCommit


class Runner:
    """A batch runner that records its batches and, while `hold` is clear, waits in every
    batch until the test releases it. Answers `job * 10`, or raises/returns what `fail` says."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.running = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.raise_for: set[int] = set()  # a batch holding one of these raises
        self.error_for: set[int] = set()  # these jobs get an exception as their own result

    def block(self) -> None:
        self.hold.clear()
        self.running.clear()

    async def __call__(self, jobs: list[int]) -> Sequence[int | Exception]:
        self.batches.append(list(jobs))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.running.set()
            await self.hold.wait()
            if self.raise_for & set(jobs):
                raise RuntimeError(f"batch {jobs} failed")
            return [ValueError(f"job {j} refused") if j in self.error_for else j * 10 for j in jobs]
        finally:
            self.in_flight -= 1


async def settle() -> None:
    """Let every ready task run until it blocks (enough for queued submits to land)."""
    for _ in range(5):
        await asyncio.sleep(0)


def submit_all(gc: GroupCommit[int, int], jobs: Sequence[int]) -> list[asyncio.Task[int]]:
    return [asyncio.create_task(gc.submit(j)) for j in jobs]


async def test_a_job_alone_runs_at_once_in_a_batch_of_one() -> None:
    runner = Runner()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=64)
    assert await asyncio.wait_for(gc.submit(7), timeout=1) == 70
    assert runner.batches == [[7]]
    assert await asyncio.wait_for(gc.submit(8), timeout=1) == 80
    assert runner.batches == [[7], [8]]  # light load: every job goes alone, no waiting


async def test_jobs_arriving_while_a_batch_runs_go_together_into_the_next() -> None:
    runner = Runner()
    runner.block()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=64)
    first = asyncio.create_task(gc.submit(1))
    await asyncio.wait_for(runner.running.wait(), timeout=1)
    assert runner.batches == [[1]]

    later = submit_all(gc, [2, 3, 4, 5])
    await settle()
    assert runner.batches == [[1]]  # nothing else runs while the batch is open
    runner.hold.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), timeout=1)

    assert results == [10, 20, 30, 40, 50]
    assert runner.batches == [[1], [2, 3, 4, 5]]
    assert runner.most_in_flight == 1  # one batch at a time


async def test_jobs_submitted_in_the_same_tick_share_the_first_batch() -> None:
    runner = Runner()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=64)
    results = await asyncio.wait_for(asyncio.gather(*(gc.submit(j) for j in range(10))), timeout=1)
    assert results == [j * 10 for j in range(10)]
    assert runner.batches == [list(range(10))]


async def test_max_size_caps_every_batch_and_keeps_the_order() -> None:
    runner = Runner()
    runner.block()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=3)
    first = asyncio.create_task(gc.submit(0))
    await asyncio.wait_for(runner.running.wait(), timeout=1)
    later = submit_all(gc, list(range(1, 8)))
    await settle()
    runner.hold.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), timeout=1)

    assert results == [j * 10 for j in range(8)]
    assert runner.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert max(len(b) for b in runner.batches) <= 3


async def test_a_burst_larger_than_max_size_is_split() -> None:
    runner = Runner()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=4)
    results = await asyncio.wait_for(asyncio.gather(*(gc.submit(j) for j in range(10))), timeout=1)
    assert results == [j * 10 for j in range(10)]
    assert runner.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_each_caller_gets_its_own_result_or_its_own_error() -> None:
    runner = Runner()
    runner.error_for = {2, 5}
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=64)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(gc.submit(j) for j in range(1, 7)), return_exceptions=True), timeout=1
    )
    assert runner.batches == [[1, 2, 3, 4, 5, 6]]  # one batch, six different answers
    assert [o for o in outcomes if not isinstance(o, BaseException)] == [10, 30, 40, 60]
    errors = {str(o) for o in outcomes if isinstance(o, ValueError)}
    assert errors == {"job 2 refused", "job 5 refused"}
    assert isinstance(outcomes[1], ValueError)
    assert str(outcomes[1]) == "job 2 refused"
    assert str(outcomes[4]) == "job 5 refused"


async def test_a_runner_that_raises_fails_its_whole_batch_and_later_batches_still_run() -> None:
    runner = Runner()
    runner.block()
    runner.raise_for = {3}
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=2)
    first = asyncio.create_task(gc.submit(1))
    await asyncio.wait_for(runner.running.wait(), timeout=1)
    failing = submit_all(gc, [2, 3])  # the batch [2, 3] raises
    after = submit_all(gc, [4, 5])  # queued behind it
    await settle()
    runner.hold.set()
    outcomes = await asyncio.wait_for(asyncio.gather(first, *failing, *after, return_exceptions=True), timeout=1)

    assert runner.batches == [[1], [2, 3], [4, 5]]
    assert outcomes[0] == 10
    for failed in outcomes[1:3]:
        assert isinstance(failed, RuntimeError)
        assert str(failed) == "batch [2, 3] failed"
    assert outcomes[3:] == [40, 50]
    # And the service keeps working after the failure.
    assert await asyncio.wait_for(gc.submit(6), timeout=1) == 60


async def test_a_failed_batch_does_not_stop_the_next_submit() -> None:
    runner = Runner()
    runner.raise_for = {1}
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=8)
    with pytest.raises(RuntimeError, match=r"batch \[1\] failed"):
        await asyncio.wait_for(gc.submit(1), timeout=1)
    assert await asyncio.wait_for(gc.submit(2), timeout=1) == 20


async def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_others() -> None:
    runner = Runner()
    runner.block()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=64)
    tasks = submit_all(gc, [1, 2, 3])
    await asyncio.wait_for(runner.running.wait(), timeout=1)
    assert runner.batches == [[1, 2, 3]]
    tasks[1].cancel()
    await settle()
    runner.hold.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=1)

    assert outcomes[0] == 10
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert outcomes[2] == 30
    assert await asyncio.wait_for(gc.submit(4), timeout=1) == 40


async def test_a_caller_cancelled_while_queued_does_not_break_the_others() -> None:
    """Whether the handed-over job still runs is the runner's business (a transfer whose client
    went away may still settle); the other callers get their answers either way."""
    runner = Runner()
    runner.block()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=64)
    first = asyncio.create_task(gc.submit(1))
    await asyncio.wait_for(runner.running.wait(), timeout=1)
    queued = submit_all(gc, [2, 3, 4])
    await settle()
    queued[1].cancel()
    await settle()
    runner.hold.set()
    outcomes = await asyncio.wait_for(asyncio.gather(first, *queued, return_exceptions=True), timeout=1)

    assert runner.batches[0] == [1]
    assert [j for j in runner.batches[1] if j != 3] == [2, 4]
    assert outcomes[0] == 10
    assert outcomes[1] == 20
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert outcomes[3] == 40


async def test_every_caller_cancelled_leaves_the_worker_usable() -> None:
    runner = Runner()
    runner.block()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=64)
    tasks = submit_all(gc, [1, 2])
    await asyncio.wait_for(runner.running.wait(), timeout=1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    runner.hold.set()
    assert await asyncio.wait_for(gc.submit(3), timeout=1) == 30
    assert runner.batches == [[1, 2], [3]]


def test_one_group_commit_serves_successive_event_loops() -> None:
    """The composition root builds it once; a test suite (or a restarted loop) runs it on
    several loops in turn."""
    runner = Runner()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=8)

    async def burst(base: int) -> list[int]:
        runner.hold = asyncio.Event()  # an Event belongs to the loop that first waits on it
        runner.hold.set()
        runner.running = asyncio.Event()
        return list(await asyncio.gather(*(gc.submit(base + j) for j in range(3))))

    assert asyncio.run(burst(0)) == [0, 10, 20]
    assert asyncio.run(burst(10)) == [100, 110, 120]


@pytest.mark.parametrize("size", [0, -1])
def test_max_size_must_be_at_least_one(size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Runner(), max_size=size)


async def short_runner(jobs: list[int]) -> list[int]:
    return [j * 10 for j in jobs[:-1]]  # one answer short: a runner that breaks its contract


async def test_a_runner_answering_the_wrong_number_of_jobs_fails_its_batch_instead_of_hanging() -> None:
    gc: GroupCommit[int, int] = GroupCommit(short_runner, max_size=64)
    outcomes = await asyncio.wait_for(asyncio.gather(*(gc.submit(j) for j in range(3)), return_exceptions=True), 1)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert "answered 2 of 3 jobs" in str(outcomes[0])


async def test_a_cancelled_batch_answers_every_waiting_caller() -> None:
    """Shutdown cancels the worker mid-batch: its callers, and those queued behind, get an
    error instead of waiting forever; a later submit starts a new worker."""
    runner = Runner()
    runner.block()
    gc: GroupCommit[int, int] = GroupCommit(runner, max_size=2)
    tasks = submit_all(gc, [1, 2])
    await asyncio.wait_for(runner.running.wait(), timeout=1)
    queued = submit_all(gc, [3])
    await settle()
    worker = next(t for t in asyncio.all_tasks() if t.get_name() == "group-commit")
    worker.cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, *queued, return_exceptions=True), timeout=1)
    assert [type(o) for o in outcomes] == [RuntimeError] * 3
    assert all("cancelled" in str(o) for o in outcomes)
    runner.hold.set()
    assert await asyncio.wait_for(gc.submit(4), timeout=1) == 40
