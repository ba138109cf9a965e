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
from typing import Generic, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from shared.logging import get_logger
from shared.service import cancel_and_wait

log = get_logger(__name__)

PageFields = dict[bytes, bytes]
T = TypeVar("T")


class PageCache(Generic[T]):
    """Caches `prepare(fields)` of each page; a page missing in Redis is not cached (None).

    Bounded by count and, with `size_of`, by bytes: pages differ tenfold in size (a list against a long story
    with its comments), and a crawler walking the archive fills the cache with whatever it reads.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        key_prefix: str,
        fetch: Callable[[str], Awaitable[PageFields]],
        prepare: Callable[[PageFields], T],
        *,
        max_entries: int = 50_000,
        max_bytes: int | None = None,
        size_of: Callable[[T], int] | None = None,
        fetch_timeout: float | None = None,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.fetch_from_redis = fetch
        self.prepare = prepare
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.fetch_timeout = fetch_timeout
        """Seconds a read from Redis may take; past it every reader waiting for the page gets TimeoutError."""
        self.entries: OrderedDict[str, T] = OrderedDict()
        self.sizes: dict[str, int] = {}
        self.bytes = 0
        self.in_flight: dict[str, int] = {}
        self.fetching: dict[str, asyncio.Future[T | None]] = {}
        self.invalidated_during_fetch: set[str] = set()
        self.enabled = False
        self.invalidations = 0
        self._task: asyncio.Task[None] | None = None
        self._connections: list[Connection] = []
        self._retry_delay = 0.05
        self._last_message = 0.0

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

    def peek(self, path: str) -> T | None:
        """The cached page, without waiting; None when it must be fetched."""
        return self.entries.get(path) if self.enabled else None

    async def get(self, path: str) -> T | None:
        if self.enabled:
            hit = self.entries.get(path)
            if hit is not None:
                return hit
        waiting = self.fetching.get(path)
        if waiting is not None:  # one fetch per page however many readers miss it at once
            return await asyncio.shield(waiting)
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self.fetching[path] = future
        try:
            result = await self._fetch(path)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else has to
            raise
        else:
            future.set_result(result)
        finally:
            del self.fetching[path]
        return result

    async def _fetch(self, path: str) -> T | None:
        self.in_flight[path] = self.in_flight.get(path, 0) + 1
        try:
            fields = await asyncio.wait_for(self.fetch_from_redis(path), self.fetch_timeout)
        finally:
            remaining = self.in_flight[path] - 1
            if remaining:
                self.in_flight[path] = remaining
            else:
                del self.in_flight[path]
        if not fields:
            return None
        prepared = self.prepare(fields)
        if self.enabled:
            if path in self.invalidated_during_fetch:
                if path not in self.in_flight:
                    self.invalidated_during_fetch.discard(path)
            else:
                self._keep(path, prepared)
        return prepared

    def _keep(self, path: str, prepared: T) -> None:
        self._forget(path)
        self.entries[path] = prepared
        if self.size_of is not None:
            size = self.sizes[path] = self.size_of(prepared)
            self.bytes += size
        # Oldest first: a bounded cache, refilled on demand.
        while len(self.entries) > self.max_entries or (self.max_bytes is not None and self.bytes > self.max_bytes):
            oldest = next(iter(self.entries))
            self._forget(oldest)

    def _forget(self, path: str) -> None:
        if self.entries.pop(path, None) is not None:
            self.bytes -= self.sizes.pop(path, 0)

    def invalidate(self, path: str) -> None:
        self._forget(path)
        if path in self.in_flight:
            self.invalidated_during_fetch.add(path)
        self.invalidations += 1

    def clear(self) -> None:
        self.entries.clear()
        self.sizes.clear()
        self.bytes = 0
        self.invalidated_during_fetch.update(self.in_flight)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="page-cache-invalidation")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
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

    def _connection(self) -> Connection:
        kwargs = {k: v for k, v in self.client.connection_pool.connection_kwargs.items() if k != "connection_class"}
        # The channel is idle for as long as nothing changes: no read timeout, no health-check PINGs from the
        # client library; liveness is checked by `_heartbeat` instead.
        # RESP2 on purpose: invalidations then arrive as plain pub/sub messages on `__redis__:invalidate`.
        kwargs.update(socket_timeout=None, health_check_interval=0, socket_keepalive=True, protocol=2)
        return Connection(**kwargs)

    async def _heartbeat(self, listener: Connection) -> None:
        """A PING through the subscribed connection every 0.5 s; if nothing comes back for 1.5 s the channel is
        presumed dead and caching stops, so a silently broken connection cannot leave stale pages in memory."""
        while True:
            await listener.send_command("PING")
            await asyncio.sleep(0.5)
            if asyncio.get_running_loop().time() - self._last_message > 1.5:
                self.enabled = False
                self.clear()
                await listener.disconnect()
                return

    async def _listen(self) -> None:
        listener = self._connection()
        tracker = self._connection()
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
        self._last_message = asyncio.get_running_loop().time()
        heartbeat = asyncio.create_task(self._heartbeat(listener))
        log.info("page cache on, invalidated by Redis", prefix=self.key_prefix)
        try:
            while True:
                message = await listener.read_response()
                self._last_message = asyncio.get_running_loop().time()
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
        finally:
            heartbeat.cancel()
