"""One record in, the state of one site namespace changed and its dirty pages noted.

Shared by the live consumer (`handlers.py`) and the rebuild (`rebuild.py`), so a rebuilt site is made by exactly
the code that keeps the live one fresh.
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord
from pydantic import TypeAdapter

from services.publisher.project import Dirty, Projector
from shared import topics
from shared.contracts import (
    ArticleEvent,
    ArticleKilled,
    ArticlePublished,
    ArticleWithdrawn,
    CommentDecided,
    RelatedLinksUpdated,
)
from shared.kafka import parse_event, record_headers
from shared.logging import get_logger, log_context

ARTICLE_EVENT: TypeAdapter[ArticlePublished | ArticleWithdrawn | ArticleKilled] = TypeAdapter(ArticleEvent)
RELATED_EVENT = TypeAdapter(RelatedLinksUpdated)
COMMENT_EVENT = TypeAdapter(CommentDecided)
log = get_logger(__name__)


def topic_kind(topic: str) -> str:
    for name, kind in ((topics.ARTICLES, "articles"), (topics.RELATED, "related"),
                       (topics.COMMENT_DECISIONS, "comments")):
        if topic.endswith(name):
            return kind
    raise ValueError(f"the publisher does not consume {topic}")


async def apply_record(
    record: ConsumerRecord[Any, Any], projector: Projector, dirty: Dirty, *, live: bool = True
) -> str:
    """`live=False` for a replay: no per-article journey (log line, freshness sample) for old events."""
    kind = topic_kind(record.topic)
    if kind == "articles":
        event = parse_event(ARTICLE_EVENT, record)
        headers = record_headers(record)
        with log_context(guid=event.guid, receipt=headers.get("receipt"), trace_id=headers.get("trace-id")):
            if isinstance(event, ArticlePublished):
                outcome = await projector.article_published(event, dirty)
            elif isinstance(event, ArticleKilled):
                outcome = await projector.article_killed(event, dirty)
            else:
                outcome = await projector.article_withdrawn(event, dirty)
            if outcome == "processed" and live:
                dirty.journey(event.guid, headers)
            return outcome
    if kind == "related":
        related = parse_event(RELATED_EVENT, record)
        return await projector.related_updated(related, record.offset, dirty)
    comment = parse_event(COMMENT_EVENT, record)
    return await projector.comment_decided(comment, dirty)
