"""What moderation needs to know about articles: known, killed, withheld, when published, which section, and
the headline and URL a moderator reads a comment against.

Kept in Redis from the articles topic (fenced by version), so every comments replica sees the same state and
a flushed Redis is rebuilt by replaying the topic. The same hash carries two pre-moderation flags, which the
fenced script never touches: `premoderated`, a moderator's, and `surge`, surge protection's. Each has one writer,
so a surge ending never lifts the pre-moderation a moderator asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from aiokafka import ConsumerRecord
from pydantic import TypeAdapter

from shared.contracts import ArticleEvent, ArticleKilled, ArticlePublished, ArticleWithdrawn
from shared.kafka import Outbox, parse_event
from shared.redis import hgetall, tagged

ARTICLE_EVENT: TypeAdapter[ArticlePublished | ArticleWithdrawn | ArticleKilled] = TypeAdapter(ArticleEvent)

SAVE_ARTICLE = """
-- KEYS: article   ARGV: version, status, published_at, section, headline, url_path
local rank = {withheld = 0, embargoed = 0, published = 1, killed = 2}
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'killed' then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local version = tonumber(ARGV[1])
if version < current then return 0 end
if version == current and rank[ARGV[2]] <= (rank[status] or -1) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'status', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'published_at', ARGV[3], 'section', ARGV[4], 'headline', ARGV[5], 'url_path', ARGV[6])
end
return 1
"""


@dataclass(frozen=True)
class ArticleState:
    guid: str
    status: str  # published | withheld | embargoed | killed
    published_at: datetime | None
    section: str
    premoderated: bool = False
    """Set by a moderator."""
    surge: bool = False
    """Set by surge protection while the article's comments surge."""
    headline: str = ""
    url_path: str = ""
    """As last published ("" for a state stored before they were kept, until the story's next event)."""

    @classmethod
    def from_hash(cls, guid: str, raw: Mapping[bytes, bytes]) -> ArticleState | None:
        """`None` when the article was never seen (a hash holding only a pre-moderation flag included)."""
        status = raw.get(b"status", b"").decode()
        if not status:
            return None
        published = raw.get(b"published_at", b"").decode()
        return cls(
            guid=guid,
            status=status,
            published_at=datetime.fromisoformat(published) if published else None,
            section=raw.get(b"section", b"").decode(),
            premoderated=raw.get(b"premoderated") == b"1",
            surge=raw.get(b"surge") == b"1",
            headline=raw.get(b"headline", b"").decode(),
            url_path=raw.get(b"url_path", b"").decode(),
        )


class ArticleStates:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.redis = client
        self.ns = namespace
        self._save = client.register_script(SAVE_ARTICLE)
        self.on_change: list[Callable[[str], None]] = []
        """Called with the guid after an article's state changed (so cached reads can be dropped)."""

    def key(self, guid: str) -> str:
        return tagged(self.ns, "comments", guid, "article")

    async def get(self, guid: str) -> ArticleState | None:
        return ArticleState.from_hash(guid, await hgetall(self.redis, self.key(guid)))

    async def headlines(self, guids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """(headline, url path) of each article that has them, in one round trip."""
        wanted = sorted(set(guids))
        if not wanted:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for guid in wanted:
                pipe.hmget(self.key(guid), "headline", "url_path")
            replies = await pipe.execute()
        return {
            guid: (headline.decode(), path.decode())
            for guid, (headline, path) in zip(wanted, replies, strict=True)
            if headline and path
        }

    async def on_record(self, record: ConsumerRecord[Any, Any], _: Outbox) -> str:
        return "processed" if await self.apply(record) else "stale"

    async def apply(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Store the article's state from one event; False when it changed nothing (older, or a dead story)."""
        event = parse_event(ARTICLE_EVENT, record)
        args: list[str | int]
        if isinstance(event, ArticlePublished):
            args = [event.version, "published", event.date_published.isoformat(), event.section.code,
                    event.headline, event.url_path]
        elif isinstance(event, ArticleKilled):
            args = [event.version, "killed", "", "", "", ""]
        else:
            args = [event.version, event.reason, "", "", "", ""]
        saved = await self._save(keys=[self.key(event.guid)], args=args)
        for callback in self.on_change:
            callback(event.guid)
        return bool(saved)
