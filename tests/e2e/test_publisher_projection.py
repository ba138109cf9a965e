"""The projector on the real Redis: rewrites met before their origin, and kills reaching every Check Also
without the related service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from services.publisher.project import Dirty, Projector, redirect_path
from services.publisher.rebuild import drop_namespace, page_fingerprints
from services.publisher.site import SiteConfig
from services.publisher.store import PublisherStore, page_body
from shared.contracts import (
    ArticleKilled,
    ArticlePublished,
    ArticleWithdrawn,
    RelatedLink,
    RelatedLinksUpdated,
    Term,
)
from tests.unit.test_render import make_article, make_comment

SITE = SiteConfig(name="Broadsheet", base_url="https://news.example", tagline="News", page_size=20)
SECTION = Term(code="world", name="World")

Event = ArticlePublished | ArticleKilled | ArticleWithdrawn | tuple[RelatedLinksUpdated, int]


@pytest.fixture
async def client(infra: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(infra["redis"])
    namespaces: list[str] = []
    redis.test_namespaces = namespaces  # type: ignore[attr-defined]
    try:
        yield redis
    finally:
        for namespace in namespaces:
            await drop_namespace(redis, namespace)
        await redis.aclose()


def new_projector(client: aioredis.Redis) -> Projector:
    namespace = f"tpubfix{uuid.uuid4().hex[:8]}"
    client.test_namespaces.append(namespace)  # type: ignore[attr-defined]
    return Projector(PublisherStore(client, namespace), SITE, form_secret="test-secret")


async def apply(projector: Projector, events: Sequence[Event]) -> None:
    """Each event in its own batch, rendered as the live consumer renders it (article pages, then lists)."""
    for event in events:
        dirty = Dirty()
        if isinstance(event, tuple):
            await projector.related_updated(event[0], event[1], dirty)
        elif isinstance(event, ArticlePublished):
            await projector.article_published(event, dirty)
        elif isinstance(event, ArticleKilled):
            await projector.article_killed(event, dirty)
        else:
            await projector.article_withdrawn(event, dirty)
        await projector.flush(dirty)


async def redirect_of(projector: Projector, path: str) -> str | None:
    page = await projector.store.read_page(path)
    if not page:
        return None
    assert int(page[b"status"]) == 301, (path, page[b"status"])
    return page[b"loc"].decode()


async def status_of(projector: Projector, path: str) -> int | None:
    page = await projector.store.read_page(path)
    return int(page[b"status"]) if page else None


# --- defect: a rewrite ingested before the story it rewrites -----------------------------------------------

ORIGIN_PATH = "/world/2024/03/20/the-front-line"
REWRITE_PATH = "/world/2024/03/21/the-front-line-moves"


def origin_and_rewrite() -> tuple[ArticlePublished, ArticlePublished]:
    """What ingest gives when the rewrite arrives first: it cannot inherit a URL it has not seen, so the two
    stories have paths of their own."""
    origin = make_article(guid="an-o", url_path=ORIGIN_PATH, slug="the-front-line", section=SECTION,
                          previous_paths=["/world/2024/03/20/front-line-draft"], story_root="an-o")
    rewrite = make_article(guid="an-r", url_path=REWRITE_PATH, slug="the-front-line-moves", section=SECTION,
                           evolvedfrom="an-o", story_root="an-o", headline="Update: the front line moves",
                           date_published=datetime(2024, 3, 21, 9, 0, tzinfo=UTC))
    return origin, rewrite


async def test_an_origin_met_after_its_rewrite_leads_to_the_rewrite(client: aioredis.Redis) -> None:
    origin, rewrite = origin_and_rewrite()
    projector = new_projector(client)
    await apply(projector, [rewrite, origin])

    assert await status_of(projector, REWRITE_PATH) == 200
    for path in (redirect_path("an-o"), ORIGIN_PATH, "/world/2024/03/20/front-line-draft"):
        assert await redirect_of(projector, path) == REWRITE_PATH, path
    assert await redirect_of(projector, redirect_path("an-r")) == REWRITE_PATH
    await projector.render_pending()
    home = page_body(await projector.store.read_page("/"))
    assert b"Update: the front line moves" in home and origin.headline.encode() not in home


async def test_the_origins_redirects_follow_the_rewrite_when_it_moves(client: aioredis.Redis) -> None:
    origin, rewrite = origin_and_rewrite()
    moved = rewrite.model_copy(update={
        "version": rewrite.version + 1, "url_path": "/world/2024/03/21/the-front-line-holds",
        "previous_paths": [REWRITE_PATH],
    })
    projector = new_projector(client)
    await apply(projector, [rewrite, origin, moved, rewrite])  # the last: an old version redelivered
    for path in (redirect_path("an-o"), ORIGIN_PATH):
        assert await redirect_of(projector, path) == "/world/2024/03/21/the-front-line-holds", path
    assert await redirect_of(projector, REWRITE_PATH) == "/world/2024/03/21/the-front-line-holds"


async def test_a_rewrite_that_inherited_the_url_still_owns_it(client: aioredis.Redis) -> None:
    """The usual order: the rewrite keeps its origin's URL, and the origin's redirects lead to it."""
    origin, _ = origin_and_rewrite()
    rewrite = make_article(guid="an-r", url_path=ORIGIN_PATH, slug="the-front-line", section=SECTION,
                           evolvedfrom="an-o", story_root="an-o", headline="Update: the front line moves",
                           previous_paths=["/world/2024/03/20/front-line-draft"])
    for order in ((origin, rewrite), (rewrite, origin)):
        projector = new_projector(client)
        await apply(projector, order)
        assert b"Update: the front line moves" in page_body(await projector.store.read_page(ORIGIN_PATH))
        assert await redirect_of(projector, redirect_path("an-o")) == ORIGIN_PATH
        assert await redirect_of(projector, "/world/2024/03/20/front-line-draft") == ORIGIN_PATH


# --- defect: a kill reaches every Check Also, even with the related service stopped ------------------------


def story(guid: str, day: int, headline: str) -> ArticlePublished:
    return make_article(guid=guid, url_path=f"/world/2024/03/{day:02d}/{guid}", slug=guid, section=SECTION,
                        headline=headline, story_root=guid,
                        date_published=datetime(2024, 3, day, 9, 0, tzinfo=UTC))


def links_of(guid: str, *targets: ArticlePublished) -> RelatedLinksUpdated:
    return RelatedLinksUpdated(guid=guid, article_version=7, links=[
        RelatedLink(guid=t.guid, url_path=t.url_path, headline=t.headline, excerpt=f"Excerpt of {t.guid}", score=0.9)
        for t in targets
    ])


X = story("story-x", 20, "Harbour strike enters its second week")
Y = story("story-y", 19, "Dockers vote on the pay offer")
Z = story("story-z", 18, "Port traffic halves")


async def check_also_of(projector: Projector, article: ArticlePublished) -> bytes:
    page = await projector.store.read_page(article.url_path)
    assert int(page[b"status"]) == 200
    return page_body(page)


@pytest.mark.parametrize("take_down", ["killed", "withdrawn"])
async def test_a_story_taken_down_leaves_every_check_also_without_the_related_service(
    client: aioredis.Redis, take_down: str
) -> None:
    projector = new_projector(client)
    await apply(projector, [Y, Z, X, (links_of(X.guid, Y, Z), 1)])
    body = await check_also_of(projector, X)
    assert b'data-guid="story-y"' in body and b"Dockers vote on the pay offer" in body

    # The related service is stopped: no new links for X ever arrive.
    gone = (ArticleKilled(guid=Y.guid, version=8, url_path=Y.url_path) if take_down == "killed"
            else ArticleWithdrawn(guid=Y.guid, version=8, url_path=Y.url_path))
    await apply(projector, [gone])
    body = await check_also_of(projector, X)
    assert b'data-guid="story-y"' not in body and b"Dockers vote on the pay offer" not in body
    assert b"Excerpt of story-y" not in body and Y.url_path.encode() not in body
    assert b'data-guid="story-z"' in body


async def test_links_met_before_their_target_show_once_it_is_published(client: aioredis.Redis) -> None:
    """The related topic and the articles topic are read by different consumers: links can be applied before
    the story they point at. They are left out until it is published, then the page shows them."""
    projector = new_projector(client)
    await apply(projector, [X, (links_of(X.guid, Y), 1)])
    assert b'data-guid="story-y"' not in await check_also_of(projector, X)
    await apply(projector, [Y])
    assert b'data-guid="story-y"' in await check_also_of(projector, X)


async def test_the_reverse_index_forgets_pages_that_no_longer_link(client: aioredis.Redis) -> None:
    projector = new_projector(client)
    await apply(projector, [Y, Z, X, (links_of(X.guid, Y), 1), (links_of(X.guid, Z), 2)])
    assert await projector.store.linked_from(Y.guid) == []
    assert await projector.store.linked_from(Z.guid) == [X.guid]


async def test_kills_and_late_links_give_the_same_site_in_any_order(client: aioredis.Redis) -> None:
    """Redis is rebuilt from the log with partitions met in any order: the index and the filter must give the
    same pages whichever comes first."""
    kill = ArticleKilled(guid=Y.guid, version=8, url_path=Y.url_path)
    orders: list[list[Event]] = [
        [Y, Z, X, (links_of(X.guid, Y, Z), 1), kill],
        [(links_of(X.guid, Y, Z), 1), X, kill, Z, Y],
        [kill, X, (links_of(X.guid, Y, Z), 1), Y, Z],
    ]
    sites = []
    for order in orders:
        projector = new_projector(client)
        await apply(projector, order)
        await projector.render_pending()
        body = await check_also_of(projector, X)
        assert b'data-guid="story-y"' not in body and b'data-guid="story-z"' in body
        sites.append(await page_fingerprints(client, projector.store.ns))
    assert sites[0] == sites[1] == sites[2]


async def test_a_page_noted_again_while_the_index_is_pruned_stays_in_it(client: aioredis.Redis) -> None:
    """Pruning reads another article's links, then drops the entry: links stored and noted meanwhile win."""
    projector = new_projector(client)
    store = projector.store
    await apply(projector, [Y, X, (links_of(X.guid, Y), 5)])
    key = store.article_key(Y.guid, "linked_from")
    await store.run_scripts([(store._prune_linked, [key], [X.guid, 3])])  # links read at an older offset
    assert await store.linked_from(Y.guid) == [X.guid]
    await apply(projector, [(links_of(X.guid, Z), 6)])
    assert await store.linked_from(Y.guid) == []


# --- defect: a crash between storing an event's state and writing its pages ---------------------------------


@pytest.mark.parametrize("take_down", ["killed", "withdrawn"])
async def test_a_take_down_delivered_again_after_a_crash_writes_its_pages(
    client: aioredis.Redis, take_down: str
) -> None:
    """The first delivery stored the new state and died before writing the pages; the second one, stale by the
    state, must still write them, or the old page keeps answering 200."""
    projector = new_projector(client)
    await apply(projector, [Y])
    assert await status_of(projector, Y.url_path) == 200
    event = (ArticleKilled(guid=Y.guid, version=8, url_path=Y.url_path) if take_down == "killed"
             else ArticleWithdrawn(guid=Y.guid, version=8, url_path=Y.url_path))
    await projector.store.apply_article(Y.guid, 8, take_down, Y.url_path, "")  # the crashed delivery's first step
    assert await status_of(projector, Y.url_path) == 200
    await apply(projector, [event])
    assert await status_of(projector, Y.url_path) == (410 if take_down == "killed" else 404)
    assert await status_of(projector, redirect_path(Y.guid)) == (410 if take_down == "killed" else 404)


async def test_an_old_take_down_delivered_again_leaves_the_newer_page(client: aioredis.Redis) -> None:
    projector = new_projector(client)
    withdrawn = ArticleWithdrawn(guid=Y.guid, version=8, url_path=Y.url_path)
    back = Y.model_copy(update={"version": 9})
    await apply(projector, [Y, withdrawn, back])
    assert await status_of(projector, Y.url_path) == 200
    await apply(projector, [withdrawn])
    assert await status_of(projector, Y.url_path) == 200


async def test_a_decision_delivered_again_after_a_crash_reaches_the_page(client: aioredis.Redis) -> None:
    projector = new_projector(client)
    await apply(projector, [Y])
    decided = make_comment("c-crash", 5).model_copy(update={"article_guid": Y.guid})
    # The crashed delivery stored the decision and died before rendering.
    await projector.store.apply_comment(Y.guid, decided.id, decided.revision, decided.model_dump_json())
    assert b'id="comment-c-crash"' not in page_body(await projector.store.read_page(Y.url_path))
    dirty = Dirty()
    assert await projector.comment_decided(decided, dirty) == "stale"
    await projector.flush(dirty)
    assert b'id="comment-c-crash"' in page_body(await projector.store.read_page(Y.url_path))
