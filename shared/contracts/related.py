"""Check Also links per article, emitted by related, key = the article's guid (compacted topic)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.contracts.articles import EventModel


class RelatedLink(EventModel):
    guid: str
    url_path: str
    headline: str
    excerpt: str
    score: float


class RelatedLinksUpdated(EventModel):
    event: Literal["related.updated"] = "related.updated"
    guid: str
    links: list[RelatedLink] = Field(default_factory=list)
    article_version: int = Field(description="version of the article the links were computed for")
