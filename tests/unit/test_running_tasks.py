"""What a publisher logs when its stop outlasts the grace period: each task and the await chain it waits in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.publisher.server import running_tasks


async def waits_deep() -> None:
    await asyncio.sleep(30)


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    yield
    await waits_deep()  # a shutdown step stuck after the `async with` body


async def stops_slowly() -> None:
    async with lifespan():
        pass


async def test_the_chain_goes_through_coroutines_and_async_context_managers() -> None:
    plain = asyncio.create_task(waits_deep(), name="plain")
    stuck = asyncio.create_task(stops_slowly(), name="stuck-shutdown")
    await asyncio.sleep(0.01)
    try:
        described = {line.split(":", 1)[0]: line for line in running_tasks()}
        assert "waits_deep" in described["plain"] and "sleep" in described["plain"]
        assert described["stuck-shutdown"].index("stops_slowly") < described["stuck-shutdown"].index("lifespan")
        assert "waits_deep" in described["stuck-shutdown"]
    finally:
        plain.cancel()
        stuck.cancel()
        await asyncio.gather(plain, stuck, return_exceptions=True)
