"""Micro-batching of concurrent requests (text queries through the encoder and FAISS), behind a bounded queue.

Requests wait at most `max_wait_s` for company, then up to `max_batch` of them go through `run` in one call on a
worker thread (one encoder forward, one FAISS search). With `workers` > 1, that many batches form and run at once:
on a machine whose cores a single batch's small matrix products cannot keep busy, each batch takes its own core.
A full queue rejects new work at once (`Overloaded` → HTTP 503) instead of letting latency grow without bound.
With `max_batch=1` every request is its own call, same queue.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from service.errors import Overloaded


class MicroBatcher:
    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], max_batch: int = 32, max_wait_s: float = 0.003,
                 max_queue: int = 256, on_batch: Callable[[int, float], None] | None = None, workers: int = 1):
        if max_batch < 1 or max_queue < 1 or workers < 1:
            raise ValueError(f"max_batch, max_queue and workers must be >= 1, got {max_batch}, {max_queue} and "
                             f"{workers}")
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue | None = None
        self._max_queue = max_queue
        self._workers: list[asyncio.Task] = []
        self._count = workers

    def start(self) -> None:  # needs the running event loop
        self._queue = asyncio.Queue(self._max_queue)
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._run()) for _ in range(self._count)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue else 0

    async def submit(self, item: Any) -> Any:
        """`run([item, ...])`'s answer for `item`; raises Overloaded when the queue is full."""
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Overloaded(f"request queue is full ({self._max_queue} waiting); retry shortly") from None
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            batch = [(t, f) for t, f in batch if not f.cancelled()]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                answers = await asyncio.to_thread(self.run, [t for t, _ in batch])
            except Exception as err:  # one failed call fails its batch, never the worker
                for _, f in batch:
                    if not f.done():
                        f.set_exception(err)
                continue
            if self.on_batch:
                self.on_batch(len(batch), time.perf_counter() - started)
            for (_, f), v in zip(batch, answers):
                if not f.done():
                    f.set_result(v)
