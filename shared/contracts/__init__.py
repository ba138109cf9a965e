"""Event contracts, one module per aggregate; import them from here."""

from shared.contracts.articles import (
    ArticleEvent,
    ArticleKilled,
    ArticlePublished,
    ArticleRef,
    ArticleWithdrawn,
    Author,
    Correction,
    Picture,
    Term,
)
from shared.contracts.comments import PUBLIC_STATUSES, CommentDecided, CommentStatus, CommentSubmitted
from shared.contracts.deadletter import DeadLetter
from shared.contracts.drafts import NinjsDraft, parse_rfc3339
from shared.contracts.related import RelatedLink, RelatedLinksUpdated

__all__ = [
    "PUBLIC_STATUSES",
    "ArticleEvent",
    "ArticleKilled",
    "ArticlePublished",
    "ArticleRef",
    "ArticleWithdrawn",
    "Author",
    "CommentDecided",
    "CommentStatus",
    "CommentSubmitted",
    "Correction",
    "DeadLetter",
    "NinjsDraft",
    "Picture",
    "RelatedLink",
    "RelatedLinksUpdated",
    "Term",
    "parse_rfc3339",
]
