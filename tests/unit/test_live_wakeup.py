"""The publisher's list renderer stops when cancelled, even in the turn its wake-up event is set (which is when
a batch finishing during shutdown notes pending lists)."""

from __future__ import annotations

import asyncio

from services.publisher.live import woken


async def renderer_loop(event: asyncio.Event, turns: list[int]) -> None:
    while True:
        await woken(event, 1.0)
        event.clear()
        turns.append(1)


async def test_a_cancel_in_the_turn_the_event_is_set_stops_the_loop() -> None:
    for _ in range(20):
        event = asyncio.Event()
        turns: list[int] = []
        task = asyncio.create_task(renderer_loop(event, turns))
        await asyncio.sleep(0)  # the loop now waits on the event
        event.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        assert done == {task} and task.cancelled(), "the cancellation was swallowed: the loop kept running"


async def test_it_wakes_on_the_event_and_on_the_clock() -> None:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await woken(event, 0.05)
    assert loop.time() - started >= 0.05
    event.set()
    started = loop.time()
    await woken(event, 5.0)
    assert loop.time() - started < 1.0
