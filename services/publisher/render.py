"""Every public page, feed and sitemap as deterministic bytes.

The publisher keeps pages pre-rendered in Redis and rebuilds them from Kafka whenever an event changes what
they show; Redis can be flushed and rebuilt with identical bytes. So every function here is a pure function
of its arguments: no clock, no randomness, no locale, no network, and no ordering that depends on hashing.
The templates and the static assets ship with the code and are read once, like the code itself.

Escaping policy: Jinja2 autoescapes every value. Only two strings are inserted as markup, and both were
sanitized by an nh3 allowlist before they were put on Kafka: an article's `body_html` and an approved
comment's `body_html`. The JSON-LD block goes through Jinja2's `tojson`, which escapes `<`, `>`, `&` and `'`
as `\\u003c`-style escapes so a headline cannot close the `<script>` element.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.publisher.site import SiteConfig
from shared.contracts.articles import ArticlePublished, Author, Picture, Term
from shared.contracts.comments import PUBLIC_STATUSES, CommentDecided
from shared.contracts.related import RelatedLink

__all__ = [
    "MAX_COMMENT_DEPTH",
    "MAX_SITEMAP_URLS",
    "CommentNode",
    "SiteConfig",
    "Summary",
    "asset_bytes",
    "asset_path",
    "asset_version",
    "author_profile",
    "date_line",
    "render_article",
    "render_error",
    "render_listing",
    "render_news_sitemap",
    "render_robots",
    "render_rss",
    "render_sitemap",
    "render_sitemap_index",
    "thread_comments",
]

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

ASSET_CONTENT_TYPES: Mapping[str, str] = {
    "site.css": "text/css; charset=utf-8",
    "site.js": "text/javascript; charset=utf-8",
}
"""The only files /static/ serves: an allowlist, so no request path can reach anything else on disk."""

MAX_COMMENT_DEPTH = 5
"""Replies nest this deep at most; deeper replies join the deepest list in time order, as WordPress does."""

MAX_SITEMAP_URLS = 50_000
"""The sitemaps.org limit per file; the caller splits larger sets and lists the parts in a sitemap index."""

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_SITEMAP_NS = "http://www.google.com/schemas/sitemap-news/0.9"


# --- dates: English names and UTC, whatever the process locale or time zone ---------------------------------


def as_utc(moment: datetime) -> datetime:
    """Pages show UTC so the same event renders the same bytes on every host; naive times are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def date_line(moment: datetime) -> str:
    """The masthead date style of the site, "Wednesday, March 20 2024", without strftime (locale-dependent)."""
    utc = as_utc(moment)
    return f"{DAY_NAMES[utc.weekday()]}, {MONTH_NAMES[utc.month - 1]} {utc.day} {utc.year}"


def short_date(moment: datetime) -> str:
    """Dates like "March 20 2024": for corrections and comment stamps, where the weekday is noise."""
    utc = as_utc(moment)
    return f"{MONTH_NAMES[utc.month - 1]} {utc.day} {utc.year}"


def clock_time(moment: datetime) -> str:
    """Times like "14:05 UTC": comments on a busy story are told apart by the minute."""
    utc = as_utc(moment)
    return f"{utc.hour:02d}:{utc.minute:02d} UTC"


def iso_datetime(moment: datetime) -> str:
    """W3C/ISO 8601 in UTC to the second: what Open Graph, JSON-LD, `<time>` and sitemaps expect."""
    return as_utc(moment).isoformat(timespec="seconds")


def rfc822_datetime(moment: datetime) -> str:
    """RSS 2.0 dates (RFC 822 with four-digit years); `email.utils` uses English names, not the locale."""
    return format_datetime(as_utc(moment), usegmt=True)


# --- languages ----------------------------------------------------------------------------------------------

RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ps", "sd", "syr", "ug", "ur", "yi"})
"""Languages written right to left by default (`ku` is not: only `ku-Arab` is, by its script subtag)."""
RTL_SCRIPTS = frozenset({"adlm", "arab", "hebr", "mand", "nkoo", "rohg", "samr", "syrc", "thaa"})
LTR_SCRIPTS = frozenset({"cyrl", "latn"})


def text_direction(language: str) -> Literal["ltr", "rtl"]:
    """The direction of a BCP 47 tag: a script subtag decides (`uz-Arab` is rtl, `ku-Latn` ltr), else the
    language. Browsers do not infer it from `lang`, so the page says it (`dir`)."""
    subtags = language.strip().lower().replace("_", "-").split("-")
    script = subtags[1] if len(subtags) > 1 and len(subtags[1]) == 4 else ""
    if script in RTL_SCRIPTS:
        return "rtl"
    if script in LTR_SCRIPTS:
        return "ltr"
    return "rtl" if subtags[0] in RTL_LANGUAGES else "ltr"


def feed_language(items: Sequence[Summary], default: str) -> str:
    """A feed's `<language>`: the one language of its items, or the site's when they mix (or there are none),
    so a section written in Arabic says so, and a mixed feed claims no language its items do not share."""
    languages = {item.language for item in items}
    return languages.pop() if len(languages) == 1 else default


# --- URLs ---------------------------------------------------------------------------------------------------


def path_segment(value: str) -> str:
    """Percent-encodes one path segment (a section code, author slug, tag code) so it cannot add a `/`."""
    return quote(value, safe="-._~")


def absolute_url(site: SiteConfig, path_or_url: str) -> str:
    """Canonical links, feeds and sitemaps need absolute URLs; pictures may already be absolute."""
    if path_or_url.startswith(("http://", "https://")):
        return path_or_url
    if path_or_url.startswith("//"):
        return "https:" + path_or_url
    return site.origin + "/" + path_or_url.lstrip("/")


def external_link(url: str | None) -> str | None:
    """A commenter's website is linked only when it is plain http(s): never `javascript:` or `data:`."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def page_path(path: str, page: int) -> str:
    """The front of a listing (page 0) is its base path; archive page n lives under `/page/n`."""
    if page <= 0:
        return path
    return f"{path.rstrip('/')}/page/{page}"


def feed_path(listing_path: str) -> str:
    """Each listing's feed sits beside it: `/feed.xml` for the home page, `/section/x/feed.xml` for a section."""
    return f"{listing_path.rstrip('/')}/feed.xml"


# --- static assets ------------------------------------------------------------------------------------------


@lru_cache(maxsize=len(ASSET_CONTENT_TYPES))
def asset_bytes(name: str) -> tuple[bytes, str]:
    """(content, content type) of one static asset; unknown names raise `KeyError`, so the caller answers 404."""
    content_type = ASSET_CONTENT_TYPES[name]
    return (STATIC_DIR / name).read_bytes(), content_type


@lru_cache(maxsize=len(ASSET_CONTENT_TYPES))
def asset_version(name: str) -> str:
    """The content hash pages name an asset by; the server caches an asset forever only under its own."""
    content, _ = asset_bytes(name)
    return hashlib.sha256(content).hexdigest()[:12]


@lru_cache(maxsize=len(ASSET_CONTENT_TYPES))
def asset_path(name: str) -> str:
    """URL of an asset with a content hash, so it can be cached forever and still change on deploy."""
    return f"/static/{name}?v={asset_version(name)}"


# --- what lists, feeds and Check Also need of an article ---------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """An article as lists, feeds and sitemaps show it: small enough to keep thousands per Redis key."""

    guid: str
    version: int
    url_path: str
    headline: str
    excerpt: str
    section: Term
    authors: tuple[Author, ...]
    tags: tuple[Term, ...]
    date_published: datetime
    date_modified: datetime
    picture: Picture | None
    language: str

    @classmethod
    def of(cls, article: ArticlePublished) -> Summary:
        return cls(
            guid=article.guid,
            version=article.version,
            url_path=article.url_path,
            headline=article.headline,
            excerpt=article.excerpt,
            section=article.section,
            authors=tuple(article.authors),
            tags=tuple(article.tags),
            date_published=article.date_published,
            date_modified=article.date_modified,
            picture=article.picture,
            language=article.language,
        )

    def to_json(self) -> str:
        """Compact and key-sorted, so equal summaries are equal strings (the store compares and fences on them)."""
        payload: dict[str, Any] = {
            "guid": self.guid,
            "version": self.version,
            "url_path": self.url_path,
            "headline": self.headline,
            "excerpt": self.excerpt,
            "section": self.section.model_dump(mode="json"),
            "authors": [author.model_dump(mode="json") for author in self.authors],
            "tags": [tag.model_dump(mode="json") for tag in self.tags],
            "date_published": self.date_published.isoformat(),
            "date_modified": self.date_modified.isoformat(),
            "picture": None if self.picture is None else self.picture.model_dump(mode="json"),
            "language": self.language,
        }
        return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str | bytes) -> Summary:
        data = json.loads(s)
        picture = data.get("picture")
        return cls(
            guid=str(data["guid"]),
            version=int(data["version"]),
            url_path=str(data["url_path"]),
            headline=str(data["headline"]),
            excerpt=str(data["excerpt"]),
            section=Term.model_validate(data["section"]),
            authors=tuple(Author.model_validate(author) for author in data.get("authors", [])),
            tags=tuple(Term.model_validate(tag) for tag in data.get("tags", [])),
            date_published=datetime.fromisoformat(data["date_published"]),
            date_modified=datetime.fromisoformat(data["date_modified"]),
            picture=None if picture is None else Picture.model_validate(picture),
            language=str(data.get("language", "en")),
        )


# --- comments -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommentNode:
    """One approved comment and the replies shown nested under it."""

    comment: CommentDecided
    replies: tuple[CommentNode, ...]


def _comment_order(comment: CommentDecided) -> tuple[datetime, str]:
    """Oldest first, ties broken by id, so two replicas order a burst of comments the same way."""
    return (as_utc(comment.submitted_at), comment.id)


def public_comments(article_guid: str, comments: Iterable[CommentDecided]) -> list[CommentDecided]:
    """The latest decision per comment, kept only when it is public: a removal after approval hides it."""
    latest: dict[str, CommentDecided] = {}
    for comment in comments:
        if comment.article_guid != article_guid:
            continue
        known = latest.get(comment.id)
        if known is None or comment.revision > known.revision:
            latest[comment.id] = comment
    return sorted((c for c in latest.values() if c.status in PUBLIC_STATUSES), key=_comment_order)


def thread_comments(comments: Sequence[CommentDecided]) -> tuple[CommentNode, ...]:
    """Nests replies under their parents, at most `MAX_COMMENT_DEPTH` levels deep.

    A reply whose parent is not shown (held, removed, never approved) is shown at the top level rather than
    lost; a parent loop, which no honest client produces, is broken so every comment still appears once.
    """
    ordered = sorted(comments, key=_comment_order)
    shown = {comment.id for comment in ordered}
    parent_of: dict[str, str | None] = {
        c.id: c.parent_id if c.parent_id in shown and c.parent_id != c.id else None for c in ordered
    }
    for comment in ordered:
        seen = {comment.id}
        cursor = parent_of[comment.id]
        while cursor is not None:
            if cursor in seen:
                parent_of[cursor] = None
                break
            seen.add(cursor)
            cursor = parent_of[cursor]

    replies_to: dict[str | None, list[CommentDecided]] = defaultdict(list)
    for comment in ordered:
        replies_to[parent_of[comment.id]].append(comment)

    def level(siblings: list[CommentDecided], depth: int) -> tuple[CommentNode, ...]:
        if depth < MAX_COMMENT_DEPTH:
            return tuple(CommentNode(c, level(replies_to[c.id], depth + 1)) for c in siblings)
        flattened: list[CommentDecided] = []
        pending = list(siblings)
        while pending:
            comment = pending.pop()
            flattened.append(comment)
            pending.extend(replies_to[comment.id])
        return tuple(CommentNode(c, ()) for c in sorted(flattened, key=_comment_order))

    return level(replies_to[None], 1)


def comment_count_heading(count: int) -> str:
    if count == 0:
        return "No comments yet"
    if count == 1:
        return "1 Comment"
    return f"{count} Comments"


# --- Jinja2 -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """One environment per process: templates compile once; StrictUndefined turns a typo into an error."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html", "xml"), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    environment.policies["json.dumps_kwargs"] = {
        "sort_keys": True,
        "ensure_ascii": False,
        "separators": (",", ":"),
    }
    environment.filters.update(
        date_line=date_line,
        short_date=short_date,
        clock_time=clock_time,
        iso=iso_datetime,
        rfc822=rfc822_datetime,
        segment=path_segment,
        external_link=external_link,
        direction=text_direction,
    )
    environment.globals.update(asset_path=asset_path)
    return environment


def _render(template_name: str, **context: Any) -> bytes:
    return _environment().get_template(template_name).render(**context).encode("utf-8")


# --- the article page ---------------------------------------------------------------------------------------


def _news_article_ld(article: ArticlePublished, site: SiteConfig) -> dict[str, Any]:
    """schema.org NewsArticle with the fields Google's article rich results read."""
    canonical = absolute_url(site, article.url_path)
    publisher = {"@type": "Organization", "name": site.name, "url": absolute_url(site, "/")}
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": article.headline,
        "description": article.excerpt,
        "datePublished": iso_datetime(article.date_published),
        "dateModified": iso_datetime(article.date_modified),
        # A story without a named author is the publication's own.
        "author": [
            {
                "@type": "Person",
                "name": author.name,
                "url": absolute_url(site, f"/author/{path_segment(author.slug)}"),
            }
            for author in article.authors
        ]
        or [publisher],
        "publisher": publisher,
        "mainEntityOfPage": {"@type": "WebPage", "@id": canonical},
        "url": canonical,
        "articleSection": article.section.name,
        "inLanguage": article.language,
        "identifier": article.guid,
    }
    if article.picture is not None:
        data["image"] = [absolute_url(site, article.picture.href)]
    if article.tags:
        data["keywords"] = [tag.name for tag in article.tags]
    if article.word_count:
        data["wordCount"] = article.word_count
    return data


_PICTURE_TAG = re.compile(r'<img(?:\s+[^\s"=>/]+(?:="[^"]*")?)*\s*>')
_SRC_ATTRIBUTE = re.compile(r'\ssrc="([^"]*)"')
_LAZY = ' loading="lazy"'


def _body_pictures(body_html: str) -> list[tuple[re.Match[str], str]]:
    """Each picture of a body, with its address (the body is sanitizer output: every attribute value is
    double-quoted and entity-escaped)."""
    pictures = []
    for tag in _PICTURE_TAG.finditer(body_html):
        src = _SRC_ATTRIBUTE.search(tag.group(0))
        pictures.append((tag, html.unescape(src.group(1)) if src else ""))
    return pictures


def _lead_loads_first(article: ArticlePublished, pictures: list[tuple[re.Match[str], str]]) -> str:
    """With no picture above the story, the body's lead picture (the story's own, else the first) is the top of
    the page and likely its largest paint: it loads at once and first, as the picture above the story does.
    WordPress leaves its first content picture eager for the same reason. The sanitizer marks every body picture
    `loading="lazy"` and keeps no other `loading`."""
    body_html, picture = article.body_html, article.picture
    lazy = [(tag, src) for tag, src in pictures if _LAZY in tag.group(0)]
    if not lazy:
        return body_html
    lead = next((tag for tag, src in lazy if picture is not None and src == picture.href), lazy[0][0])
    eager = lead.group(0).replace(_LAZY, ' fetchpriority="high"', 1)
    return f"{body_html[: lead.start()]}{eager}{body_html[lead.end() :]}"


def _check_also(article: ArticlePublished, links: Sequence[RelatedLink]) -> list[RelatedLink]:
    """Links in the order given (best first), without the article itself and without repeats."""
    chosen: list[RelatedLink] = []
    seen = {article.guid}
    for link in links:
        if link.guid in seen:
            continue
        seen.add(link.guid)
        chosen.append(link)
    return chosen


def render_article(
    article: ArticlePublished,
    links: Sequence[RelatedLink],
    comments: Sequence[CommentDecided],
    site: SiteConfig,
) -> bytes:
    """The article page as published: story, author box, Check Also, approved comments and the reply form."""
    shown_comments = public_comments(article.guid, comments)
    related = _check_also(article, links)
    modified_later = as_utc(article.date_modified) > as_utc(article.date_published)
    pictures = _body_pictures(article.body_html)
    # A lead picture that the body shows too (copy that places its photo inline) is shown once, where the
    # newsroom put it.
    in_body = article.picture is not None and any(src == article.picture.href for _, src in pictures)
    lead_picture = None if in_body else article.picture
    return _render(
        "article.html",
        site=site,
        lang=article.language,
        page_title=f"{article.headline} — {site.name}",
        description=article.excerpt,
        article=article,
        canonical=absolute_url(site, article.url_path),
        og_image=None if article.picture is None else absolute_url(site, article.picture.href),
        lead_picture=lead_picture,
        body_html=article.body_html if lead_picture else _lead_loads_first(article, pictures),
        ld=_news_article_ld(article, site),
        modified_later=modified_later,
        check_also_lead=related[0] if related else None,
        check_also_more=related[1:],
        comment_threads=thread_comments(shown_comments),
        comment_heading=comment_count_heading(len(shown_comments)),
        feed_url=feed_path("/"),
        section_feed_url=feed_path(f"/section/{path_segment(article.section.code)}"),
    )


# --- listings -----------------------------------------------------------------------------------------------


def render_listing(
    *,
    kind: Literal["home", "section", "author", "tag"],
    title: str,
    path: str,
    items: Sequence[Summary],
    page: int,
    newer_url: str | None,
    older_url: str | None,
    site: SiteConfig,
    profile: Author | None = None,
) -> bytes:
    """One page of a home, section, author or tag list, newest first as the caller ordered it.

    Page 0 is the front of the list (its newest articles, at `path`). Archive pages are numbered from the
    oldest (`path/page/1` holds the first articles ever published there), so an archive page changes only when
    one of its own articles changes: a new story re-renders the front and the newest archive page, not every
    page of the list. `profile`, on an author's front page, is who the author is (role, biography, picture).
    """
    if kind == "home":
        page_title = site.name if page == 0 else f"{site.name} — Archive page {page}"
        description = site.tagline
    else:
        page_title = f"{title} — {site.name}" if page == 0 else f"{title} — Archive page {page} — {site.name}"
        description = f"{title}: the latest from {site.name}."
    feeds = [(f"{site.name}", feed_path("/"))]
    if kind == "section":
        feeds.append((f"{title} — {site.name}", feed_path(path)))
    return _render(
        "listing.html",
        site=site,
        lang=site.default_language,
        kind=kind,
        title=title,
        page_title=page_title,
        description=description,
        canonical=absolute_url(site, page_path(path, page)),
        items=items,
        page=page,
        prev_url=newer_url,
        next_url=older_url,
        feeds=feeds,
        profile=profile,
    )


def author_profile(slug: str, items: Sequence[Summary]) -> Author | None:
    """The author `slug` as the newest of `items` (newest first) presents them: an author's page shows the role
    and biography of their latest story, as its author box does. Only the list's own stories decide it, so a
    rebuild shows the same profile, and an edit of the biography reaches the page with the story's update."""
    for item in items:
        for author in item.authors:
            if author.slug == slug:
                return author
    return None


def render_error(status: Literal[404, 410, 503], site: SiteConfig) -> bytes:
    """The body of a 404, 410 or 503 answer: a real page with navigation, so a reader is not stranded."""
    if status == 410:
        heading, message = "Gone: this article has been removed", "This article is no longer available."
    elif status == 503:
        heading, message = "Temporarily unavailable", "This page cannot be served right now. Try again in a moment."
    else:
        heading, message = "Not found", "There is no page at this address."
    return _render(
        "error.html",
        site=site,
        lang=site.default_language,
        page_title=f"{heading} — {site.name}",
        description=message,
        canonical=None,
        status=status,
        heading=heading,
        message=message,
    )


# --- feeds, sitemaps, robots --------------------------------------------------------------------------------


def render_rss(*, title: str, path: str, items: Sequence[Summary], site: SiteConfig) -> bytes:
    """RSS 2.0 for a listing; `path` is the listing (`/`, `/section/world`) or its feed (`.../feed.xml`).

    Item guids are article guids (not permalinks), so a slug change does not show readers a new item.
    `lastBuildDate` is the newest item's modification time: a clock would make every rebuild differ.
    """
    if path.endswith("/feed.xml"):
        self_path = path
        listing_path = path.removesuffix("feed.xml") or "/"
    else:
        self_path = feed_path(path)
        listing_path = path
    last_build = max((as_utc(item.date_modified) for item in items), default=None)
    return _render(
        "feed.xml",
        site=site,
        title=title,
        link=absolute_url(site, listing_path),
        self_url=absolute_url(site, self_path),
        language=feed_language(items, site.default_language),
        last_build=last_build,
        items=items,
    )


def _check_sitemap_size(count: int) -> None:
    if count > MAX_SITEMAP_URLS:
        raise ValueError(f"a sitemap holds at most {MAX_SITEMAP_URLS} URLs, got {count}; split it")


def render_sitemap(urls: Sequence[tuple[str, datetime]], site: SiteConfig) -> bytes:
    """One sitemaps.org urlset of (path or URL, last modified)."""
    _check_sitemap_size(len(urls))
    entries = [(absolute_url(site, location), iso_datetime(modified)) for location, modified in urls]
    return _render("sitemap.xml", namespace=SITEMAP_NS, entries=entries)


def render_sitemap_index(sitemaps: Sequence[tuple[str, datetime]], site: SiteConfig) -> bytes:
    """The sitemap index that lists the parts of a sitemap too large for one file."""
    _check_sitemap_size(len(sitemaps))
    entries = [(absolute_url(site, location), iso_datetime(modified)) for location, modified in sitemaps]
    return _render("sitemap_index.xml", namespace=SITEMAP_NS, entries=entries)


def news_language(language: str) -> str:
    """Google News wants ISO 639 codes, lowercase, with only Chinese keeping its script (zh-cn, zh-tw)."""
    code = language.strip().lower().replace("_", "-")
    if code.startswith("zh-"):
        return "zh-tw" if code in ("zh-tw", "zh-hk", "zh-mo", "zh-hant") else "zh-cn"
    return code.split("-", 1)[0] or "en"


def render_news_sitemap(items: Sequence[Summary], site: SiteConfig) -> bytes:
    """Google News sitemap; the caller keeps only the last 48 hours (at most 1,000 articles)."""
    _check_sitemap_size(len(items))
    entries = [
        {
            "loc": absolute_url(site, item.url_path),
            "language": news_language(item.language),
            "published": iso_datetime(item.date_published),
            "title": item.headline,
        }
        for item in items
    ]
    return _render(
        "news_sitemap.xml",
        namespace=SITEMAP_NS,
        news_namespace=NEWS_SITEMAP_NS,
        publication=site.name,
        entries=entries,
    )


def render_robots(site: SiteConfig) -> bytes:
    """Crawlers may read everything; the sitemaps tell them where the pages are."""
    return _render(
        "robots.txt",
        sitemap_url=absolute_url(site, "/sitemap.xml"),
        news_sitemap_url=absolute_url(site, "/news-sitemap.xml"),
    )
