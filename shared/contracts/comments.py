"""Reader comments: what the edge submits (private) and what moderation decides (public).

`CommentSubmitted`, `CommentReported` and `ModerationAction` travel on the submissions topic, which only the
comments service reads; `CommentSubmitted` carries the reader's e-mail and IP. `CommentDecided` is what pages
are made of and the audit trail of moderation: it never carries the e-mail or the IP. `SurgeAlert` tells the
desk that an article switched pre-moderation on or off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from shared.contracts.articles import EventModel

CommentStatus = Literal["approved", "pending", "spam", "rejected", "reported", "removed"]
PUBLIC_STATUSES: frozenset[str] = frozenset({"approved"})
ModerationVerb = Literal["approve", "reject", "spam", "restore"]


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


class CommentReported(EventModel):
    """A reader flags a published comment. `reporter` is an opaque hash of the reader, never an address."""

    event: Literal["comment.reported"] = "comment.reported"
    id: str = Field(description="the reported comment")
    article_guid: str | None = Field(default=None, description="when the edge knows it; the key of the record")
    reporter: str
    reason: str | None = None
    reported_at: datetime


class ModerationAction(EventModel):
    """A moderator's decision on one comment, applied in order with the comment's other events."""

    event: Literal["comment.moderation"] = "comment.moderation"
    action_id: str = Field(description="unique per action; applying it twice changes nothing")
    id: str = Field(description="the comment")
    article_guid: str
    action: ModerationVerb
    moderator: str
    reason: str | None = None
    requested_at: datetime
    expected_revision: int | None = Field(
        default=None,
        description="the revision the moderator decided on; when the comment has changed since, the action is "
        "not applied (another moderator or the readers decided first)",
    )


class BanFields(EventModel):
    """What a ban and its lifting both say. The address itself never travels, only its keyed hash."""

    ban_id: str = Field(description="unique per ban; applying it twice changes nothing")
    kind: Literal["email", "ip"]
    hash: str = Field(description="the address's keyed hash, as the comments service keeps it")
    comment_id: str | None = Field(default=None, description="the comment the ban was made from, if any")
    moderator: str
    reason: str | None = None
    requested_at: datetime


class ModerationBan(BanFields):
    """A moderator's ban of an e-mail address or an IP: the audit record of who, when, what and why, and what the
    comments service applies (again, on a replay)."""

    event: Literal["comment.ban"] = "comment.ban"


class ModerationBanLifted(BanFields):
    """A moderator lifting a ban. An event type of its own: a consumer that does not know it refuses it (a dead
    letter) rather than reading it as a ban."""

    event: Literal["comment.ban_lifted"] = "comment.ban_lifted"


class ModerationPremoderation(EventModel):
    """A moderator switching pre-moderation on or off for an article or a section: who, when, what and why, and
    what the comments service applies (again, on a replay, in order with the switches before and after it)."""

    event: Literal["comment.premoderation"] = "comment.premoderation"
    switch_id: str = Field(description="unique per switch")
    article_guid: str | None = Field(default=None, description="the article, or None for a section")
    section: str | None = Field(default=None, description="the section code, when a whole section is switched")
    on: bool
    moderator: str
    reason: str | None = None
    requested_at: datetime


SubmissionEvent = Annotated[
    CommentSubmitted | CommentReported | ModerationAction | ModerationBan | ModerationBanLifted
    | ModerationPremoderation,
    Field(discriminator="event"),
]


class CommentDecided(EventModel):
    """One moderation decision (automatic or by a moderator): the audit trail and the page's input."""

    event: Literal["comment.decided"] = "comment.decided"
    id: str
    article_guid: str
    parent_id: str | None = None
    status: CommentStatus
    reasons: list[str] = Field(default_factory=list)
    actor: str = Field(description="'pipeline', 'readers' or the moderator's name")
    decided_at: datetime
    revision: int = Field(description="increases with every decision on this comment; the publisher fences on it")
    author: str
    author_url: str | None = None
    body_html: str
    submitted_at: datetime
    depth: int = 0


class SurgeAlert(EventModel):
    """An article's comment flow switched pre-moderation on (a surge) or off (calm again)."""

    event: Literal["comments.surge"] = "comments.surge"
    article_guid: str
    state: Literal["on", "off"]
    reason: str = Field(description="rate, held_share or calm")
    at: datetime
    comments_last_minute: int
    held_share: float
