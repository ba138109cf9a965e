"""Ingest's pure domain: from a validated ninjs draft to the `ArticlePublished` event every reader-facing service
renders from.

No I/O and no clock: everything the event needs comes from the draft and from what the handler already knows
(the slug it reserved, the previous URLs, the root of the story line, the publication date kept across versions).
The same draft and arguments always give a byte-identical event, so replaying the drafts topic rebuilds the
site exactly.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from anyascii import anyascii

from services.ingest.sanitize import (
    collapse_duplicate_blocks,
    make_excerpt,
    plain_text,
    reading_minutes,
    sanitize_html,
    sanitize_text,
    word_count,
)
from shared.contracts.articles import ArticlePublished, Author, Correction, Picture, Term
from shared.contracts.drafts import EPOCH, NinjsAssociation, NinjsDraft, NinjsRendition

__all__ = [
    "DEFAULT_CORRECTION_NOTE",
    "DEFAULT_SECTION",
    "FALLBACK_SLUG",
    "UnpublishableDraft",
    "article_path",
    "authors_of",
    "base_slug",
    "build_article",
    "collapse_duplicate_blocks",
    "correction_of",
    "event_version",
    "first_publication_date",
    "make_excerpt",
    "picture_of",
    "plain_text",
    "reading_minutes",
    "sanitize_html",
    "sanitize_text",
    "section_of",
    "slugify",
    "tags_of",
    "word_count",
]

FALLBACK_SLUG: Final = "story"
DEFAULT_SECTION: Final = Term(code="news", name="News")
DEFAULT_CORRECTION_NOTE: Final = "This article has been corrected since it was first published."
DEFAULT_LANGUAGE: Final = "en"

_APOSTROPHES: Final = re.compile(r"['’‘`´]")
_NOT_SLUG: Final = re.compile(r"[^a-z0-9]+")
_SLUG: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LANGUAGE_TAG: Final = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")
_BYLINE_PREFIX: Final = re.compile(r"^\s*by\s+", re.IGNORECASE)
_BYLINE_SEPARATORS: Final = re.compile(r"\s*(?:,|&|\band\b)\s*", re.IGNORECASE)
_BYLINE_PLACE: Final = re.compile(r"\s+(?:in|at)\s+\S.*$")
# Words of job titles and desks in bylines ("Political Editor", "Senior Correspondent", "Staff and agencies"):
# a fragment holding one is a role, not a person. Leading ones are titles before a name ("Editor Jane Doe").
_BYLINE_TITLE_WORDS: Final = frozenset(
    {
        "editor", "editors", "correspondent", "correspondents", "reporter", "reporters", "writer", "writers",
        "staff", "chief", "political", "senior", "deputy", "associate", "contributing", "contributor",
        "columnist", "journalist", "producer", "photographer", "analyst", "bureau", "desk", "agencies",
        "agency", "foreign", "diplomatic", "economics", "our",
    }
)  # fmt: skip
_CORRECTION_PREFIX: Final = re.compile(r"^\s*correction\s*[:\-–—]\s*", re.IGNORECASE)
_PICTURE_TYPES: Final = frozenset({"picture", "image", "graphic"})
# Superdesk's rendition names, best first: ranks renditions without sizes, and breaks ties between equal ones.
_RENDITION_PREFERENCE: Final = ("original", "baseImage", "viewImage", "16-9", "4-3", "thumbnail")
# What every browser shows in an <img>. SVG is left out: it can carry script, and a photo is never one.
_WEB_IMAGE_TYPES: Final = frozenset(
    {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp", "image/avif"}
)
# A lead picture wider than this is a download of megabytes for no visible gain; narrower than the minimum it is
# a thumbnail, blurred when shown at the width of the article.
_WEB_MAX_WIDTH: Final = 2000
_WEB_MIN_WIDTH: Final = 400


class UnpublishableDraft(ValueError):
    """A usable draft that cannot become a page (nothing readable left after sanitizing, or no date at all).

    Retrying cannot help, so the handler dead-letters it at once.
    """


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC)


@functools.lru_cache(maxsize=1024)
def _slug_words(text: str) -> str:
    """ASCII, lowercase, hyphen-separated; "" when nothing of it can appear in a URL.

    Pictographs are dropped before transliterating: anyascii would spell an emoji out as words
    ("🎉" → "tada") that the headline never said. Cached: a draft's slug is asked for at each step of its way
    (the batch's URL claims, the decision, the state it leaves).
    """
    if text.isascii():  # no pictograph, nothing to transliterate
        ascii_text = text.lower()
    else:
        letters = "".join(" " if unicodedata.category(char) == "So" else char for char in text)
        ascii_text = anyascii(letters).lower()
    ascii_text = _APOSTROPHES.sub("", ascii_text)
    return _NOT_SLUG.sub("-", ascii_text).strip("-")


def _cut_slug(slug: str, max_length: int) -> str:
    if len(slug) <= max_length:
        return slug
    head = slug[: max_length + 1]
    boundary = head.rfind("-")
    cut = head[:boundary] if boundary > 0 else slug[:max_length]
    return cut.strip("-")


def slugify(text: str, max_length: int = 80) -> str:
    """A URL segment readable in any browser and log: "Zürich–Kraków: Łódź café" → "zurich-krakow-lodz-cafe".

    Apostrophes vanish rather than split words ("Russia’s" → "russias"); a long slug is cut between words, not
    inside one. Never empty: text with nothing to transliterate becomes "story".
    """
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    slug = _cut_slug(_slug_words(text), max_length)
    return slug or FALLBACK_SLUG[:max_length]


def _slug_or_none(text: str | None, max_length: int = 80) -> str | None:
    slug = _cut_slug(_slug_words(text or ""), max_length)
    return slug or None


def base_slug(draft: NinjsDraft) -> str:
    """The slugline is the newsroom's chosen short name; the headline stands in when it is absent or unusable."""
    return _base_slug(draft.slugline, draft.headline)


@functools.lru_cache(maxsize=1024)
def _base_slug(slugline: str | None, headline: str | None) -> str:
    """Remembered for a batch's worth of drafts: each asks three times (URL claim, URL, state)."""
    for candidate in (slugline, headline):
        slug = _slug_or_none(sanitize_text(candidate or ""))
        if slug:
            return slug
    return FALLBACK_SLUG


def article_path(section_code: str, published: datetime, slug: str) -> str:
    """The canonical path `/{section}/{yyyy}/{mm}/{dd}/{slug}`, dated in UTC so it never depends on a server's zone."""
    if not _SLUG.fullmatch(slug):
        raise ValueError(f"not a slug: {slug!r}")
    day = _utc(published)
    return f"/{slugify(section_code)}/{day.year:04d}/{day.month:02d}/{day.day:02d}/{slug}"


def section_of(draft: NinjsDraft) -> Term:
    """The first `service` entry with a code or a name is the section; stories without one file under News."""
    return _section(tuple((service.code, service.name) for service in draft.service))


@functools.lru_cache(maxsize=256)
def _section(services: tuple[tuple[str | None, str | None], ...]) -> Term:
    """Remembered: a newsroom has a few dozen sections, and each draft asks three times (URL claim, URL, event)."""
    for code_given, name_given in services:
        name = sanitize_text(name_given or "")
        code = _slug_or_none(code_given) or _slug_or_none(name)
        if code:
            return Term(code=code, name=name or sanitize_text(code_given or ""))
    return DEFAULT_SECTION


MAX_TAGS = 50
"""Tags kept per story, the first ones given. Each tag is a page and a feed the publisher keeps up to date: a
draft with 20,000 keywords held back every list on the site for as long as their pages took (minutes). The BBC
stories carry a dozen at most; wire services cap theirs at a few dozen."""
MAX_AUTHORS = 20
"""Authors kept per story (each one an author page), the first ones given."""


def tags_of(draft: NinjsDraft) -> list[Term]:
    """Subjects (by name), keywords, then places (by name), first spelling kept.

    Places are tags because a reader following "Kharkiv" wants every story from there, and related links use
    them as a signal. Genres ("Analysis") are left out: they say what kind of piece it is, not what it is about.

    Two tags whose codes would collide ("NATO", "Nato", "N.A.T.O") are the same tag page, so the slug code is
    the identity and duplicates are dropped in order. Subjects without a name (bare IPTC numbers) are not shown.
    Past `MAX_TAGS`, the rest are left out.
    """
    names = [
        *(subject.name for subject in draft.subject if subject.name),
        *draft.keywords,
        *(place.name for place in draft.place if place.name),
    ]
    tags: list[Term] = []
    seen: set[str] = set()
    for raw_name in names:
        name = sanitize_text(raw_name)
        code = _slug_or_none(name)
        if code is None or code in seen:
            continue
        seen.add(code)
        tags.append(Term(code=code, name=name))
        if len(tags) == MAX_TAGS:
            break
    return tags


def _safe_url(url: str | None) -> str | None:
    """Only absolute http(s) URLs are used for images and avatars: no scripts, no data, no local files."""
    if not url:
        return None
    candidate = url.strip()
    parts = urlsplit(candidate)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(c.isspace() for c in candidate):
        return None
    return candidate


def _authors_from_byline(byline: str) -> list[str]:
    """The people in "By Jane Doe, Political Editor, and Ahmed Ali in Cairo": Jane Doe and Ahmed Ali.

    Each author gets a page, so a fragment that is a title ("Political Editor") is dropped and a dateline
    (" in Cairo") is cut off; a title before a name ("Senior Reporter Jane Doe") is cut off too.
    """
    text = _BYLINE_PREFIX.sub("", sanitize_text(byline))
    names: list[str] = []
    for part in _BYLINE_SEPARATORS.split(text):
        words = _BYLINE_PLACE.sub("", part.strip()).split()
        titles = [word.strip(".:;()").lower() in _BYLINE_TITLE_WORDS for word in words]
        first = titles.index(False) if False in titles else len(words)
        if first < len(words) and not any(titles[first:]):
            names.append(" ".join(words[first:]))
    return names


def authors_of(draft: NinjsDraft) -> list[Author]:
    """Authors for the byline and author pages: `authors[]` when given, else the names in "By A, B and C".

    Each author's slug is their author-page address, so two entries with the same slug are one author.
    """
    authors: list[Author] = []
    seen: set[str] = set()
    if draft.authors:
        for entry in draft.authors:
            name = sanitize_text(entry.name)
            slug = _slug_or_none(name)
            if slug is None or slug in seen:
                continue
            seen.add(slug)
            biography = sanitize_text(entry.biography or "") or None
            role = sanitize_text(entry.role or "") or None
            authors.append(
                Author(name=name, slug=slug, role=role, biography=biography, avatar_url=_safe_url(entry.avatar_url))
            )
            if len(authors) == MAX_AUTHORS:
                break
        return authors
    for name in _authors_from_byline(draft.byline or ""):
        slug = _slug_or_none(name)
        if slug is None or slug in seen:
            continue
        seen.add(slug)
        authors.append(Author(name=name, slug=slug))
    return authors[:MAX_AUTHORS]


def _is_web_image(rendition: NinjsRendition) -> bool:
    """`mimetype` is optional in ninjs: a rendition without one is kept, as it always was."""
    if not rendition.mimetype:
        return True
    return rendition.mimetype.split(";", 1)[0].strip().lower() in _WEB_IMAGE_TYPES


def _rendition_rank(item: tuple[str, NinjsRendition]) -> tuple[int, int, int, str]:
    """Best first: the largest web-sized rendition; then, by name, those without a width (an unsized original
    is likelier the full picture than a thumbnail is); then the least oversized; then thumbnails, largest first.

    A known thumbnail must not beat an original of unknown size only because its size is known, and a
    6000-pixel original must not beat a 1280-pixel rendition made for the web.
    """
    name, rendition = item
    width, height = _positive(rendition.width), _positive(rendition.height)
    preference = _RENDITION_PREFERENCE.index(name) if name in _RENDITION_PREFERENCE else len(_RENDITION_PREFERENCE)
    if width is None:
        thumbnail = "thumb" in name.lower()
        return (3 if thumbnail else 1, 0, preference, name)
    area = width * (height or 0)
    if width > _WEB_MAX_WIDTH:
        return (2, area, preference, name)
    return (0 if width >= _WEB_MIN_WIDTH else 3, -area, preference, name)


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def picture_of(draft: NinjsDraft) -> Picture | None:
    """The lead picture: the best rendition of `associations.featuremedia` (see `_rendition_rank`) that has a
    usable URL and is an image type browsers show (a TIFF original is for print).

    Caption comes from `description_text`; alt text from `body_text`, else the caption, because a picture
    without alt text is invisible to screen readers. The credit is the association's `byline` ("Photo: Jane
    Doe/Agency"): agency pictures are licensed on condition that the credit is shown.
    """
    media: NinjsAssociation | None = draft.associations.get("featuremedia")
    if media is None or (media.type is not None and media.type.lower() not in _PICTURE_TYPES):
        return None
    usable = [(name, r) for name, r in media.renditions.items() if _safe_url(r.href) and _is_web_image(r)]
    if not usable:
        return None
    _, best = min(usable, key=_rendition_rank)
    caption = sanitize_text(media.description_text or "") or None
    alt = sanitize_text(media.body_text or "") or caption or ""
    return Picture(
        href=best.href.strip(),
        width=_positive(best.width),
        height=_positive(best.height),
        caption=caption,
        alt=alt,
        credit=sanitize_text(media.byline or "") or None,
    )


def correction_of(draft: NinjsDraft, *, fallback_time: datetime | None = None) -> Correction | None:
    """The correction notice shown on the page, when the newsroom flagged this version as a correction.

    `corrected_at` is the version's `versioncreated`; a draft without it uses `fallback_time` (the handler's
    date_modified) so the notice is never lost, and failing that its publication dates.
    """
    if not draft.is_correction():
        return None
    note = _CORRECTION_PREFIX.sub("", sanitize_text(draft.ednote or "")) or DEFAULT_CORRECTION_NOTE
    moment = draft.versioncreated or fallback_time or draft.firstpublished or draft.firstcreated
    if moment is None:
        raise UnpublishableDraft("a correction needs versioncreated (or a date to fall back on)")
    return Correction(note=note, corrected_at=_utc(moment))


def first_publication_date(draft: NinjsDraft) -> datetime | None:
    """When a story first goes public: firstpublished, firstcreated or versioncreated, and never before its
    embargo (a newsroom stamps firstpublished when it sends the story, not when the embargo lets readers see it;
    dated earlier, the story would sort below older news and miss the news sitemap's window)."""
    published = draft.firstpublished or draft.firstcreated or draft.versioncreated
    if published is not None and draft.embargoed is not None:
        return max(_utc(published), _utc(draft.embargoed))
    return published


def event_version(draft: NinjsDraft) -> int:
    """The fence every consumer compares: the newsroom's version, else versioncreated in epoch milliseconds.

    Milliseconds are computed in integers so that the same timestamp always gives the same number.
    """
    if draft.version is not None:
        return draft.version
    if draft.versioncreated is None:
        raise ValueError("a draft needs version or versioncreated")
    return (_utc(draft.versioncreated) - EPOCH) // timedelta(milliseconds=1)


def _language_of(draft: NinjsDraft) -> str:
    tag = draft.language.strip().lower().replace("_", "-")
    return tag if _LANGUAGE_TAG.fullmatch(tag) else DEFAULT_LANGUAGE


def _excerpt_of(draft: NinjsDraft, body_html: str, shown_above: tuple[str, ...]) -> str:
    for description in (draft.description_text, draft.description_html):
        text = sanitize_text(description or "")
        if text:
            return text
    return make_excerpt(_after_repeated_labels(plain_text(body_html, skip_figures=True) or plain_text(body_html),
                                               shown_above))


def _after_repeated_labels(text: str, labels: tuple[str, ...]) -> str:
    """The body's text without the blocks at its top that only repeat a label shown above the excerpt.

    Copy scraped from a web page often starts with the page's kicker ("Russia-Ukraine war") or the headline
    itself. The page shows both above the body already; in an excerpt (listings, feeds, the meta description, a
    Check Also link) such a block would be its first words. The body keeps it: only the excerpt skips it, and
    never the last block.
    """
    repeated = {label.casefold() for label in labels if label}
    while (cut := text.find("\n\n")) != -1 and text[:cut].casefold() in repeated:
        text = text[cut + 2 :]
    return text


def _missing_content(headline: str, body_html: str, body_text: str) -> tuple[str, str] | None:
    """(field, why) when sanitizing left a usable draft nothing to show: no headline, or a body without text or
    picture (a body made only of a script or an embed)."""
    if not headline:
        return "headline", "the headline is empty once sanitized"
    if not body_text and "<img" not in body_html:
        return "body_html", "the body has no text or picture once sanitized"
    return None


def unpublishable_reason(draft: NinjsDraft) -> tuple[str, str] | None:
    """What `build_article` would refuse this usable draft for, told before anything is produced: the gateway
    answers 422 rather than accept a draft that can only be dead-lettered."""
    body_html = sanitize_html(draft.body_html or "")
    return _missing_content(sanitize_text(draft.headline or ""), body_html, plain_text(body_html))


def build_article(
    draft: NinjsDraft,
    *,
    slug: str,
    url_path: str,
    previous_paths: list[str],
    story_root: str,
    date_published: datetime | None = None,
) -> ArticlePublished:
    """The sanitized, normalized public state of a usable draft.

    `date_published` is passed by the handler when the story was already published, so corrections and
    updates keep the original date; otherwise it is firstpublished, firstcreated or versioncreated (UTC).
    dateModified is versioncreated, never earlier than datePublished. Raises `UnpublishableDraft` when sanitizing
    leaves no headline or a body with nothing to show, or the draft carries no date at all.
    """
    headline = sanitize_text(draft.headline or "")
    body_html = collapse_duplicate_blocks(sanitize_html(draft.body_html or ""))
    body_text = plain_text(body_html)
    missing = _missing_content(headline, body_html, body_text)
    if missing is not None:
        raise UnpublishableDraft(missing[1])
    published = date_published or first_publication_date(draft)
    if published is None:
        raise UnpublishableDraft("the draft carries no date: pass date_published")
    published = _utc(published)
    modified = max(_utc(draft.versioncreated), published) if draft.versioncreated else published
    words = word_count(body_text)
    section = section_of(draft)
    return ArticlePublished(
        guid=draft.guid,
        version=event_version(draft),
        url_path=url_path,
        previous_paths=list(previous_paths),
        slug=slug,
        headline=headline,
        excerpt=_excerpt_of(draft, body_html, (section.name, headline)),
        body_html=body_html,
        section=section,
        tags=tags_of(draft),
        authors=authors_of(draft),
        byline=sanitize_text(draft.byline or "") or None,
        language=_language_of(draft),
        date_published=published,
        date_modified=modified,
        picture=picture_of(draft),
        correction=correction_of(draft, fallback_time=modified),
        word_count=words,
        reading_minutes=reading_minutes(words),
        evolvedfrom=draft.evolvedfrom or None,
        story_root=story_root,
    )
