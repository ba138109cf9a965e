"""Surge protection across replicas, on the real Redis: only the replica that decides for an article ends its surge.

Two pipelines share one Redis namespace, as two comments replicas do; which one owns the article is what the
consumer's assignment says, given here as `owns`. Alerts go to a recording outbox instead of Kafka.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from services.comments.articles import ArticleStates
from services.comments.config import CommentsSettings
from services.comments.handlers import CommentPipeline
from services.comments.store import CommentStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class RecordingOutbox:
    def __init__(self) -> None:
        self.alerts: list[tuple[str, str]] = []

    async def send(self, target: Any, key: str, value: Any, headers: Any = None) -> None:
        self.alerts.append((key, value.state))

    async def flush(self) -> None:
        pass


def replica(client: aioredis.Redis, ns: str) -> CommentPipeline:
    settings = CommentsSettings(redis_namespace=ns, comments_surge_rate_on=5, comments_surge_calm_minutes=1)
    return CommentPipeline(
        settings, client, ArticleStates(client, ns), CommentStore(client, ns),
        submissions_topic="s", decisions_topic="d", alerts_topic="a",
    )


async def test_a_surge_is_ended_by_its_new_owner_and_left_alone_by_the_old_one(
    redis_namespace: tuple[aioredis.Redis, str],
) -> None:
    client, ns = redis_namespace
    guid = "surging-story"
    first, second = replica(client, ns), replica(client, ns)
    for n in range(8):  # a crowd on the first replica's article
        first.surge.observe(guid, "pending", T0 + timedelta(seconds=n))
    assert first.surge.is_on(guid)
    await first.tick(RecordingOutbox(), now=T0 + timedelta(seconds=10), owns=lambda g: True)  # type: ignore[arg-type]
    assert await client.sismember(f"{ns}:comments:{{surge}}:on", guid)

    # The partition moves to the second replica, which never met the article; the first keeps ticking.
    old_owner, new_owner = RecordingOutbox(), RecordingOutbox()
    for at in (T0 + timedelta(seconds=80), T0 + timedelta(seconds=150)):  # quiet, then calm for over a minute
        await first.tick(old_owner, now=at, owns=lambda g: False)  # type: ignore[arg-type]
        await second.tick(new_owner, now=at, owns=lambda g: True)  # type: ignore[arg-type]
    assert new_owner.alerts == [(guid, "off")]
    assert old_owner.alerts == [], "a replica that lost the article must not end its surge"
    assert first.surge.articles() == []
    assert not await client.sismember(f"{ns}:comments:{{surge}}:on", guid)
    assert await client.get(f"{ns}:comments:{{{guid}}}:surge") is None or not json.loads(
        await client.get(f"{ns}:comments:{{{guid}}}:surge")
    )["on"]
