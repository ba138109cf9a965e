"""Article lifecycle events on the articles topic, emitted by ingest, key = guid.

They are denormalized on purpose: the publisher, related and comments services render and decide from the
event alone, with no lookups. `version` is the fence: every consumer ignores an event whose version is not
newer than what it already reflects for that guid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class EventModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Term(EventModel):
    code: str
    name: str


class Author(EventModel):
    name: str
    slug: str
    role: str | None = None
    biography: str | None = None
    avatar_url: str | None = None


class Picture(EventModel):
    href: str
    width: int | None = None
    height: int | None = None
    caption: str | None = None
    alt: str = ""
    credit: str | None = None


class Correction(EventModel):
    note: str
    corrected_at: datetime


class ArticleRef(EventModel):
    guid: str
    version: int


class ArticlePublished(ArticleRef):
    """The public state of a story at one version: enough to render every page that shows it."""

    event: Literal["article.published"] = "article.published"
    url_path: str = Field(description="canonical path, /{section}/{yyyy}/{mm}/{dd}/{slug}")
    previous_paths: list[str] = Field(default_factory=list, description="old paths that answer 301")
    slug: str
    headline: str
    excerpt: str
    body_html: str
    section: Term
    tags: list[Term] = Field(default_factory=list)
    authors: list[Author] = Field(default_factory=list)
    byline: str | None = None
    language: str = "en"
    date_published: datetime
    date_modified: datetime
    picture: Picture | None = None
    correction: Correction | None = None
    word_count: int = 0
    reading_minutes: int = 1
    evolvedfrom: str | None = None
    story_root: str = Field(description="guid of the first story in the evolvedfrom chain")


class ArticleWithdrawn(ArticleRef):
    """Held (`withheld`) or embargoed: not public, but not killed; a later usable version brings it back."""

    event: Literal["article.withdrawn"] = "article.withdrawn"
    url_path: str | None = None
    reason: Literal["withheld", "embargoed"] = "withheld"


class ArticleKilled(ArticleRef):
    """`canceled`: gone for good (410); no later version of the story line brings it back."""

    event: Literal["article.killed"] = "article.killed"
    url_path: str | None = None


ArticleEvent = Annotated[ArticlePublished | ArticleWithdrawn | ArticleKilled, Field(discriminator="event")]
