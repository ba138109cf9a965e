"""The publisher's subscribers: article, related and comment events in, pages out (see `project.py`)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from aiokafka import ConsumerRecord
from pydantic import TypeAdapter

from services.publisher.config import PublisherSettings
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
from shared.kafka import BatchRunner, Outbox, parse_event, record_headers, subscribe, topic_name
from shared.metrics import FRESHNESS_SECONDS

SERVICE = "publisher"
ARTICLE_EVENT: TypeAdapter[ArticlePublished | ArticleWithdrawn | ArticleKilled] = TypeAdapter(ArticleEvent)


def dirty_of(outbox: Outbox, projector: Projector) -> Dirty:
    """One `Dirty` per batch, rendered once after the batch is processed."""
    dirty: Dirty | None = outbox.scratch.get("dirty")
    if dirty is None:
        dirty = outbox.scratch["dirty"] = Dirty()

        async def render() -> None:
            await projector.flush(dirty)

        outbox.then(render)
    return dirty


def register(settings: PublisherSettings, projector: Projector, runner: BatchRunner) -> None:
    related_adapter = TypeAdapter(RelatedLinksUpdated)
    comment_adapter = TypeAdapter(CommentDecided)

    async def on_article_record(record: ConsumerRecord[Any, Any], outbox: Outbox) -> str:
        event = parse_event(ARTICLE_EVENT, record)
        dirty = dirty_of(outbox, projector)
        headers = record_headers(record)
        with structlog.contextvars.bound_contextvars(
            guid=event.guid, receipt=headers.get("receipt"), trace_id=headers.get("trace-id")
        ):
            if isinstance(event, ArticlePublished):
                outcome = await projector.article_published(event, dirty)
            elif isinstance(event, ArticleKilled):
                outcome = await projector.article_killed(event, dirty)
            else:
                outcome = await projector.article_withdrawn(event, dirty)
            received_at = headers.get("received-at")
            if outcome == "processed" and received_at:
                FRESHNESS_SECONDS.labels(SERVICE).observe(max(0.0, time.time() - float(received_at)))
            structlog.get_logger(__name__).info(
                "article event applied", kind=event.event, version=event.version, outcome=outcome
            )
            return outcome

    async def on_related_record(record: ConsumerRecord[Any, Any], outbox: Outbox) -> str:
        event = parse_event(related_adapter, record)
        with structlog.contextvars.bound_contextvars(guid=event.guid):
            return await projector.related_updated(event, record.offset, dirty_of(outbox, projector))

    async def on_comment_record(record: ConsumerRecord[Any, Any], outbox: Outbox) -> str:
        event = parse_event(comment_adapter, record)
        with structlog.contextvars.bound_contextvars(guid=event.article_guid, comment=event.id):
            return await projector.comment_decided(event, dirty_of(outbox, projector))

    subscribe(
        runner,
        {
            topic_name(settings, topics.ARTICLES): on_article_record,
            topic_name(settings, topics.RELATED): on_related_record,
            topic_name(settings, topics.COMMENT_DECISIONS): on_comment_record,
        },
        description="Article events, Check Also links and comment decisions re-render every page that shows them.",
    )
