"""service.batcher: concurrent submits share calls, a full queue refuses, a failing call fails only its batch."""
import asyncio

import pytest

from service.batcher import MicroBatcher
from service.errors import Overloaded


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_batched_and_answered_in_order():
    calls = []

    def double(items):
        calls.append(list(items))
        return [2 * i for i in items]

    async def go():
        batcher = MicroBatcher(double, max_batch=4, max_wait_s=0.05, max_queue=64)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return answers

    assert run(go()) == [2 * i for i in range(10)]
    assert max(len(c) for c in calls) == 4 and len(calls) == 3  # 4 + 4 + 2


def test_full_queue_raises_overloaded():
    async def go():
        batcher = MicroBatcher(lambda items: items, max_batch=1, max_queue=2)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
        results = await asyncio.gather(*pending, return_exceptions=True)
        await batcher.stop()
        return results

    results = run(go())
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert refused and "queue is full (2 waiting)" in str(refused[0])
    assert [r for r in results if not isinstance(r, Overloaded)] == [0, 1]


def test_failing_batch_does_not_stop_the_worker():
    def picky(items):
        if "bad" in items:
            raise ValueError("bad item")
        return items

    async def go():
        batcher = MicroBatcher(picky, max_batch=1, max_wait_s=0)
        batcher.start()
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit("bad")
        answer = await batcher.submit("good")
        await batcher.stop()
        return answer

    assert run(go()) == "good"


def test_workers_run_batches_at_the_same_time():
    """Two workers: two batches are inside `run` together (a barrier of two would time out otherwise), and every
    request still gets its own answer."""
    import threading

    barrier = threading.Barrier(2, timeout=10)
    inside = []

    def double(items):
        inside.append(len(items))
        barrier.wait()
        return [2 * i for i in items]

    async def go(workers):
        batcher = MicroBatcher(double, max_batch=2, max_wait_s=0.01, max_queue=64, workers=workers)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(8)), return_exceptions=True)
        await batcher.stop()
        return answers

    assert run(go(2)) == [2 * i for i in range(8)] and sum(inside) == 8
    with pytest.raises(ValueError, match="workers"):
        MicroBatcher(double, workers=0)
