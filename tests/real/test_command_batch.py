"""`CommandBatch` against a real Redis: the replies a redis-py pipeline gives, scripts the server has forgotten,
error replies, a killed connection and a cancelled batch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from shared.redis import CommandBatch, make_redis, pairs
from shared.settings import ServiceSettings


@pytest.fixture
async def client(infra: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    """One connection in the pool, so every batch of a test reuses the connection the one before it left."""
    redis = make_redis(ServiceSettings(redis_url=infra["redis"]), pool_size=1)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
def ns() -> str:
    return f"test:batch:{uuid.uuid4().hex[:8]}"


def fresh_script(client: aioredis.Redis, body: str) -> AsyncScript:
    """A script the server cannot know yet: its text, and so its SHA, is new."""
    return client.register_script(f"-- {uuid.uuid4().hex}\n{body}")


async def test_replies_match_a_redis_py_pipeline(client: aioredis.Redis, ns: str) -> None:
    await client.hset(f"{ns}:h", mapping={"a": "1", "b": b"\x00\xff"})
    await client.sadd(f"{ns}:set", "x", "y")
    await client.set(f"{ns}:owned", "guid-1")
    script = client.register_script("return {ARGV[1], redis.call('INCR', KEYS[1])}")

    async with client.pipeline(transaction=False) as pipe:
        pipe.hget(f"{ns}:h", "a")
        pipe.hget(f"{ns}:h", "zz")
        pipe.hgetall(f"{ns}:h")
        pipe.hgetall(f"{ns}:nothing")
        pipe.hmget(f"{ns}:h", ["a", "zz", "b"])
        pipe.smismember(f"{ns}:set", ["x", "q"])
        pipe.set(f"{ns}:owned", "guid-2", nx=True, get=True)
        pipe.set(f"{ns}:free", "guid-2", nx=True, get=True)
        pipe.zadd(f"{ns}:z", {"m": 1.5, "n": 2})
        await script(keys=[f"{ns}:n"], args=["arg"], client=pipe)
        expected = await pipe.execute()
    await client.delete(f"{ns}:free", f"{ns}:z", f"{ns}:n")

    batch = CommandBatch()
    batch.command("HGET", f"{ns}:h", "a")
    batch.command("HGET", f"{ns}:h", "zz")
    batch.command("HGETALL", f"{ns}:h", reply=pairs)
    batch.command("HGETALL", f"{ns}:nothing", reply=pairs)
    batch.command("HMGET", f"{ns}:h", "a", "zz", "b")
    batch.command("SMISMEMBER", f"{ns}:set", "x", "q")
    batch.command("SET", f"{ns}:owned", "guid-2", "NX", "GET")
    batch.command("SET", f"{ns}:free", "guid-2", "NX", "GET")
    batch.command("ZADD", f"{ns}:z", 1.5, "m", 2, "n")
    batch.script(script, keys=[f"{ns}:n"], args=["arg"])
    assert len(batch) == 10
    replies = await batch.execute(client)

    assert replies == expected
    assert replies[2] == {b"a": b"1", b"b": b"\x00\xff"} and replies[6] == b"guid-1" and replies[7] is None
    assert await CommandBatch().execute(client) == []


async def test_a_batch_whose_replies_arrive_in_many_reads_gets_each_in_order(client: aioredis.Redis, ns: str) -> None:
    """4 MB of replies come in many socket reads: the replies buffered are taken in one pass, the rest waited for,
    and an error reply among them keeps its place."""
    values = {f"{ns}:v{n}": f"{n:06d}".encode() * 350 for n in range(2_000)}
    await client.mset(values)  # type: ignore[arg-type]
    batch = CommandBatch()
    for key in values:
        batch.command("GET", key)
    batch.command("HGET", next(iter(values)), "field")  # WRONGTYPE
    batch.command("GET", f"{ns}:missing")
    with pytest.raises(ResponseError, match=r"command #2001 \(HGET"):
        await batch.execute(client)
    read_again = CommandBatch()
    for key in values:
        read_again.command("GET", key)
    assert await read_again.execute(client) == list(values.values())
    await client.delete(*values)


async def test_a_script_the_server_forgot_is_loaded_and_its_calls_run(client: aioredis.Redis, ns: str) -> None:
    script = fresh_script(client, "redis.call('RPUSH', KEYS[1], ARGV[1]) return redis.call('LLEN', KEYS[1])")
    batch = CommandBatch()
    batch.script(script, keys=[f"{ns}:log"], args=["a"])
    batch.command("SET", f"{ns}:plain", "done")
    batch.script(script, keys=[f"{ns}:log"], args=["b"])
    assert await batch.execute(client) == [1, b"OK", 2]  # each call ran once, in its order
    assert await client.lrange(f"{ns}:log", 0, -1) == [b"a", b"b"]

    again = CommandBatch()  # now known to the server: sent once, no reload
    again.script(script, keys=[f"{ns}:log"], args=["c"])
    assert await again.execute(client) == [3]


async def test_an_error_reply_is_raised_once_the_whole_batch_ran(client: aioredis.Redis, ns: str) -> None:
    await client.set(f"{ns}:text", "not a number")
    batch = CommandBatch()
    batch.command("SET", f"{ns}:before", "1")
    batch.command("INCR", f"{ns}:text")
    batch.command("SET", f"{ns}:after", "1")
    with pytest.raises(ResponseError, match=r"command #2 \(INCR"):
        await batch.execute(client)
    assert await client.mget(f"{ns}:before", f"{ns}:after") == [b"1", b"1"]
    follow = CommandBatch()  # the same connection, with nothing left unread on it
    follow.command("GET", f"{ns}:text")
    assert await follow.execute(client) == [b"not a number"]


async def test_a_killed_connection_is_replaced_and_the_batch_sent_again(
    client: aioredis.Redis, ns: str, infra: dict[str, str]
) -> None:
    first = CommandBatch()
    first.command("CLIENT", "ID")
    (connection_id,) = await first.execute(client)
    killer = aioredis.Redis.from_url(infra["redis"])
    try:
        assert await killer.client_kill_filter(_id=connection_id) == 1
    finally:
        await killer.aclose()
    batch = CommandBatch()
    batch.command("SET", f"{ns}:k", "v")
    batch.command("CLIENT", "ID")
    reply, new_id = await batch.execute(client)
    assert reply == b"OK" and new_id != connection_id


async def test_a_cancelled_batch_leaves_no_reply_behind(client: aioredis.Redis, ns: str) -> None:
    await client.set(f"{ns}:big", b"x" * 20_000)
    await client.set(f"{ns}:small", "small")
    for delay in (0.0, 0.001, 0.005, 0.02):
        batch = CommandBatch()
        for _ in range(3_000):  # 60 MB of replies: still being read when the cancel lands
            batch.command("GET", f"{ns}:big")
        task = asyncio.create_task(batch.execute(client))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        follow = CommandBatch()
        follow.command("GET", f"{ns}:small")
        assert await follow.execute(client) == [b"small"], f"a stale reply was read after a cancel at {delay}s"
