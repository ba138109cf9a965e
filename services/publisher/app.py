"""The publisher process: keeps the site's pages in Redis from the events, and serves readers from them."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code

from services.publisher.comment_edge import install_comment_edge
from services.publisher.config import PublisherSettings
from services.publisher.handlers import SERVICE, register
from services.publisher.live import LiveSite
from services.publisher.pagecache import PageCache
from services.publisher.rebuild import projector_factory, rebuild_site, site_config
from services.publisher.web import PreparedPage, ReaderApp
from shared import topics
from shared.cli import client_options
from shared.http import ServiceApp
from shared.kafka import committed_offsets, group_id, topic_name
from shared.logging import get_logger
from shared.service import build_runtime

log = get_logger(__name__)
PAGE_READ_SECONDS = 2.0
"""Longest a reader waits for a page from Redis before a 503: a page is one hash read, well under a millisecond."""


def create_app(settings: PublisherSettings | None = None) -> tuple[ServiceApp, ReaderApp]:
    """The ASGI app (lifespan, every route) and the reader it serves cached pages with."""
    settings = settings or PublisherSettings()
    runtime = build_runtime(SERVICE, settings, max_body_bytes=settings.max_form_bytes)
    site = site_config(settings)

    make_projector = projector_factory(settings)

    live = LiveSite(runtime.redis, settings.redis_namespace, site, make_projector)
    register(settings, live, runtime.runner)
    install_comment_edge(runtime, settings, lambda: live.store)

    async def read_page(path: str) -> dict[bytes, bytes]:
        return await live.store.read_page(path)

    cache = PageCache(
        runtime.redis, live.store.page_prefix, read_page, PreparedPage.from_fields,
        max_entries=settings.cache_max_pages, max_bytes=settings.cache_max_bytes, size_of=lambda page: page.size,
        fetch_timeout=PAGE_READ_SECONDS,
    )

    async def retarget(namespace: str) -> None:
        await cache.retarget(live.projector(namespace).store.page_prefix)

    async def rebuild_from_log() -> None:
        try:
            await rebuild_site(settings, runtime.redis, keep_old_seconds=1.0)
        except Exception:
            log.exception("automatic rebuild failed")

    async def log_has_history() -> bool:
        """True when this group already consumed articles: Redis lost the site while the log kept it.

        A new or just restarted broker may not coordinate groups yet (it loads their offsets first): that is
        retried, like any other temporary broker error, rather than read as "never consumed" or ending the
        process."""
        articles = topic_name(settings, topics.ARTICLES)
        delay = 0.2
        for _ in range(60):
            admin = AIOKafkaAdminClient(**client_options(settings))
            try:
                await admin.start()
                described = (await admin.describe_topics([articles]))[0]
                if described["error_code"]:
                    raise for_code(described["error_code"])(f"cannot describe {articles}")
                partitions = [TopicPartition(articles, p["partition"]) for p in described["partitions"]]
                offsets = await committed_offsets(admin, group_id(settings, SERVICE), partitions)
                return any(offset > 0 for offset in offsets.values())
            except (KafkaError, OSError) as exc:
                retriable = getattr(exc, "retriable", True)
                if not retriable:
                    raise
                log.warning("consumer group offsets not readable yet; retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                await admin.close()
        raise RuntimeError("Kafka could not report this group's offsets in time")

    async def start_site() -> None:
        await live.start(log_has_history=log_has_history)
        await retarget(live.active)
        await cache.start()

    # Readers are served from Redis alone: a Kafka outage leaves pages as they were, not gone. The load balancer
    # asks this instead of `/readyz` (which holds Kafka too), so an outage of the pipeline never takes the site
    # down with it; consumer lag and freshness say that pages are going stale.
    runtime.router.add(["GET"], "/readyz/readers", runtime.health.readiness("redis"))

    live.on_switch.append(retarget)
    live.rebuild_from_log = rebuild_from_log
    runtime.before_start.append(start_site)
    runtime.on_shutdown.append(cache.stop)
    runtime.on_shutdown.append(live.stop)
    reader = ReaderApp(cache, site)
    return runtime.app(reader=reader), reader
