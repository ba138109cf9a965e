"""Broadsheet's Redis connection (hiredis packing, buffered replies read without a timer) against a real Redis:
every reply is the one redis-py's stock connection returns, and a server that stops answering still times out."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis import HiredisConnection, HiredisSSLConnection, HiredisUnixConnection, make_redis
from shared.settings import ServiceSettings

SCRIPT = "return {ARGV[1], redis.call('INCR', KEYS[1])}"


def client_for(url: str, connection_class: type[Connection]) -> aioredis.Redis:
    pool = aioredis.ConnectionPool.from_url(url, socket_timeout=5)
    pool.connection_class = connection_class
    return aioredis.Redis(connection_pool=pool)


async def replies_of(client: aioredis.Redis, ns: str) -> list[Any]:
    script = client.register_script(SCRIPT)
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(f"{ns}:s", "välue ✓")
        pipe.get(f"{ns}:s")
        pipe.get(f"{ns}:missing")
        pipe.hset(f"{ns}:h", mapping={"a": "1", "b": b"\x00\xff"})
        pipe.hgetall(f"{ns}:h")
        pipe.hmget(f"{ns}:h", ["a", "zz"])
        pipe.incr(f"{ns}:s")  # an error inside the pipeline: not an integer
        pipe.sadd(f"{ns}:set", "x", "y")
        pipe.smismember(f"{ns}:set", ["x", "q"])
        pipe.zadd(f"{ns}:z", {"m": 1.5})
        pipe.zrange(f"{ns}:z", 0, -1, withscores=True)
        pipe.set(f"{ns}:big", b"x" * (2 << 20))
        pipe.strlen(f"{ns}:big")
        for n in range(3000):  # enough replies to arrive over several socket reads
            pipe.hget(f"{ns}:h", "a" if n % 2 else "zz")
        await script(keys=[f"{ns}:n"], args=["arg"], client=pipe)
        return list(await pipe.execute(raise_on_error=False))


def comparable(replies: list[Any]) -> list[Any]:
    return [f"error: {r}" if isinstance(r, ResponseError) else r for r in replies]


async def test_pipeline_replies_match_redis_pys_own_connection(infra: dict[str, str]) -> None:
    stock = client_for(infra["redis"], Connection)
    ours = client_for(infra["redis"], HiredisConnection)
    try:
        first = await replies_of(stock, f"test:conn:{uuid.uuid4().hex[:8]}")
        second = await replies_of(ours, f"test:conn:{uuid.uuid4().hex[:8]}")
        assert isinstance(second[6], ResponseError)
        assert comparable(second) == comparable(first)
        assert second[-1] == [b"arg", 1] and second[12] == 2 << 20
        # plain commands and a raised error outside pipelines
        await ours.set("test:conn:text", "t")
        with pytest.raises(ResponseError):
            await ours.incr("test:conn:text")
        assert await ours.get("test:conn:text") == b"t"
    finally:
        await stock.aclose()
        await ours.aclose()


@contextlib.asynccontextmanager
async def muting_proxy(
    redis_port: int, muted: asyncio.Event, deaf: asyncio.Event | None = None
) -> AsyncIterator[int]:
    """A TCP proxy to Redis that stops passing Redis's replies on once `muted` is set (a hung server), and stops
    reading what the client sends once `deaf` is set (a server whose socket buffer is full)."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                if not replies and deaf is not None and deaf.is_set():
                    await asyncio.sleep(3600)
                data = await reader.read(65536)
                if not data:
                    break
                if replies and muted.is_set():
                    continue
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", redis_port)
        await asyncio.gather(
            pump(client_reader, server_writer, replies=False), pump(server_reader, client_writer, replies=True)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_server_that_stops_answering_still_times_out(infra: dict[str, str]) -> None:
    muted = asyncio.Event()
    redis_port = int(infra["redis"].rsplit(":", 1)[1].split("/")[0])
    async with muting_proxy(redis_port, muted) as port:
        pool = aioredis.ConnectionPool(
            connection_class=HiredisConnection, host="127.0.0.1", port=port, socket_timeout=0.5
        )
        client = aioredis.Redis(connection_pool=pool)
        try:
            assert await client.set("test:conn:mute", "1")
            async with client.pipeline(transaction=False) as pipe:
                pipe.get("test:conn:mute").get("test:conn:mute")
                assert await pipe.execute() == [b"1", b"1"]
            muted.set()
            started = time.monotonic()
            async with client.pipeline(transaction=False) as pipe:
                pipe.get("test:conn:mute").get("test:conn:mute")
                with pytest.raises(RedisTimeoutError):
                    # the outer limit only keeps a lost socket timeout from hanging the suite
                    await asyncio.wait_for(pipe.execute(), 10)
            assert time.monotonic() - started < 3
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("url", "stock_class", "ours"),
    [
        ("redis://127.0.0.1:6379/0", Connection, HiredisConnection),
        ("rediss://127.0.0.1:6380/0", SSLConnection, HiredisSSLConnection),
        ("unix:///run/redis/redis.sock", UnixDomainSocketConnection, HiredisUnixConnection),
    ],
)
def test_make_redis_keeps_the_transport_the_url_names(url: str, stock_class: type[Any], ours: type[Any]) -> None:
    client = make_redis(ServiceSettings(redis_url=url))  # type: ignore[arg-type]
    assert client.connection_pool.connection_class is ours
    assert issubclass(ours, stock_class)


async def test_a_server_that_stops_reading_times_the_write_out(infra: dict[str, str]) -> None:
    muted, deaf = asyncio.Event(), asyncio.Event()
    redis_port = int(infra["redis"].rsplit(":", 1)[1].split("/")[0])
    async with muting_proxy(redis_port, muted, deaf) as port:
        pool = aioredis.ConnectionPool(
            connection_class=HiredisConnection, host="127.0.0.1", port=port, socket_timeout=0.5
        )
        client = aioredis.Redis(connection_pool=pool)
        try:
            assert await client.ping()
            deaf.set()
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError, match="writing"):
                await asyncio.wait_for(client.set("test:conn:deaf", b"x" * (64 << 20)), 10)
            assert time.monotonic() - started < 5
        finally:
            await client.aclose()


async def commands_for_ever(client: aioredis.Redis) -> None:
    while True:
        async with client.pipeline(transaction=False) as pipe:
            for n in range(20):
                pipe.hget("test:conn:cancel", f"f{n}")
            await pipe.execute()
        await client.get("test:conn:cancel")


async def test_a_cancelled_task_stops_wherever_the_cancel_lands(infra: dict[str, str]) -> None:
    """redis-py's own write (asyncio.wait_for on Python 3.11) loses a cancellation that lands as a write
    completes; the task then carries on, which kept a stopping publisher alive through its grace period."""
    client = make_redis(ServiceSettings(redis_url=infra["redis"]))  # type: ignore[arg-type]
    carried_on = 0
    try:
        for n in range(150):
            task = asyncio.create_task(commands_for_ever(client))
            await asyncio.sleep((n % 50) * 0.00005)  # cancels spread over the sends and reads of the stream
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if not done:
                carried_on += 1
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
    finally:
        await client.aclose()
    assert carried_on == 0, f"{carried_on} of 150 cancelled tasks carried on"


async def test_a_lock_is_released_only_by_its_holder(infra: dict[str, str]) -> None:
    """A rebuild that outlived its lock must not delete the lock another replica took since."""
    from shared.redis import release_lock

    client = aioredis.Redis.from_url(infra["redis"])
    key = f"tlock{uuid.uuid4().hex[:8]}:rebuild-lock"
    try:
        assert await client.set(key, "theirs", nx=True, ex=60)
        assert not await release_lock(client, key, "mine")
        assert await client.get(key) == b"theirs"
        assert await release_lock(client, key, "theirs")
        assert await client.exists(key) == 0
    finally:
        await client.delete(key)
        await client.aclose()
