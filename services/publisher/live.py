"""Which Redis namespace readers are served from, and which ones the consumer writes.

Readers are served from the *active* namespace (`{base}:site:active`, the base namespace until a rebuild
switches it). While a rebuild builds a new namespace (`{base}:site:rebuilding`), every live event is applied to
both, so the new site misses nothing that happens during the rebuild; the switch is one SET, seen by every
replica within a poll interval. A namespace is complete when it holds its `site:built` marker: if the marker
vanishes (Redis flushed or restarted empty), a replica rebuilds the site from the log on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import redis.asyncio as aioredis

from services.publisher.project import Projector
from services.publisher.site import SiteConfig
from services.publisher.store import PublisherStore
from shared.logging import get_logger
from shared.service import cancel_and_wait

log = get_logger(__name__)


class SiteKeys:
    def __init__(self, base: str) -> None:
        self.base = base
        self.active = f"{base}:site:active"
        self.rebuilding = f"{base}:site:rebuilding"
        self.lock = f"{base}:site:rebuild-lock"

    @staticmethod
    def built(namespace: str) -> str:
        return f"{namespace}:site:built"


async def read_namespaces(client: aioredis.Redis, keys: SiteKeys) -> tuple[str, str | None]:
    active, rebuilding = cast(list[bytes | None], await client.mget([keys.active, keys.rebuilding]))
    return (active.decode() if active else keys.base), (rebuilding.decode() if rebuilding else None)


async def woken(event: asyncio.Event, seconds: float) -> None:
    """Wait until `event` is set or `seconds` pass, and let a cancellation through in every case.

    `asyncio.wait_for` (Python 3.11) returns normally when the task is cancelled in the same turn of the loop
    as the event is set, swallowing the cancellation: a batch noting pending lists just as the publisher
    stopped left this loop running, and shutdown waited out its whole grace period. `asyncio.timeout` only turns
    its own expiry into TimeoutError.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class LiveSite:
    def __init__(
        self,
        client: aioredis.Redis,
        base_namespace: str,
        site: SiteConfig,
        make_projector: Callable[[PublisherStore], Projector],
        *,
        poll_seconds: float = 0.25,
    ) -> None:
        self.redis = client
        self.keys = SiteKeys(base_namespace)
        self.site = site
        self.make_projector = make_projector
        self.poll_seconds = poll_seconds
        self.active = base_namespace
        self.rebuilding: str | None = None
        self._projectors: dict[str, Projector] = {}
        self._task: asyncio.Task[None] | None = None
        self.on_switch: list[Callable[[str], Awaitable[None]]] = []
        self.rebuild_from_log: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._rebuild_task: asyncio.Task[None] | None = None
        self.pending = asyncio.Event()
        """Set when a batch noted lists, feeds or sitemaps to render."""
        self._render_task: asyncio.Task[None] | None = None

    def projector(self, namespace: str) -> Projector:
        if namespace not in self._projectors:
            self._projectors[namespace] = self.make_projector(PublisherStore(self.redis, namespace))
        return self._projectors[namespace]

    @property
    def store(self) -> PublisherStore:
        return self.projector(self.active).store

    def writers(self) -> list[Projector]:
        names = [self.active] + ([self.rebuilding] if self.rebuilding and self.rebuilding != self.active else [])
        return [self.projector(n) for n in names]

    async def start(self, *, log_has_history: Callable[[], Awaitable[bool]]) -> None:
        await self.refresh()
        if not await self.redis.exists(SiteKeys.built(self.active)):
            if await log_has_history():
                log.warning("site namespace is empty but the log is not: rebuilding", namespace=self.active)
                self._start_rebuild()
            else:
                await self.redis.set(SiteKeys.built(self.active), "1")
        await self.projector(self.active).write_site_pages()
        self._task = asyncio.create_task(self._watch(), name="site-namespace-watch")
        self._render_task = asyncio.create_task(self._render_pending(), name="site-pending-renders")

    async def stop(self) -> None:
        for task in (self._task, self._render_task, self._rebuild_task):
            await cancel_and_wait(task)

    async def refresh(self) -> None:
        active, rebuilding = await read_namespaces(self.redis, self.keys)
        self.rebuilding = rebuilding
        if active != self.active:
            log.info("readers switched to a rebuilt site", old=self.active, new=active)
            self.active = active
            self._projectors = {n: p for n, p in self._projectors.items() if n in (active, rebuilding)}
            for callback in self.on_switch:
                await callback(active)

    def _start_rebuild(self) -> None:
        if self.rebuild_from_log is None or (self._rebuild_task and not self._rebuild_task.done()):
            return
        self._rebuild_task = asyncio.create_task(self.rebuild_from_log(), name="site-self-rebuild")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
                if not self.rebuilding and not await self.redis.exists(SiteKeys.built(self.active)):
                    log.warning("site marker missing (Redis flushed?): rebuilding from the log")
                    self._start_rebuild()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("namespace watch failed", error=repr(exc))

    async def _render_pending(self, *, poll_seconds: float = 1.0, news_every_seconds: float = 60.0) -> None:
        """Lists, feeds and sitemaps, rendered apart from the consumers: woken by a batch that noted some, and
        every `poll_seconds` for what another replica noted and could not render (it stopped, say). The news
        sitemap is also rendered on a clock, so stories leave it when they turn 48 hours old."""
        news_due = 0.0
        while True:
            await woken(self.pending, poll_seconds)
            self.pending.clear()
            try:
                for projector in self.writers():
                    await projector.render_pending()
                if time.monotonic() >= news_due:
                    await self.projector(self.active).render_news_sitemap()
                    news_due = time.monotonic() + news_every_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("rendering lists failed; retrying", error=repr(exc))
                await asyncio.sleep(poll_seconds)
