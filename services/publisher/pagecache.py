"""Pages kept in process memory and invalidated by Redis itself (CLIENT TRACKING, broadcast mode).

A replica answers most requests without a network round trip, yet never serves a page older than Redis holds
for longer than an invalidation message takes to arrive: Redis pushes the name of every changed `page` key to
a dedicated connection, and the entry is dropped. While that connection is down nothing is cached at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from shared.logging import get_logger

log = get_logger(__name__)

PageFields = dict[bytes, bytes]


class PageCache:
    def __init__(
        self,
        client: aioredis.Redis,
        key_prefix: str,
        fetch: Callable[[str], Awaitable[PageFields]],
        *,
        max_entries: int = 50_000,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.fetch_from_redis = fetch
        self.max_entries = max_entries
        self.entries: OrderedDict[str, PageFields] = OrderedDict()
        self.in_flight: dict[str, int] = {}
        self.invalidated_during_fetch: set[str] = set()
        self.enabled = False
        self.invalidations = 0
        self._task: asyncio.Task[None] | None = None
        self._connections: list[Connection] = []
        self._retry_delay = 0.05

    async def retarget(self, key_prefix: str) -> None:
        """Readers moved to another namespace: drop everything and track the new prefix."""
        self.key_prefix = key_prefix
        self.clear()
        self.enabled = False
        for conn in self._connections:
            with contextlib.suppress(Exception):
                await conn.disconnect()

    def key_to_path(self, key: bytes | str) -> str | None:
        text = key.decode() if isinstance(key, bytes) else key
        if not text.startswith(self.key_prefix):
            return None
        # key layout: "{prefix}{path}}"  (prefix ends with "{")
        return text[len(self.key_prefix) : -1]

    async def get(self, path: str) -> PageFields:
        if self.enabled:
            hit = self.entries.get(path)
            if hit is not None:
                self.entries.move_to_end(path)
                return hit
        self.in_flight[path] = self.in_flight.get(path, 0) + 1
        try:
            fields = await self.fetch_from_redis(path)
        finally:
            remaining = self.in_flight[path] - 1
            if remaining:
                self.in_flight[path] = remaining
            else:
                del self.in_flight[path]
        if self.enabled and fields:
            if path in self.invalidated_during_fetch:
                if path not in self.in_flight:
                    self.invalidated_during_fetch.discard(path)
            else:
                self.entries[path] = fields
                if len(self.entries) > self.max_entries:
                    self.entries.popitem(last=False)
        return fields

    def invalidate(self, path: str) -> None:
        self.entries.pop(path, None)
        if path in self.in_flight:
            self.invalidated_during_fetch.add(path)
        self.invalidations += 1

    def clear(self) -> None:
        self.entries.clear()
        self.invalidated_during_fetch.update(self.in_flight)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="page-cache-invalidation")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close_connections()

    async def _close_connections(self) -> None:
        for conn in self._connections:
            with contextlib.suppress(Exception):
                await conn.disconnect()
        self._connections.clear()

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("page cache invalidation channel lost; caching off until it is back", error=repr(exc))
            self.enabled = False
            self.clear()
            await self._close_connections()
            await asyncio.sleep(self._retry_delay)
            self._retry_delay = min(self._retry_delay * 2, 5.0)

    async def _listen(self) -> None:
        kwargs = self.client.connection_pool.connection_kwargs
        listener = Connection(**{k: v for k, v in kwargs.items() if k != "connection_class"})
        tracker = Connection(**{k: v for k, v in kwargs.items() if k != "connection_class"})
        self._connections = [listener, tracker]
        await listener.connect()  # type: ignore[no-untyped-call]
        await tracker.connect()  # type: ignore[no-untyped-call]
        await listener.send_command("CLIENT", "ID")
        listener_id = await listener.read_response()
        await listener.send_command("SUBSCRIBE", "__redis__:invalidate")
        await listener.read_response()
        await tracker.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", "PREFIX", self.key_prefix
        )
        reply = await tracker.read_response()
        if reply not in (b"OK", "OK"):
            raise RuntimeError(f"CLIENT TRACKING refused: {reply!r}")
        self.clear()
        self.enabled = True
        self._retry_delay = 0.05
        log.info("page cache on, invalidated by Redis", prefix=self.key_prefix)
        while True:
            message = await listener.read_response(timeout=None)
            if not isinstance(message, list) or len(message) < 3 or message[0] not in (b"message", "message"):
                continue
            keys = message[2]
            if keys is None:  # Redis flushed everything
                self.clear()
                continue
            for key in keys:
                path = self.key_to_path(key)
                if path is not None:
                    self.invalidate(path)
