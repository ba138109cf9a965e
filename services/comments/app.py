"""The comments process: moderation of reader comments, the moderation API and UI.

One consumer reads the articles topic (article state) and the submissions topic (comments, reports and
moderator actions); decisions go to the decisions topic and surge notices to the desk alerts topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from services.comments.api import ModerationApi
from services.comments.articles import ArticleStates
from services.comments.config import CommentsSettings
from services.comments.handlers import CommentPipeline
from services.comments.recovery import CommentsRecovery
from services.comments.store import CommentStore
from services.comments.ui import ModerationUi
from shared import topics
from shared.http import ServiceApp
from shared.kafka import Outbox, partition_for, subscribe, topic_name
from shared.logging import get_logger
from shared.service import build_runtime, cancel_and_wait

SERVICE = "comments"
log = get_logger(__name__)


def create_app(settings: CommentsSettings | None = None) -> ServiceApp:
    settings = settings or CommentsSettings()
    runtime = build_runtime(SERVICE, settings)
    articles = ArticleStates(runtime.redis, settings.redis_namespace)
    store = CommentStore(runtime.redis, settings.redis_namespace)
    submissions = topic_name(settings, topics.COMMENT_SUBMISSIONS)
    articles_topic = topic_name(settings, topics.ARTICLES)
    pipeline = CommentPipeline(
        settings, runtime.redis, articles, store,
        submissions_topic=submissions,
        decisions_topic=topic_name(settings, topics.COMMENT_DECISIONS),
        alerts_topic=topic_name(settings, topics.DESK_ALERTS),
    )
    recovery = CommentsRecovery(settings, store, articles, pipeline.hasher, pipeline.spam_model)
    runtime.before_start.append(recovery.ensure)
    runtime.health.checks["state"] = recovery.ready

    async def prepare(records: Sequence[ConsumerRecord[Any, Any]], _: Outbox) -> None:
        await recovery.ensure()  # a Redis restarted empty is rebuilt from the log before anything is decided
        await pipeline.prepare(records, submissions)

    subscribe(
        runtime.runner, {articles_topic: articles.on_record, submissions: pipeline.on_record}, prepare=prepare,
        description="Article lifecycle and reader comments, reports and moderator actions: every comment is "
        "decided once, and every decision goes to the decisions topic.",
    )

    ModerationApi(
        store, articles, pipeline.hasher, runtime.broker, submissions, settings.moderation_token.get_secret_value(),
        site_base_url=settings.site_base_url,
    ).install(runtime.router)
    ModerationUi().install(runtime.router)

    ticker: dict[str, asyncio.Task[None]] = {}

    def owns(guid: str) -> bool:
        """Whether this process decides for the article now: the partition its guid hashes to is assigned here."""
        consumer = runtime.runner.consumer
        if consumer is None:
            return False  # nothing consumed yet: no partition is known to be ours
        partitions = consumer.partitions_for_topic(submissions)
        if not partitions:
            return False
        return TopicPartition(submissions, partition_for(guid.encode(), len(partitions))) in consumer.assignment()

    async def tick_forever() -> None:
        while True:
            await asyncio.sleep(settings.comments_surge_tick_seconds)
            try:
                await recovery.ensure()  # a quiet service notices a lost state too, not at the next comment
                await pipeline.tick(Outbox(runtime.broker), owns=owns)
            except Exception as exc:
                log.warning("surge tick failed", error=repr(exc))

    async def start_ticker() -> None:
        ticker["task"] = asyncio.create_task(tick_forever())

    async def stop_ticker() -> None:
        await cancel_and_wait(ticker.pop("task", None))

    runtime.on_startup.append(start_ticker)
    runtime.on_shutdown.insert(0, stop_ticker)
    return runtime.app()
