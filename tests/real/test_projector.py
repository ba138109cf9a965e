"""The publisher's projector on the real Redis: what a reader can reach mid-batch, and what a redelivery leaves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.publisher.project import Dirty, Projector, redirect_path
from services.publisher.rebuild import drop_namespace
from services.publisher.site import SiteConfig
from services.publisher.store import PublisherStore
from tests.unit.test_render import URL_PATH, make_article

SITE = SiteConfig(name="Broadsheet", base_url="https://news.example", tagline="News", page_size=20)


@pytest.fixture
async def projector(infra: dict[str, str]) -> AsyncIterator[Projector]:
    client = aioredis.Redis.from_url(infra["redis"])
    namespace = f"tproj{uuid.uuid4().hex[:8]}"
    try:
        yield Projector(PublisherStore(client, namespace), SITE, form_secret="test-secret")
    finally:
        await drop_namespace(client, namespace)
        await client.aclose()


async def status_of(projector: Projector, path: str) -> int | None:
    page = await projector.store.read_page(path)
    return int(page[b"status"]) if page else None


async def test_the_redirect_to_an_article_appears_only_with_its_page(projector: Projector) -> None:
    article = make_article(previous_paths=["/russia-ukraine-war/2024/03/20/old-slug"])
    dirty = Dirty()
    await projector.article_published(article, dirty)
    # Mid-batch (state written, page not rendered yet): no redirect may point at a page that is not there.
    assert await status_of(projector, redirect_path(article.guid)) is None
    assert await status_of(projector, "/russia-ukraine-war/2024/03/20/old-slug") is None

    await projector.flush(dirty)
    assert await status_of(projector, URL_PATH) == 200
    moved = await projector.store.read_page(redirect_path(article.guid))
    assert int(moved[b"status"]) == 301 and moved[b"loc"].decode() == URL_PATH
    assert await status_of(projector, "/russia-ukraine-war/2024/03/20/old-slug") == 301


async def test_a_redelivery_after_a_crash_before_the_flush_still_leaves_page_and_redirect(
    projector: Projector,
) -> None:
    article = make_article()
    await projector.article_published(article, Dirty())  # the consumer dies here: nothing rendered
    assert await status_of(projector, URL_PATH) is None

    again = Dirty()
    assert await projector.article_published(article, again) == "stale"  # the state is already stored
    await projector.flush(again)
    assert await status_of(projector, URL_PATH) == 200
    assert await status_of(projector, redirect_path(article.guid)) == 301
