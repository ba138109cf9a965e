"""The publisher's subscriber: article, related and comment events in, pages out.

Every record is applied to each namespace the publisher currently writes (the live one and, while a rebuild
runs, the one being built); the article pages each batch dirtied are rendered once, after the batch, and the
lists, feeds and sitemaps it changed are noted for the site's background renderer (`live.py`).
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from services.publisher.apply import apply_record
from services.publisher.config import PublisherSettings
from services.publisher.live import LiveSite
from services.publisher.project import Dirty
from shared import topics
from shared.kafka import BatchRunner, Outbox, subscribe, topic_name

SERVICE = "publisher"


def register(settings: PublisherSettings, site: LiveSite, runner: BatchRunner) -> None:
    async def on_record(record: ConsumerRecord[Any, Any], outbox: Outbox) -> str:
        dirties: dict[str, Dirty] | None = outbox.scratch.get("dirty")
        if dirties is None:
            dirties = outbox.scratch["dirty"] = {}
            batch_dirties = dirties

            async def render() -> None:
                for namespace, dirty in batch_dirties.items():
                    projector = site.projector(namespace)
                    await projector.flush_articles(dirty)
                    if await projector.note_pending(dirty):
                        site.pending.set()

            outbox.then(render)
        outcome = "processed"
        for projector in site.writers():
            dirty = dirties.setdefault(projector.store.ns, Dirty())
            outcome = await apply_record(record, projector, dirty)
        return outcome

    # One consumer per input: a burst of article events or back-filled links must not queue moderation
    # decisions behind it (they reach the page within a second), nor the other way round.
    subscribe(
        runner, {topic_name(settings, topics.ARTICLES): on_record}, member="articles",
        description="Article events re-render the article's page, its lists, feeds and sitemaps.",
    )
    subscribe(
        runner, {topic_name(settings, topics.RELATED): on_record}, member="related",
        description="Check Also links re-render the page that shows them.",
    )
    subscribe(
        runner, {topic_name(settings, topics.COMMENT_DECISIONS): on_record}, member="comments",
        description="Approved or removed comments re-render their article page; held ones change nothing.",
    )
