"""Keeps the public site in Redis in step with the events: every change re-renders every page that shows it.

The read path never renders; this module is the only writer of pages. For each batch of records the
handlers apply the events to the article state (fenced by version, offset or revision in `store.py`) and mark
what became dirty; `flush` then renders each dirty page once, from the state as stored at that moment, and
writes it fenced by the stamp of that state — so replays, duplicates and stale consumers change nothing.

Lists (home, sections, authors, tags) are sorted sets ranked from the oldest article. Their archive pages are
numbered from the oldest too, so a new story re-renders the front of each list it is in and its newest archive
page, not every page of the list; only a kill or a back-dated story shifts the pages after it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import TypeAdapter

from services.publisher.comment_edge import form_token
from services.publisher.config import PublisherSettings
from services.publisher.render import (
    Summary,
    author_profile,
    feed_path,
    page_path,
    path_segment,
    render_article,
    render_error,
    render_listing,
    render_news_sitemap,
    render_robots,
    render_rss,
    render_sitemap,
    render_sitemap_index,
)
from services.publisher.site import SiteConfig
from services.publisher.store import ListChange, ListState, Page, PublisherStore, http_date
from shared.contracts import (
    ArticleKilled,
    ArticlePublished,
    ArticleWithdrawn,
    CommentDecided,
    RelatedLink,
    RelatedLinksUpdated,
)
from shared.logging import get_logger
from shared.metrics import FRESHNESS_SECONDS, labelled

log = get_logger(__name__)
LINKS = TypeAdapter(list[RelatedLink])
FEED_ITEMS = 30
SITEMAP_CHUNK = 1000
NEWS_WINDOW_SECONDS = 48 * 3600
NEWS_MAX_ITEMS = 1000
ListKind = Literal["home", "section", "author", "tag"]


RECONCILE_ROUNDS = 5
"""How often `reconcile` computes an article's lists again while other consumers keep changing its state."""
SITEMAP_ENTRY = "~sitemap"  # among the pending renders, beside the list names (which never start with ~)


def redirect_path(guid: str) -> str:
    return f"/a/{guid}"


def lists_of(article: ArticlePublished) -> dict[str, str]:
    """The lists an article appears in, with each list's title."""
    names = {"home": "Latest", f"section:{article.section.code}": article.section.name}
    for author in article.authors:
        names[f"author:{author.slug}"] = author.name
    for tag in article.tags:
        names[f"tag:{tag.code}"] = tag.name
    return names


def list_path(name: str) -> str:
    kind, _, key = name.partition(":")
    return "/" if kind == "home" else f"/{kind}/{path_segment(key)}"


def list_kind(name: str) -> ListKind:
    kind = name.partition(":")[0]
    if kind in ("home", "section", "author", "tag"):
        return kind  # type: ignore[return-value]
    raise ValueError(f"unknown list {name!r}")


@dataclass
class Dirty:
    """What one batch changed; rendered once per batch."""

    articles: set[str] = field(default_factory=set)
    lists: dict[str, list[ListChange]] = field(default_factory=dict)
    sitemap_from_rank: int | None = None
    home_longest: int = 0
    """The most stories the home list held in this batch: sitemap files past its new end must answer 404."""
    journeys: dict[str, dict[str, str]] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)
    """Articles whose redirects (`/a/{guid}`, old paths) follow their page: written only once the page is."""

    def journey(self, guid: str, headers: dict[str, str]) -> None:
        """Receipt, trace id and receipt time of the draft behind a change, for the render's log line."""
        self.journeys[guid] = {k: headers[k] for k in ("receipt", "trace-id", "received-at") if k in headers}

    def list_changed(self, name: str, change: ListChange) -> None:
        if not change.changed:
            return
        self.lists.setdefault(name, []).append(change)
        if name == "home":
            ranks = [r for r in (change.old_rank, change.new_rank) if r >= 0]
            low = min(ranks) if ranks else 0
            self.sitemap_from_rank = low if self.sitemap_from_rank is None else min(self.sitemap_from_rank, low)
            self.home_longest = max(self.home_longest, change.count_before, change.count_after)

    def __bool__(self) -> bool:
        return bool(self.articles or self.lists)


class Projector:
    def __init__(self, store: PublisherStore, site: SiteConfig, form_secret: str | None = None) -> None:
        self.store = store
        self.site = site
        self.form_secret = (
            form_secret if form_secret is not None else PublisherSettings().comment_form_secret.get_secret_value()
        )
        self.page_size = site.page_size
        self.gone_page = Page(410, render_error(410, site))
        self.missing_page = Page(404, render_error(404, site))

    # --- events ---------------------------------------------------------------------------------------------

    async def article_published(self, event: ArticlePublished, dirty: Dirty) -> str:
        summary_json = Summary.of(event).to_json()
        stamp, lists, previous, linked = await self.store.apply_article(
            event.guid, event.version, "published", event.url_path, event.model_dump_json(), summary_json
        )
        # When the event was applied, the stored state is the event (and its summary): no need to read it back.
        await self.reconcile(event.guid, dirty, known=(event, lists, previous) if lists is not None else None)
        # Even when stale: a redelivery after a crash before the flush must still leave the redirects.
        dirty.moved.add(event.guid)
        if event.evolvedfrom and event.evolvedfrom != event.guid:
            await self.supersede(event.evolvedfrom, event, dirty)
        if linked and (stamp == 0 or previous is None):
            # It was not shown before (or this is a redelivery, which may have missed this step): pages whose
            # stored links point here left it out of their Check Also and must show it now.
            await self.refresh_linking_pages(event.guid, dirty)
        return "stale" if stamp == 0 else "processed"

    async def supersede(self, origin: str, rewrite: ArticlePublished, dirty: Dirty) -> None:
        """A rewrite (`evolvedfrom`) takes over the story it rewrites, URL included: the origin leaves every
        list, its page is no longer rendered (the rewrite's is at that URL), and `/a/{origin}` leads there.
        Kept in the origin's state, so the outcome is the same in whatever order a replay meets the two.

        The rewrite's own path is kept too: when the rewrite was ingested before its origin, it did not inherit
        the origin's URL, and the origin's `/a/`, path and old paths must lead to where the rewrite lives."""
        await self.store.mark_superseded(origin, rewrite.guid, rewrite.version, rewrite.url_path)
        await self.reconcile(origin, dirty)
        dirty.moved.add(origin)  # its `/a/` redirect is rendered from its state, like every other redirect

    async def article_killed(self, event: ArticleKilled, dirty: Dirty) -> str:
        return await self._take_down(event.guid, event.version, "killed", event.url_path, self.gone_page, dirty)

    async def article_withdrawn(self, event: ArticleWithdrawn, dirty: Dirty) -> str:
        return await self._take_down(
            event.guid, event.version, "withdrawn", event.url_path, self.missing_page, dirty
        )

    async def related_updated(self, event: RelatedLinksUpdated, offset: int, dirty: Dirty) -> str:
        links_json = json.dumps([link.model_dump(mode="json") for link in event.links], sort_keys=True)
        stamp = await self.store.apply_related(event.guid, offset, links_json)
        # Indexed once stored (and even when stale: a crash may have come between the two). A status change
        # met from now on finds this page; one met before is read when this page is rendered.
        targets = sorted({link.guid for link in event.links} - {event.guid})
        await self.store.note_linked_from(event.guid, offset, targets)
        dirty.articles.add(event.guid)
        return "stale" if stamp == 0 else "processed"

    async def comment_decided(self, event: CommentDecided, dirty: Dirty) -> str:
        stamp = await self.store.apply_comment(event.article_guid, event.id, event.revision, event.model_dump_json())
        if stamp == 0:
            # Rendered again even so: a crash between storing the decision and rendering the page would otherwise
            # leave the page without it until something else changed the article. The render is fenced by the
            # page's stamp, so a page already showing it is not written again.
            dirty.articles.add(event.article_guid)
            return "stale"
        if stamp < 0:
            return "held"
        dirty.articles.add(event.article_guid)
        return "processed"

    async def _take_down(
        self, guid: str, version: int, status: str, url_path: str | None, page: Page, dirty: Dirty
    ) -> str:
        stamp, _, _, linked = await self.store.apply_article(guid, version, status, url_path or "", "")
        await self.reconcile(guid, dirty)
        if linked:
            # Even when stale: a redelivery after a crash must still take it off the Check Also of other pages,
            # which does not wait for the related service (it may be down; a kill is a legal matter).
            await self.refresh_linking_pages(guid, dirty)
        meta, article_json, _, _ = await self.store.article_bundle(guid)
        outcome = "processed"
        if stamp == 0:
            # A redelivery: when the story is still in the state this event put it in, its pages are written again
            # under the stamp it got then (a crash may have come between storing the state and these writes; pages
            # already written carry that stamp and are left alone). Otherwise a newer state owns the pages.
            if meta.get("status") != status or meta.get("version") != str(version):
                return "stale"
            stamp, outcome = int(meta.get("stamp") or 0), "stale"
            if stamp <= 0:
                return "stale"
        paths = {p for p in (meta.get("url_path"), url_path) if p}
        if meta.get("superseded_by"):
            paths = set()  # its URL belongs to the rewrite: only `/a/{guid}` is this story's to take down
        elif article_json:
            paths.update(ArticlePublished.model_validate_json(article_json).previous_paths)
        await self.store.write_pages([(path, guid, stamp, page) for path in [*sorted(paths), redirect_path(guid)]])
        return outcome

    async def refresh_linking_pages(self, guid: str, dirty: Dirty) -> None:
        """Re-render the articles whose stored Check Also links point at `guid`, whose status just changed:
        their stamps move on so the new renders are not fenced off by the pages they replace."""
        linking = await self.store.linked_from(guid)
        if linking:
            await self.store.bump_stamps(linking)
            dirty.articles.update(linking)

    async def reconcile(
        self, guid: str, dirty: Dirty, *, known: tuple[ArticlePublished, list[str], bytes | None] | None = None
    ) -> None:
        """Bring the article's list memberships and summary in line with its state as stored now.

        Idempotent, and run even for a stale event: a consumer that crashed between the state write and this
        step finishes the job when the event is delivered again. `known` is the state just written (the
        published article, the lists it was in, the summary its own was stored over), which saves reading it
        back.

        The state and the lists live on different Redis slots, so they cannot change in one script; instead
        the lists are computed again whenever the state moved while they were written. Two consumers meet here
        when a rewrite (one partition) supersedes its origin (another) as the origin itself is applied: left to
        the order of their writes, the origin would stay in its lists without a summary."""
        for _ in range(RECONCILE_ROUNDS):
            used, stored = await self._reconcile_once(guid, dirty, known)
            if used == stored:
                return
            known = None
        log.warning("article state kept changing while its lists were written", guid=guid, rounds=RECONCILE_ROUNDS)

    async def _reconcile_once(
        self, guid: str, dirty: Dirty, known: tuple[ArticlePublished, list[str], bytes | None] | None
    ) -> tuple[ListState, ListState]:
        """One pass of `reconcile`: the state it followed, and the state stored once its writes were done."""
        summary_swapped = known is not None
        previous: bytes | None = None
        if known is not None:
            article: ArticlePublished | None = known[0]
            current = set(known[1])
            previous = known[2]
            used = ListState(str(known[0].version), "published", "")
        else:
            meta, article_json, _, _ = await self.store.article_bundle(guid)
            current = set(json.loads(meta.get("lists") or "[]"))
            published = meta.get("status") == "published" and article_json and not meta.get("superseded_by")
            article = ArticlePublished.model_validate_json(article_json) if published and article_json else None
            used = ListState(meta.get("version", ""), meta.get("status", ""), meta.get("superseded_by", ""))
        if article is not None:
            summary_json = Summary.of(article).to_json()
            if not summary_swapped:
                previous = await self.store.swap_summary(guid, summary_json)
            summary_changed = previous is None or previous.decode() != summary_json
            target = lists_of(article)
            changes, stored = await self.store.update_lists(
                guid, upserts=sorted(target.items()), removals=sorted(current - set(target)),
                score=article.date_published.timestamp(), force=summary_changed,
                lists_after=list(target) if set(target) != current else None,
            )
            for name, change in changes:
                dirty.list_changed(name, change)
            dirty.articles.add(guid)
        else:
            changes, stored = await self.store.update_lists(
                guid, upserts=(), removals=sorted(current), score=0.0, force=False,
                lists_after=[] if current else None,
            )
            for name, change in changes:
                dirty.list_changed(name, change)
            await self.store.swap_summary(guid, None)
        return used, stored

    # --- rendering ------------------------------------------------------------------------------------------

    async def flush(self, dirty: Dirty) -> None:
        """Article pages first (they are what readers wait for), then lists, feeds and sitemaps."""
        limit = asyncio.Semaphore(16)  # overlap Redis round trips; rendering itself is CPU

        async def render(guid: str) -> tuple[str, bool]:
            async with limit:
                return guid, await self.render_article_page(guid, redirects=guid in dirty.moved)

        for guid, shown in await asyncio.gather(*(render(g) for g in sorted(dirty.articles | dirty.moved))):
            journey = dirty.journeys.get(guid)
            if shown and journey:
                received_at = float(journey.get("received-at") or 0)
                freshness = max(0.0, time.time() - received_at) if received_at else None
                if freshness is not None:
                    labelled(FRESHNESS_SECONDS, "publisher").observe(freshness)
                log.info("page rendered", guid=guid, receipt=journey.get("receipt"),
                         trace_id=journey.get("trace-id"), freshness_s=freshness)
        for name, changes in sorted(dirty.lists.items()):
            await self.render_list(name, changes)
        if dirty.sitemap_from_rank is not None:
            await self.render_sitemaps(dirty.sitemap_from_rank, dirty.home_longest)
            await self.render_news_sitemap()

    async def note_pending(self, dirty: Dirty) -> bool:
        """Note in Redis the lists, feeds and sitemaps a batch changed, for `render_pending` to render off the
        consumer's path: the next batch's article pages do not wait for them, and a burst coalesces into one
        render of each list. Noted before the batch is committed, so a crash loses none of them."""
        entries = {name: [0, *sorted(self._dirty_buckets(changes))] for name, changes in dirty.lists.items()}
        if dirty.sitemap_from_rank is not None:
            entries[SITEMAP_ENTRY] = [dirty.sitemap_from_rank, dirty.home_longest]
        await self.store.note_pending(entries)
        return bool(entries)

    async def render_pending(self) -> int:
        """Render what is noted (front page, noted pages and feed of each list; sitemaps), then clear each
        entry unless something was noted to it meanwhile. Any replica may do it; renders are fenced."""
        pending = await self.store.pending()
        for name, (pages, _) in sorted(pending.items()):
            if name == SITEMAP_ENTRY:
                await self.render_sitemaps(pages[0], pages[1])
                await self.render_news_sitemap()
            else:
                await self.render_list_pages(name, {page for page in pages if page > 0})
        await self.store.clear_pending({name: value for name, (_, value) in pending.items()})
        return len(pending)

    async def flush_articles(self, dirty: Dirty) -> None:
        """Only the article pages (and their redirects) of a batch: the lists are the caller's to render."""
        await self.flush(Dirty(articles=dirty.articles, moved=dirty.moved, journeys=dirty.journeys))

    async def render_whole_list(self, name: str, longest: int) -> None:
        """Every page the list has had (those past its end answer 404), its front page and its feed, from the
        list as stored now. A rebuild renders each list once, at the end, with this, instead of after every
        batch: the same bytes the live site reached one batch at a time."""
        await self.render_list_pages(name, set(range(1, self.buckets(longest) + 1)))

    async def render_article_page(self, guid: str, *, redirects: bool = False) -> bool:
        """Render from the state as stored now (read atomically), fenced by the stamp of that state.

        With `redirects`, the article's permanent redirects are written after its page: a reader who follows
        `/a/{guid}` or an old path never lands on a page that does not exist yet. True when the article has a
        page (this state's or a newer one), False when it is not shown."""
        meta, article_json, related_json, comment_jsons = await self.store.article_bundle(guid)
        if meta.get("status") != "published" or article_json is None:
            return False
        article = ArticlePublished.model_validate_json(article_json)
        if meta.get("superseded_by"):
            # Its URL is the rewrite's page now (or, when the rewrite came first, the rewrite lives at a path
            # of its own): its `/a/`, its path and its old paths all lead to where the rewrite lives.
            if redirects:
                target = meta.get("superseded_path") or article.url_path
                paths = [article.url_path, *article.previous_paths]
                await self.store.write_pages(self._redirects(guid, int(meta["stamp"]), target, paths))
            return False
        links: Sequence[RelatedLink] = LINKS.validate_json(related_json) if related_json else []
        if links:
            # Read after the stamp this page is fenced by: a status changed later bumps that stamp and renders
            # the page again, so a kill never waits for the related service to reach every Check Also.
            statuses = await self.store.statuses([link.guid for link in links])
            links = [link for link, status in zip(links, statuses, strict=True) if status == "published"]
        comments = [CommentDecided.model_validate_json(raw) for raw in comment_jsons]
        body = render_article(article, links, comments, self.site)
        body = body.replace(b"__FORM_TOKEN__", form_token(self.form_secret, guid).encode())
        page = Page(200, body, last_modified=http_date(article.date_modified))
        stamp = int(meta["stamp"])
        # The redirects after the page, in the same round trip: Redis runs a pipeline's scripts in order.
        moved = self._redirects(guid, stamp, article.url_path, article.previous_paths) if redirects else []
        # Not written means another consumer (related, comments) already wrote this state or a newer one, which
        # shows this change too: either way the page is there.
        await self.store.write_pages([(article.url_path, guid, stamp, page), *moved])
        return True

    def bucket_of(self, rank: int) -> int:
        return rank // self.page_size + 1

    def buckets(self, count: int) -> int:
        return (count + self.page_size - 1) // self.page_size

    def _dirty_buckets(self, changes: Iterable[ListChange]) -> set[int]:
        pages: set[int] = set()
        for change in changes:
            if change.old_rank == change.new_rank:
                pages.add(self.bucket_of(change.new_rank))
                continue
            low = min(r for r in (change.old_rank, change.new_rank) if r >= 0)
            last = self.buckets(max(change.count_before, change.count_after))
            pages.update(range(max(1, self.bucket_of(low) - 1), last + 1))
        return pages

    async def render_list(self, name: str, changes: Sequence[ListChange]) -> None:
        await self.render_list_pages(name, self._dirty_buckets(changes))

    async def render_list_pages(self, name: str, pages: set[int]) -> None:
        """The front page, these archive pages and (for home and sections) the feed of a list."""
        await self.render_list_front(name)
        for page in sorted(pages):
            await self.render_list_page(name, page)
        if name == "home" or name.startswith("section:"):
            await self.render_feed(name)

    async def _summaries(self, guids: Sequence[str]) -> list[Summary]:
        raws = await self.store.summaries(guids)
        return [Summary.from_json(raw) for raw in raws if raw is not None]

    async def render_list_front(self, name: str) -> None:
        head = await self.store.list_slice(name, -self.page_size, -1)
        items = list(reversed(await self._summaries(head.guids)))
        path = list_path(name)
        older = None
        if head.count > self.page_size:
            older = page_path(path, self.bucket_of(head.count - self.page_size - 1))
        kind, _, key = name.partition(":")
        body = render_listing(
            kind=list_kind(name), title=head.title or "Latest", path=path, items=items, page=0,
            newer_url=None, older_url=older, site=self.site,
            profile=author_profile(key, items) if kind == "author" else None,
        )
        await self._write_list_page(path, name, head.stamp, body, items)

    async def render_list_page(self, name: str, page: int) -> None:
        start = (page - 1) * self.page_size
        chunk = await self.store.list_slice(name, start, start + self.page_size - 1)
        path = list_path(name)
        target = page_path(path, page)
        if not chunk.guids:
            await self.store.write_page(target, f"list:{name}", chunk.stamp, self.missing_page)
            return
        items = list(reversed(await self._summaries(chunk.guids)))
        last = self.buckets(chunk.count)
        newer = page_path(path, page + 1) if page < last else path
        older = page_path(path, page - 1) if page > 1 else None
        body = render_listing(
            kind=list_kind(name), title=chunk.title, path=path, items=items, page=page,
            newer_url=newer, older_url=older, site=self.site,
        )
        await self._write_list_page(target, name, chunk.stamp, body, items)

    async def _write_list_page(self, path: str, name: str, stamp: int, body: bytes, items: Sequence[Summary]) -> None:
        newest = max((i.date_modified for i in items), default=None)
        page = Page(200, body, last_modified=http_date(newest) if newest else "")
        await self.store.write_page(path, f"list:{name}", stamp, page)

    async def render_feed(self, name: str) -> None:
        head = await self.store.list_slice(name, -FEED_ITEMS, -1)
        items = list(reversed(await self._summaries(head.guids)))
        path = list_path(name)
        title = self.site.name if name == "home" else f"{head.title} — {self.site.name}"
        body = render_rss(title=title, path=path, items=items, site=self.site)
        newest = max((i.date_modified for i in items), default=None)
        page = Page(200, body, "application/rss+xml; charset=utf-8", http_date(newest) if newest else "")
        await self.store.write_page(feed_path(path), f"feed:{name}", head.stamp, page)

    async def render_sitemaps(self, from_rank: int, longest: int = 0) -> None:
        """`/sitemap.xml` is an index of `/sitemaps/{n}.xml` files of at most 1,000 URLs, oldest first, so a
        new story rewrites only the newest file and the index. `longest` is the most stories the site had
        meanwhile: a file past the new end answers 404 rather than keep the URLs it listed."""
        total = (await self.store.list_slice("home", 0, 0)).count
        chunks = (total + SITEMAP_CHUNK - 1) // SITEMAP_CHUNK
        first = from_rank // SITEMAP_CHUNK + 1
        lastmods: dict[int, str] = {}
        stamp = 0
        for n in range(first, max(chunks, first, (longest + SITEMAP_CHUNK - 1) // SITEMAP_CHUNK) + 1):
            start = (n - 1) * SITEMAP_CHUNK
            chunk = await self.store.list_slice("home", start, start + SITEMAP_CHUNK - 1)
            stamp = chunk.stamp
            path = f"/sitemaps/{n}.xml"
            if not chunk.guids:
                await self.store.write_page(path, "sitemap", chunk.stamp, self.missing_page)
                continue
            items = await self._summaries(chunk.guids)
            body = render_sitemap([(i.url_path, i.date_modified) for i in items], self.site)
            newest = max(i.date_modified for i in items)
            lastmods[n] = newest.isoformat()
            page = Page(200, body, "application/xml; charset=utf-8", http_date(newest))
            await self.store.write_page(path, "sitemap", chunk.stamp, page)
        known = await self.store.sitemap_lastmods(lastmods)
        entries = [
            (f"/sitemaps/{n}.xml", datetime.fromisoformat(known[n])) for n in range(1, chunks + 1) if n in known
        ]
        body = render_sitemap_index(entries, self.site)
        await self.store.write_page(
            "/sitemap.xml", "sitemap", stamp, Page(200, body, "application/xml; charset=utf-8")
        )

    async def render_news_sitemap(self, now: float | None = None) -> None:
        """Google News wants the last 48 hours only; a timer also calls this so stories age out on time."""
        now = now or time.time()
        recent = await self.store.list_since("home", now - NEWS_WINDOW_SECONDS, NEWS_MAX_ITEMS)
        items = list(reversed(await self._summaries(recent.guids)))
        body = render_news_sitemap(items, self.site)
        page = Page(200, body, "application/xml; charset=utf-8")
        await self.store.write_page("/news-sitemap.xml", "news-sitemap", recent.stamp, page)

    async def write_site_pages(self) -> None:
        """Pages that depend only on the site's configuration (written at start-up, same on every replica)."""
        stamp = int(datetime.now(UTC).timestamp())
        robots = Page(200, render_robots(self.site), "text/plain; charset=utf-8")
        await self.store.write_page("/robots.txt", "site", stamp, robots)

    @staticmethod
    def _redirects(
        guid: str, stamp: int, url_path: str, previous_paths: Sequence[str]
    ) -> list[tuple[str, str, int, Page]]:
        """`/a/{guid}` and every old path of the article: 301 to where it lives now."""
        moved = Page(301, b"", content_type="text/plain; charset=utf-8", location=url_path)
        return [(path, guid, stamp, moved) for path in [redirect_path(guid), *previous_paths] if path != url_path]
