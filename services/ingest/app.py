"""The ingest process: the drafts consumer, the embargo releaser and the HTTP gateway."""

from __future__ import annotations

from services.ingest.config import IngestSettings
from services.ingest.embargo import EmbargoReleaser
from services.ingest.gateway import Gateway
from services.ingest.handlers import SERVICE, register
from services.ingest.ingestor import Ingestor
from services.ingest.recovery import StateRecovery
from services.ingest.state import IngestStore
from shared import topics
from shared.contracts import ArticlePublished
from shared.http import ServiceApp
from shared.kafka import topic_name
from shared.service import build_runtime


def create_app(settings: IngestSettings | None = None) -> ServiceApp:
    settings = settings or IngestSettings()
    runtime = build_runtime(SERVICE, settings, max_body_bytes=settings.max_draft_bytes)
    store = IngestStore(runtime.redis, settings.redis_namespace)
    articles = runtime.broker.publisher(
        topic_name(settings, topics.ARTICLES),
        title="ingest:articles",
        description="Article lifecycle events (published, withdrawn, killed), key = guid.",
        schema=ArticlePublished,
    )
    ingestor = Ingestor(store, articles)
    recovery = StateRecovery(settings, store)
    register(settings, ingestor, runtime.runner, recovery)
    runtime.before_start.append(recovery.ensure)
    releaser = EmbargoReleaser(
        store, ingestor, runtime.broker,
        poll_seconds=settings.embargo_poll_seconds,
        lease_seconds=settings.embargo_lease_seconds,
        max_bytes=settings.max_draft_bytes,
        ensure_state=recovery.ensure,
    )
    runtime.on_startup.append(releaser.start)
    runtime.on_shutdown.append(releaser.stop)
    Gateway(settings, runtime.broker).install(runtime.router)
    return runtime.app()
