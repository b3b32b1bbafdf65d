"""Group commit: work that arrives while a batch is being written waits and goes, together,
into the next batch — one database transaction for many requests, as ledgers built for
throughput do. Under light load a batch holds one job and adds no delay."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

J = TypeVar("J")
R = TypeVar("R")

BatchRunner = Callable[[list[J]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[J, R]):
    def __init__(self, run: BatchRunner[J, R], *, max_size: int = 64) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._run = run
        self._max_size = max_size
        self._queue: list[tuple[J, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, job: J) -> R:
        """Queue `job`, and return its own result (or raise its own error) once its batch ran."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((job, future))
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            # A fresh context: the batch belongs to no single request (each request logs its
            # own outcome in its own context once its future resolves).
            self._worker = loop.create_task(self._drain(), name="group-commit", context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_size]
            del self._queue[: self._max_size]
            try:
                results: Sequence[R | Exception] = await self._run([job for job, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            except BaseException:  # cancelled (shutdown): nobody may wait forever
                for _, future in batch + self._queue:
                    if not future.done():
                        future.set_exception(RuntimeError("the batch was cancelled"))
                self._queue.clear()
                raise
            if len(results) != len(batch):  # a runner that broke its contract: answer everyone
                error = RuntimeError(f"batch runner answered {len(results)} of {len(batch)} jobs")
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller went away (cancelled)
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
