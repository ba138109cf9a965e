"""Redis connections and key naming.

Every key starts with the deployment's namespace, and keys that one script touches share a hash tag
(`{...}`), so the layout works on Redis Cluster as it does on one server.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from shared.settings import ServiceSettings


def make_redis(settings: ServiceSettings, *, pool_size: int = 32) -> aioredis.Redis:
    # A blocking pool: a burst of requests waits a moment for a connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=pool_size,
        timeout=5,
        health_check_interval=15,
        socket_connect_timeout=3,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return aioredis.Redis(connection_pool=pool, decode_responses=False)


def tagged(namespace: str, area: str, entity: str, *parts: str) -> str:
    """`bs:pub:{guid}:state` — the braces make every key of one entity land on one cluster slot."""
    suffix = ":".join(parts)
    return f"{namespace}:{area}:{{{entity}}}" + (f":{suffix}" if suffix else "")


async def redis_ready(client: aioredis.Redis) -> tuple[bool, str]:
    pong = await client.ping()
    return bool(pong), "redis ok"


async def hgetall(client: aioredis.Redis, key: str) -> dict[bytes, bytes]:
    """HGETALL typed for a client without `decode_responses` (redis-py types both modes as one)."""
    result = await client.hgetall(key)
    return cast(dict[bytes, bytes], result)


async def get_bytes(client: aioredis.Redis, key: str) -> bytes | None:
    return cast(bytes | None, await client.get(key))
