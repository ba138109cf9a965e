"""The comments process: moderation of reader comments, the moderation API and UI."""

from __future__ import annotations

from services.comments.articles import ArticleStates
from services.comments.config import CommentsSettings
from shared import topics
from shared.http import ServiceApp
from shared.kafka import subscribe, topic_name
from shared.service import build_runtime

SERVICE = "comments"


def create_app(settings: CommentsSettings | None = None) -> ServiceApp:
    settings = settings or CommentsSettings()
    runtime = build_runtime(SERVICE, settings)
    articles = ArticleStates(runtime.redis, settings.redis_namespace)
    subscribe(
        runtime.runner, {topic_name(settings, topics.ARTICLES): articles.on_record},
        description="Article lifecycle: comments are accepted only on known, live, open articles.",
    )
    return runtime.app()
