"""Reader comments: what the edge submits (private) and what moderation decides (public).

`CommentSubmitted` carries the reader's e-mail and IP and stays on the submissions topic, which only the
comments service reads. `CommentDecided` is what pages are made of: it never carries the e-mail or the IP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts.articles import EventModel

CommentStatus = Literal["approved", "pending", "spam", "rejected", "reported", "removed"]
PUBLIC_STATUSES: frozenset[str] = frozenset({"approved"})


class CommentSubmitted(EventModel):
    event: Literal["comment.submitted"] = "comment.submitted"
    id: str = Field(description="assigned at the edge; also the idempotency key of the submission")
    article_guid: str
    parent_id: str | None = None
    author: str
    email: str
    url: str | None = None
    body: str
    ip: str | None = None
    user_agent: str | None = None
    submitted_at: datetime


class CommentDecided(EventModel):
    """One moderation decision (automatic or by a moderator): the audit trail and the page's input."""

    event: Literal["comment.decided"] = "comment.decided"
    id: str
    article_guid: str
    parent_id: str | None = None
    status: CommentStatus
    reasons: list[str] = Field(default_factory=list)
    actor: str = Field(description="'pipeline' or the moderator's name")
    decided_at: datetime
    revision: int = Field(description="increases with every decision on this comment; the publisher fences on it")
    author: str
    author_url: str | None = None
    body_html: str
    submitted_at: datetime
    depth: int = 0
