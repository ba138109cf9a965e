"""Pure parts of the moderation API (the routes themselves run against the real Kafka and Redis in tests/e2e)."""

from __future__ import annotations

from services.comments.api import PARENT_EXCERPT_CHARS, comment_excerpt


def test_a_short_comment_is_its_own_excerpt_on_one_line() -> None:
    assert comment_excerpt("The night shift deserves fair pay.\n\nThanks for covering this.") == (
        "The night shift deserves fair pay. Thanks for covering this."
    )


def test_a_long_comment_is_cut_between_words() -> None:
    body = "word " * 100
    excerpt = comment_excerpt(body)
    assert excerpt.endswith("word…")
    assert len(excerpt) <= PARENT_EXCERPT_CHARS + 1
    unbroken = "x" * 500
    assert comment_excerpt(unbroken) == "x" * PARENT_EXCERPT_CHARS + "…"
