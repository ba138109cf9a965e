"""Stopping a background task ends it even when a cancellation is lost, and never hangs a shutdown."""

from __future__ import annotations

import asyncio
import contextlib

from shared.service import cancel_and_wait


async def loses_cancellations(lost: int, ticks: list[int]) -> None:
    """A loop that swallows its first `lost` cancellations, as a library call losing them would."""
    while True:
        try:
            await asyncio.sleep(0.01)
            ticks.append(1)
        except asyncio.CancelledError:
            if lost == 0:
                raise
            lost -= 1


async def test_a_task_that_lost_a_cancellation_is_cancelled_again() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(loses_cancellations(2, ticks))
    await asyncio.sleep(0.03)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cancel_and_wait(task, within=5.0)
    assert task.cancelled()
    assert loop.time() - started < 2.0


async def test_a_task_that_never_stops_is_given_up_on_in_time() -> None:
    running = [True]

    async def ignores_cancellations() -> None:
        while running[0]:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    task = asyncio.create_task(ignores_cancellations())
    await asyncio.sleep(0.03)  # inside its loop (a task cancelled before it starts never runs at all)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await cancel_and_wait(task, within=0.6)
    assert 0.5 <= loop.time() - started < 2.0
    running[0] = False
    await task


async def test_a_finished_or_missing_task_is_fine() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task)
    assert await cancel_and_wait(None)
