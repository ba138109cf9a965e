"""The publisher's projector on the real Redis: what a reader can reach mid-batch, and what a redelivery leaves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.publisher.project import Dirty, Projector, redirect_path
from services.publisher.rebuild import drop_namespace, page_fingerprints
from services.publisher.site import SiteConfig
from services.publisher.store import PublisherStore, page_body
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


async def test_lists_are_noted_then_rendered_off_the_consumers_path(projector: Projector) -> None:
    article = make_article()
    dirty = Dirty()
    await projector.article_published(article, dirty)
    await projector.flush_articles(dirty)
    assert await projector.note_pending(dirty)
    assert await status_of(projector, URL_PATH) == 200
    assert await status_of(projector, "/") is None  # noted, not rendered yet

    assert await projector.render_pending() > 0
    home = await projector.store.read_page("/")
    assert int(home[b"status"]) == 200 and article.headline.encode() in page_body(home)
    assert await status_of(projector, "/sitemap.xml") == 200
    assert await projector.store.pending() == {}


async def test_a_note_made_while_rendering_is_not_cleared_by_that_render(projector: Projector) -> None:
    first = make_article()
    dirty = Dirty()
    await projector.article_published(first, dirty)
    await projector.note_pending(dirty)
    read = await projector.store.pending()
    # Another batch notes the home list again while a renderer works from what it read.
    second = make_article(guid="urn:newsml:broadsheet:2024:second", url_path="/russia-ukraine-war/2024/03/21/second",
                          date_published=datetime(2024, 3, 21, 9, 0, tzinfo=UTC))
    later = Dirty()
    await projector.article_published(second, later)
    await projector.note_pending(later)
    cleared = await projector.store.clear_pending({name: value for name, (_, value) in read.items()})
    assert cleared < len(read) and "home" in await projector.store.pending()


async def test_a_rewrite_owns_the_url_whichever_of_the_two_a_replay_meets_first(infra: dict[str, str]) -> None:
    origin = make_article(guid="urn:newsml:broadsheet:2024:origin")
    rewrite = make_article(guid="urn:newsml:broadsheet:2024:rewrite", evolvedfrom=origin.guid,
                           story_root=origin.guid, headline="Update: the front line moves again")
    client = aioredis.Redis.from_url(infra["redis"])
    sites = []
    try:
        for order in ((origin, rewrite), (rewrite, origin)):
            namespace = f"tproj{uuid.uuid4().hex[:8]}"
            projector = Projector(PublisherStore(client, namespace), SITE, form_secret="test-secret")
            for event in order:
                dirty = Dirty()
                await projector.article_published(event, dirty)
                await projector.flush(dirty)
            page = await projector.store.read_page(URL_PATH)
            assert b"Update: the front line moves again" in page_body(page), [e.guid for e in order]
            moved = await projector.store.read_page(redirect_path(origin.guid))
            assert int(moved[b"status"]) == 301 and moved[b"loc"].decode() == URL_PATH
            home = page_body(await projector.store.read_page("/"))
            assert b"Update: the front line moves again" in home and origin.headline.encode() not in home
            sites.append(namespace)
            assert set((await page_fingerprints(client, sites[0])).items()) == set(
                (await page_fingerprints(client, namespace)).items())
    finally:
        for namespace in sites:
            await drop_namespace(client, namespace)
        await client.aclose()


async def test_a_rewrite_met_while_its_origin_is_being_applied_still_takes_the_origin_off_every_list(
    projector: Projector,
) -> None:
    """The origin and its rewrite live on different partitions, so two consumers (or a rebuild's workers) apply
    them at the same time. Here the rewrite supersedes the origin between the origin's state write and its list
    update: the origin must still end up in no list, not left in them without a summary (an invisible entry
    that shifts every archive page after it)."""
    origin = make_article(guid="urn:newsml:broadsheet:2024:origin")
    rewrite = make_article(guid="urn:newsml:broadsheet:2024:rewrite", evolvedfrom=origin.guid,
                           story_root=origin.guid, headline="Update: the front line moves again")
    store = projector.store
    rival = Projector(PublisherStore(store.redis, store.ns), SITE, form_secret="test-secret")
    stored_state = store.apply_article

    async def state_then_rewrite(guid: str, *args: Any, **kwargs: Any) -> Any:
        written = await stored_state(guid, *args, **kwargs)
        if guid == origin.guid:
            await rival.article_published(rewrite, Dirty())
        return written

    store.apply_article = state_then_rewrite  # type: ignore[method-assign]
    await projector.article_published(origin, Dirty())

    for name in ("home", "section:russia-ukraine-war"):
        listed = await store.list_slice(name, 0, -1)
        assert listed.guids == [rewrite.guid], name
    assert await store.summaries([origin.guid]) == [None]


async def test_a_list_page_past_the_end_is_the_same_site_as_no_page(infra: dict[str, str]) -> None:
    """Whether a replay writes a 404 for a list page past the end depends on the order it meets the partitions
    (a list that peaked past a page keeps answering for it); a reader gets the same 404 either way."""
    client = aioredis.Redis.from_url(infra["redis"])
    sites = [f"tproj{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        projectors = [Projector(PublisherStore(client, site), SITE, form_secret="test-secret") for site in sites]
        for projector in projectors:
            dirty = Dirty()
            await projector.article_published(make_article(), dirty)
            await projector.flush(dirty)
        await projectors[0].render_list_page("home", 2)  # past the end: the list has one story
        assert await status_of(projectors[0], "/page/2") == 404 and await status_of(projectors[1], "/page/2") is None
        assert await page_fingerprints(client, sites[0]) == await page_fingerprints(client, sites[1])
        await projectors[0].render_list_page("home", 1)
        assert "/page/1" in await page_fingerprints(client, sites[0])  # a page with stories counts
    finally:
        for site in sites:
            await drop_namespace(client, site)
        await client.aclose()
