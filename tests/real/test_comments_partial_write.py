"""A batch whose history reached Redis but whose records did not is decided again exactly as before.

The comments pipeline writes a batch in two steps after Kafka acknowledged its decisions: the author's history
and the queues, then the records that mark each comment done. A crash or a Redis failure between the two leaves
the history without the records, and the batch is read again. Read again, each comment meets its own traces
(its text in its author's history, its own time as its author's and its IP's last comment): they must not make
it a duplicate of itself, or a flood.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from aiokafka import ConsumerRecord

from services.comments.articles import ArticleStates
from services.comments.config import CommentsSettings
from services.comments.handlers import CommentPipeline
from services.comments.moderation import normalized_body_hash
from services.comments.store import CommentStore
from shared.contracts.articles import ArticlePublished, Author, Term
from shared.contracts.comments import CommentDecided, CommentSubmitted

SUBMISSIONS = "comments.submissions"
ARTICLES = "articles"


class RecordingOutbox:
    """What a batch's handler needs of an outbox; the decisions it sends are kept instead of produced."""

    def __init__(self) -> None:
        self.scratch: dict[str, Any] = {}
        self.sent: list[Any] = []
        self._effects: list[Callable[[], Awaitable[None]]] = []

    async def send(self, target: Any, key: str, value: Any, headers: Any = None) -> None:
        self.sent.append(value)

    def then(self, effect: Callable[[], Awaitable[None]]) -> None:
        self._effects.append(effect)

    async def flush(self) -> None:
        effects, self._effects = self._effects, []
        for effect in effects:
            await effect()


def record(topic: str, offset: int, key: str, value: bytes) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic, 0, offset, 0, 0, key.encode(), value, None, 0, len(value), [])


async def run_batch(pipeline: CommentPipeline, records: list[ConsumerRecord[Any, Any]]) -> dict[str, str]:
    outbox = RecordingOutbox()
    await pipeline.prepare(records, SUBMISSIONS)
    for item in records:
        await pipeline.on_record(item, outbox)  # type: ignore[arg-type]
    await outbox.flush()
    return {d.id: (d.status, tuple(d.reasons)) for d in outbox.sent if isinstance(d, CommentDecided)}


def pipeline_on(client: aioredis.Redis, ns: str) -> CommentPipeline:
    return CommentPipeline(
        CommentsSettings(redis_namespace=ns), client, ArticleStates(client, ns), CommentStore(client, ns),
        submissions_topic=SUBMISSIONS, decisions_topic="d", alerts_topic="a",
    )


async def published_article(pipeline: CommentPipeline, now: datetime) -> str:
    guid = f"story-{uuid.uuid4().hex[:6]}"
    published = ArticlePublished(
        guid=guid, version=1, url_path=f"/world/{guid}", slug=guid, headline="H", excerpt="e", body_html="<p>x</p>",
        section=Term(code="world", name="World"), authors=[Author(name="J", slug="j")],
        date_published=now - timedelta(hours=1), date_modified=now - timedelta(hours=1), story_root=guid,
    )
    await pipeline.articles.apply(record(ARTICLES, 0, guid, published.model_dump_json().encode()))
    return guid


async def test_a_batch_read_again_after_its_records_were_lost_is_decided_as_before(
    redis_namespace: tuple[aioredis.Redis, str],
) -> None:
    client, ns = redis_namespace
    pipeline = pipeline_on(client, ns)
    store = pipeline.store
    now = datetime.now(UTC)
    guid = await published_article(pipeline, now)
    bodies = ["I read the council report and the figures do not add up.", "Check out my channel, subscribe!!!"]
    submissions = [
        CommentSubmitted(
            id=f"c-{n}", article_guid=guid, author=f"Reader {n}", email=f"reader{n}@example.org", body=body,
            ip=f"198.51.100.{n}", submitted_at=now - timedelta(seconds=5),
        )
        for n, body in enumerate(bodies)
    ]
    batch = [record(SUBMISSIONS, n, guid, s.model_dump_json().encode()) for n, s in enumerate(submissions)]

    first = await run_batch(pipeline, batch)
    assert {status for status, _ in first.values()} == {"pending", "spam"}

    # The records, written last, never arrived: the history and the queues did.
    for submission in submissions:
        await client.delete(store.record_key(submission.id))
    assert await run_batch(pipeline_on(client, ns), batch) == first


async def test_another_comment_of_the_same_author_is_still_a_duplicate_or_a_flood(
    redis_namespace: tuple[aioredis.Redis, str],
) -> None:
    """The traces a comment recognizes as its own are only its own: the same text or a comment within 15 s by
    another comment of the author is refused as before, and so are traces written without a comment id."""
    client, ns = redis_namespace
    pipeline = pipeline_on(client, ns)
    now = datetime.now(UTC)
    guid = await published_article(pipeline, now)
    text = "I read the council report and the figures do not add up."

    def by_ann(comment_id: str, body: str, seconds_ago: float, ip: str = "198.51.100.7") -> CommentSubmitted:
        return CommentSubmitted(
            id=comment_id, article_guid=guid, author="Ann", email="ann@example.org", body=body, ip=ip,
            submitted_at=now - timedelta(seconds=seconds_ago),
        )

    first = by_ann("c-first", text, 10)
    assert (await run_batch(pipeline, [record(SUBMISSIONS, 0, guid, first.model_dump_json().encode())]))[
        "c-first"
    ][0] == "pending"
    again = [by_ann("c-same-text", text, 0, ip="203.0.113.9"), by_ann("c-too-soon", "Another thought.", 0)]
    decided = await run_batch(pipeline, [record(SUBMISSIONS, n + 1, guid, s.model_dump_json().encode())
                                         for n, s in enumerate(again)])
    assert decided["c-same-text"] == ("rejected", ("duplicate",))
    assert decided["c-too-soon"][0] == "rejected" and decided["c-too-soon"][1][0] == "flood"

    # Traces as stored before they named their comment: a bare "1" and a bare time are another comment's.
    store, author = pipeline.store, pipeline.hasher.email("bob@example.org")
    member = f"b:{guid}:{normalized_body_hash(text)}"
    await client.hset(store.author_key(author), member, "1")
    minute = int(now.timestamp() // 60)
    await client.hset(store.recent_key(minute), f"e:{author}", repr(now.timestamp() - 5))
    bob = [
        CommentSubmitted(id="c-bob-text", article_guid=guid, author="Bob", email="bob@example.org", body=text,
                         ip="203.0.113.10", submitted_at=now),
        CommentSubmitted(id="c-bob-soon", article_guid=guid, author="Bob", email="bob@example.org",
                         body="Something new.", ip="203.0.113.11", submitted_at=now),
    ]
    decided = await run_batch(pipeline, [record(SUBMISSIONS, n + 3, guid, s.model_dump_json().encode())
                                         for n, s in enumerate(bob)])
    assert decided["c-bob-text"] == ("rejected", ("duplicate",))
    assert decided["c-bob-soon"] == ("rejected", ("flood", "flood_email"))
