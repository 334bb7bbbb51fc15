"""RunQueue: first come first served, positions, and whether jobs really wait for a worker."""

from __future__ import annotations

import asyncio

from core.run_queue import RunQueue


async def test_jobs_leave_in_order_and_positions_follow() -> None:
    queue = RunQueue()
    assert [await queue.put(job) for job in ("a", "b", "c")] == [1, 2, 3]
    assert (queue.position("c"), queue.position("z"), queue.head(2)) == (3, None, ["a", "b"])
    queue.discard("b")
    queue.discard("b")  # twice is harmless
    assert (len(queue), queue.position("c")) == (2, 2)
    assert [await queue.take(), await queue.take()] == ["a", "c"]
    assert len(queue) == 0 and not queue.backlog


async def test_a_waiting_worker_gets_the_next_job() -> None:
    queue = RunQueue()
    taker = asyncio.create_task(queue.take())
    await queue.put("a")
    assert await taker == "a"
    await queue.put("b")
    assert queue.backlog  # no worker is idle: "b" really waits
