"""What moderation needs to know about articles: known, killed, withheld, when published, which section.

Kept in Redis from the articles topic (fenced by version), so every comments replica sees the same state and
a flushed Redis is rebuilt by replaying the topic.
"""

from __future__ import annotations

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
-- KEYS: article   ARGV: version, status, published_at, section
if redis.call('HGET', KEYS[1], 'status') == 'killed' then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'status', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'published_at', ARGV[3], 'section', ARGV[4]) end
return 1
"""


@dataclass(frozen=True)
class ArticleState:
    guid: str
    status: str  # published | withheld | embargoed | killed
    published_at: datetime | None
    section: str


class ArticleStates:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.redis = client
        self.ns = namespace
        self._save = client.register_script(SAVE_ARTICLE)

    def key(self, guid: str) -> str:
        return tagged(self.ns, "comments", guid, "article")

    async def get(self, guid: str) -> ArticleState | None:
        raw = await hgetall(self.redis, self.key(guid))
        if not raw:
            return None
        published = raw.get(b"published_at", b"").decode()
        return ArticleState(
            guid=guid,
            status=raw.get(b"status", b"").decode(),
            published_at=datetime.fromisoformat(published) if published else None,
            section=raw.get(b"section", b"").decode(),
        )

    async def on_record(self, record: ConsumerRecord[Any, Any], _: Outbox) -> str:
        event = parse_event(ARTICLE_EVENT, record)
        args: list[str | int]
        if isinstance(event, ArticlePublished):
            args = [event.version, "published", event.date_published.isoformat(), event.section.code]
        elif isinstance(event, ArticleKilled):
            args = [event.version, "killed", "", ""]
        else:
            args = [event.version, event.reason, "", ""]
        saved = await self._save(keys=[self.key(event.guid)], args=args)
        return "processed" if saved else "stale"
