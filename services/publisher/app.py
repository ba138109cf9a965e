"""The publisher process: keeps the site's pages in Redis from the events, and serves readers from them."""

from __future__ import annotations

from services.publisher.config import PublisherSettings
from services.publisher.handlers import SERVICE, register
from services.publisher.pagecache import PageCache
from services.publisher.project import Projector
from services.publisher.site import SiteConfig
from services.publisher.store import PublisherStore
from services.publisher.web import ReaderApp
from shared.http import ServiceApp
from shared.service import build_runtime


def create_app(settings: PublisherSettings | None = None) -> ServiceApp:
    settings = settings or PublisherSettings()
    runtime = build_runtime(SERVICE, settings, max_body_bytes=settings.max_form_bytes)
    site = SiteConfig(
        name=settings.site_name,
        base_url=settings.site_base_url,
        tagline=settings.site_tagline,
        page_size=settings.page_size,
    )
    store = PublisherStore(runtime.redis, settings.redis_namespace)
    projector = Projector(store, site)
    register(settings, projector, runtime.runner)
    cache = PageCache(runtime.redis, store.page_key(""), store.read_page, max_entries=settings.cache_max_pages)
    runtime.on_startup.append(cache.start)
    runtime.on_shutdown.append(cache.stop)
    return runtime.app(reader=ReaderApp(cache, site))
