"""A stack of its own removes its Redis namespace when it ends, and nothing else (benchmarks and tests share the
developer's Redis: a round of the comments benchmark used to leave 80,000 keys behind)."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis.asyncio as aioredis

from tests.support.stack import ServiceStack


async def test_delete_keys_empties_the_namespace_and_spares_its_neighbours(
    infra: dict[str, str], tmp_path: Path
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    stack = ServiceStack(
        kafka=infra["kafka"], redis=infra["redis"], prefix=f"{namespace}.", namespace=namespace, ports={},
        log_dir=tmp_path,
    )
    neighbours = [f"{namespace}x:comments:{{c:1}}", namespace, f"other:{namespace}:page:/x"]
    client = aioredis.Redis.from_url(infra["redis"])
    try:
        mine = {f"{namespace}:comments:{{c:{n}}}": "1" for n in range(2_500)}  # more than one UNLINK's worth
        mine[f"{namespace}:page:/world/a-story"] = "<html>"
        await client.mset(mine)
        await client.mset(dict.fromkeys(neighbours, "keep"))

        removed = await stack.delete_keys()

        assert removed == len(mine)
        assert [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)] == []
        assert await client.exists(*neighbours) == len(neighbours)
    finally:
        await client.delete(*neighbours)
        await client.aclose()
