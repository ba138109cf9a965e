"""`kill -USR1` on a service logs where each task waits: the chain of awaits, not just the task's own frame."""

from __future__ import annotations

import asyncio

from shared.service import awaiting


async def waits_on(future: asyncio.Future[None]) -> None:
    await future


async def commits(future: asyncio.Future[None]) -> None:
    await waits_on(future)


async def test_the_stack_names_every_await_down_to_the_innermost() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(commits(future), name="membership")
    await asyncio.sleep(0)
    stack = awaiting(task)
    lines = [line.strip() for line in stack.splitlines() if line.strip().startswith("File")]
    assert [line.rsplit(" in ", 1)[1] for line in lines] == ["commits", "waits_on"]
    future.set_result(None)
    await task
