"""Keeps the public site in Redis in step with the events: every change re-renders every page that shows it.

The read path never renders; this module is the only writer of pages. Each write is fenced by the stamp of the
state it was rendered from (see `store.py`), so replays, duplicates and stale consumers change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import TypeAdapter

from services.publisher.render import Summary, render_article, render_error
from services.publisher.site import SiteConfig
from services.publisher.store import Page, PublisherStore, http_date
from shared.contracts import (
    ArticleKilled,
    ArticlePublished,
    ArticleWithdrawn,
    CommentDecided,
    RelatedLink,
    RelatedLinksUpdated,
)
from shared.logging import get_logger

log = get_logger(__name__)
LINKS = TypeAdapter(list[RelatedLink])


def redirect_path(guid: str) -> str:
    return f"/a/{guid}"


class Projector:
    def __init__(self, store: PublisherStore, site: SiteConfig) -> None:
        self.store = store
        self.site = site
        self.gone_page = render_error(410, site)
        self.missing_page = render_error(404, site)

    # --- events ---------------------------------------------------------------------------------------------

    async def article_published(self, event: ArticlePublished) -> str:
        stamp = await self.store.apply_article(
            event.guid, event.version, "published", event.url_path, event.model_dump_json()
        )
        if stamp == 0:
            return "stale"
        await self.store.redis.set(self.store.article_key(event.guid, "summary"), Summary.of(event).to_json())
        await self.render_article_page(event.guid)
        await self._redirects(event.guid, stamp, event.url_path, event.previous_paths)
        return "processed"

    async def article_killed(self, event: ArticleKilled) -> str:
        meta = await self.store.meta(event.guid)
        stamp = await self.store.apply_article(event.guid, event.version, "killed", event.url_path or "", "")
        if stamp == 0:
            return "stale"
        gone = Page(410, self.gone_page)
        for path in self._public_paths(meta, event.url_path):
            await self.store.write_page(path, event.guid, stamp, gone)
        await self.store.write_page(redirect_path(event.guid), event.guid, stamp, gone)
        return "processed"

    async def article_withdrawn(self, event: ArticleWithdrawn) -> str:
        meta = await self.store.meta(event.guid)
        stamp = await self.store.apply_article(event.guid, event.version, "withdrawn", event.url_path or "", "")
        if stamp == 0:
            return "stale"
        missing = Page(404, self.missing_page)
        for path in self._public_paths(meta, event.url_path):
            await self.store.write_page(path, event.guid, stamp, missing)
        await self.store.write_page(redirect_path(event.guid), event.guid, stamp, missing)
        return "processed"

    async def related_updated(self, event: RelatedLinksUpdated, offset: int) -> str:
        links_json = json.dumps([link.model_dump(mode="json") for link in event.links], sort_keys=True)
        stamp = await self.store.apply_related(event.guid, offset, links_json)
        if stamp == 0:
            return "stale"
        await self.render_article_page(event.guid)
        return "processed"

    async def comment_decided(self, event: CommentDecided) -> str:
        stamp = await self.store.apply_comment(event.article_guid, event.id, event.revision, event.model_dump_json())
        if stamp == 0:
            return "stale"
        if stamp < 0:
            return "held"
        await self.render_article_page(event.article_guid)
        return "processed"

    # --- rendering ------------------------------------------------------------------------------------------

    async def render_article_page(self, guid: str) -> bool:
        """Render from the state as stored now (read atomically), fenced by the stamp of that state."""
        meta, article_json, related_json, comment_jsons = await self.store.article_bundle(guid)
        if meta.get("status") != "published" or article_json is None:
            return False
        article = ArticlePublished.model_validate_json(article_json)
        links: Sequence[RelatedLink] = LINKS.validate_json(related_json) if related_json else []
        comments = [CommentDecided.model_validate_json(raw) for raw in comment_jsons]
        body = render_article(article, links, comments, self.site)
        page = Page(200, body, last_modified=http_date(article.date_modified))
        return await self.store.write_page(article.url_path, guid, int(meta["stamp"]), page)

    async def _redirects(self, guid: str, stamp: int, url_path: str, previous_paths: Sequence[str]) -> None:
        moved = Page(301, b"", content_type="text/plain; charset=utf-8", location=url_path)
        await self.store.write_page(redirect_path(guid), guid, stamp, moved)
        for old in previous_paths:
            if old != url_path:
                await self.store.write_page(old, guid, stamp, moved)

    @staticmethod
    def _public_paths(meta: dict[str, str], url_path: str | None) -> list[str]:
        paths = {p for p in (meta.get("url_path"), url_path) if p}
        return sorted(paths)
