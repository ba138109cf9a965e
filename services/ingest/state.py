"""What ingest remembers per story, in Redis: the last version emitted, its URL and whether it was killed.

This is derived state: every field can be rebuilt from the articles topic (see `rebuild.py`). Writes are
fenced by version in a script, so two replicas, or a replay, can only move a story forward.

Keys (namespace `bs`): `bs:ingest:{guid}` hash; `bs:ingest:path:{path}` → guid (URL uniqueness);
`bs:ingest:embargo` sorted set of held guids by release instant, `bs:ingest:held:{guid}` the held draft.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis

from shared.redis import CommandBatch, hgetall, pairs, tagged

SAVE_STATE = """
-- KEYS: story   ARGV: version, json fields...
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if redis.call('HGET', KEYS[1], 'status') == 'killed' then return 0 end
if tonumber(ARGV[1]) < current then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], unpack(ARGV, 2))
return 1
"""

CLAIM_RELEASE = """
-- KEYS: embargo zset   ARGV: now, lease_until, limit
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, guid in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], guid) end
return due
"""

FINISH_RELEASE = """
-- KEYS: embargo zset, held hash   ARGV: guid, version
local held_version = redis.call('HGET', KEYS[2], 'version')
if held_version == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


@dataclass
class StoryState:
    guid: str
    version: int = -1
    status: str = ""  # published | withheld | embargoed | killed
    slug: str = ""
    slug_source: str = ""
    url_path: str = ""
    previous_paths: list[str] = field(default_factory=list)
    date_published: str = ""
    story_root: str = ""
    correction: str = ""
    """The last correction notice shown (a `Correction` as JSON), kept on later versions that bring none."""

    def to_fields(self) -> list[Any]:
        """The version, then the other fields as hash field/value pairs (the arguments of SAVE_STATE)."""
        return [
            self.version,
            "status", self.status,
            "slug", self.slug,
            "slug_source", self.slug_source,
            "url_path", self.url_path,
            "previous_paths", json.dumps(self.previous_paths),
            "date_published", self.date_published,
            "story_root", self.story_root,
            "correction", self.correction,
        ]

    @classmethod
    def from_fields(cls, guid: str, raw: dict[bytes, bytes]) -> StoryState | None:
        if not raw:
            return None
        f = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            guid=guid,
            version=int(f.get("version", -1)),
            status=f.get("status", ""),
            slug=f.get("slug", ""),
            slug_source=f.get("slug_source", ""),
            url_path=f.get("url_path", ""),
            previous_paths=json.loads(f.get("previous_paths") or "[]"),
            date_published=f.get("date_published", ""),
            story_root=f.get("story_root", ""),
            correction=f.get("correction", ""),
        )


class IngestStore:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.redis = client
        self.ns = namespace
        self._save = client.register_script(SAVE_STATE)
        self._claim = client.register_script(CLAIM_RELEASE)
        self._finish = client.register_script(FINISH_RELEASE)

    def story_key(self, guid: str) -> str:
        return tagged(self.ns, "ingest", guid)

    def path_key(self, path: str) -> str:
        return f"{self.ns}:ingest:path:{{{path}}}"

    @property
    def embargo_key(self) -> str:
        return f"{self.ns}:ingest:{{embargo}}"

    def held_key(self, guid: str) -> str:
        # Same hash tag as the schedule, so one script can finish a release atomically.
        return f"{self.ns}:ingest:{{embargo}}:held:{guid}"

    async def load(self, guid: str) -> StoryState | None:
        raw = await hgetall(self.redis, self.story_key(guid))
        return StoryState.from_fields(guid, raw)

    async def load_many(self, guids: Sequence[str]) -> dict[str, StoryState | None]:
        """One round trip for a whole batch of drafts."""
        unique = list(dict.fromkeys(guids))
        batch = CommandBatch()
        for guid in unique:
            batch.command("HGETALL", self.story_key(guid), reply=pairs)
        results = await batch.execute(self.redis)
        return {guid: StoryState.from_fields(guid, raw) for guid, raw in zip(unique, results, strict=True)}

    async def save(self, state: StoryState) -> bool:
        return bool(await self._save(keys=[self.story_key(state.guid)], args=state.to_fields()))

    async def save_many(self, states: Sequence[StoryState]) -> None:
        if not states:
            return
        batch = CommandBatch()
        for state in states:
            batch.script(self._save, keys=[self.story_key(state.guid)], args=state.to_fields())
        await batch.execute(self.redis)

    async def claim_path(self, path: str, guid: str) -> bool:
        """First guid to claim a URL keeps it; the same guid may claim it again (idempotent)."""
        owner = await self.redis.set(self.path_key(path), guid, nx=True, get=True)
        return owner is None or cast(bytes, owner).decode() == guid

    async def claim_paths(self, wanted: dict[str, str]) -> dict[str, str]:
        """Claim many URLs at once (path → guid); returns the owner of each path after the attempt."""
        paths = list(wanted)
        batch = CommandBatch()
        for path in paths:
            # SET NX GET (Redis 7): the owner before the attempt, nil when this claim took the URL.
            batch.command("SET", self.path_key(path), wanted[path], "NX", "GET")
        previous = await batch.execute(self.redis)
        return {
            path: wanted[path] if owner is None else owner.decode()
            for path, owner in zip(paths, previous, strict=True)
        }

    async def hand_over_path(self, path: str, guid: str) -> None:
        """`evolvedfrom`: the rewrite takes over the URL of the story it rewrites."""
        await self.redis.set(self.path_key(path), guid)

    # embargo
    async def hold(self, guid: str, version: int, release_at: float, raw: bytes, headers: dict[str, str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.held_key(guid),
                mapping={"version": str(version), "draft": raw, "headers": json.dumps(headers)},
            )
            pipe.zadd(self.embargo_key, {guid: release_at})
            await pipe.execute()

    async def claim_due(self, now: float, lease_seconds: float, limit: int = 50) -> list[str]:
        due = await self._claim(keys=[self.embargo_key], args=[now, now + lease_seconds, limit])
        return [g.decode() for g in due]

    async def held(self, guid: str) -> tuple[int, bytes, dict[str, str]] | None:
        raw = await hgetall(self.redis, self.held_key(guid))
        if not raw:
            return None
        return int(raw[b"version"]), raw[b"draft"], json.loads(raw.get(b"headers", b"{}"))

    async def finish_release(self, guid: str, version: int) -> bool:
        keys = [self.embargo_key, self.held_key(guid)]
        return bool(await self._finish(keys=keys, args=[guid, str(version)]))

    async def drop_hold(self, guid: str) -> None:
        """A newer version that is not embargoed supersedes a pending release."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.embargo_key, guid)
            pipe.delete(self.held_key(guid))
            await pipe.execute()
