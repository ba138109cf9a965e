"""Loader for the public BBC news corpus used by data tests and benchmarks.

The corpus lives outside the repository (``../shared/data/bbc-news`` next to the checkout) and is
read in place, never copied.  Each ``<category>/NNN.txt`` file holds the title on its first line
and the body below it, paragraphs separated by blank lines.  One file is not valid UTF-8, so text
is decoded with a Latin-1 fallback; 98 articles are exact duplicates of others and are kept as they
are, because consumers (deduplication, related-article checks) need to see them.

Dates are synthetic: the corpus has none, and a date derived from the position in the sorted list
would put every business story before every sport story, which would let a recency signal guess
the category.  The default date is therefore spread over 2005 by a stable hash of the article name.
"""

from __future__ import annotations

import html
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_DIR: Path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BBC_DIR: Path = DATA_DIR / "bbc-news"
CATEGORIES: tuple[str, ...] = ("business", "entertainment", "politics", "sport", "tech")

_YEAR_START = datetime(2005, 1, 1, tzinfo=UTC)
_MINUTES_IN_YEAR = 365 * 24 * 60


@dataclass(frozen=True)
class BbcArticle:
    category: str
    name: str  # "<category>/<NNN>", e.g. "business/001"
    title: str
    paragraphs: tuple[str, ...]

    @property
    def number(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def text(self) -> str:
        """Plain body text, paragraphs separated by blank lines."""
        return "\n\n".join(self.paragraphs)


def bbc_available() -> bool:
    return BBC_DIR.is_dir() and all((BBC_DIR / c).is_dir() for c in CATEGORIES)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_article(category: str, number: str, raw: bytes) -> BbcArticle:
    """Split a corpus file into title and paragraphs (blank-line separated, whitespace trimmed)."""
    text = _decode(raw).replace("\r\n", "\n")
    title, _, body = text.strip().partition("\n")
    paragraphs = tuple(" ".join(p.split()) for p in body.split("\n\n") if p.strip())
    return BbcArticle(category=category, name=f"{category}/{number}", title=title.strip(), paragraphs=paragraphs)


def load_bbc() -> list[BbcArticle]:
    """All 2,225 articles, sorted by category then name, so every caller sees the same order."""
    if not bbc_available():
        raise FileNotFoundError(f"BBC corpus not found under {BBC_DIR}")
    articles: list[BbcArticle] = []
    for category in CATEGORIES:
        for path in sorted((BBC_DIR / category).glob("*.txt")):
            articles.append(parse_article(category, path.stem, path.read_bytes()))
    return articles


def default_published(article: BbcArticle) -> datetime:
    """A deterministic minute in 2005, hashed from the name so categories interleave in time."""
    minute = zlib.crc32(article.name.encode()) % _MINUTES_IN_YEAR
    return _YEAR_START + timedelta(minutes=minute)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_ninjs(
    article: BbcArticle,
    *,
    guid: str | None = None,
    version: int = 1,
    published: datetime | None = None,
    with_section: bool = True,
) -> dict[str, Any]:
    """The article as a ninjs 1.x text item, as the newsroom would send it."""
    when = rfc3339(published if published is not None else default_published(article))
    return {
        "guid": guid if guid is not None else f"bbc-{article.category}-{article.number}",
        "version": version,
        "type": "text",
        "pubstatus": "usable",
        "headline": article.title,
        "body_html": "".join(f"<p>{html.escape(p)}</p>" for p in article.paragraphs),
        "language": "en",
        "firstcreated": when,
        "versioncreated": when,
        "firstpublished": when,
        "service": [{"code": article.category, "name": article.category.title()}] if with_section else [],
        "byline": "BBC News",
    }
