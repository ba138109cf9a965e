"""Rebuilding ingest's memory from the articles topic reads what it finds there without tripping over it."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from services.ingest.recovery import StateRecovery
from services.ingest.state import StoryState
from shared.contracts import ArticlePublished, ArticleWithdrawn, Correction, Term


def _embargoed(partition: str, offset: str) -> ConsumerRecord[bytes, bytes]:
    event = ArticleWithdrawn(guid="held-story", version=2, reason="embargoed")
    headers = [("draft-partition", partition.encode()), ("draft-offset", offset.encode())]
    return ConsumerRecord("articles", 0, 7, 0, 0, b"held-story", event.model_dump_json().encode(), None, 0, 0, headers)


def test_an_embargo_is_remembered_with_where_its_draft_is() -> None:
    states: dict[str, StoryState] = {}
    held: dict[str, tuple[int, int, dict[str, str]]] = {}
    StateRecovery._apply(_embargoed("3", "41"), states, held)
    assert states["held-story"].status == "embargoed" and states["held-story"].version == 2
    assert held["held-story"][:2] == (3, 41)


def test_an_embargo_whose_draft_cannot_be_located_is_remembered_without_it() -> None:
    """Headers from another producer: the story stays embargoed; the draft to re-hold is simply not known."""
    for partition, offset in (("three", "41"), ("3", ""), ("٣", "41")):
        states: dict[str, StoryState] = {}
        held: dict[str, tuple[int, int, dict[str, str]]] = {}
        StateRecovery._apply(_embargoed(partition, offset), states, held)
        assert states["held-story"].status == "embargoed"
        assert held == {}


def test_a_correction_is_remembered_from_the_article_event() -> None:
    """Rebuilt from the log, ingest still carries a story's correction notice onto its next update."""
    event = ArticlePublished(
        guid="g-1", version=2, url_path="/news/2024/03/20/harbour", slug="harbour", headline="Harbour reopens",
        excerpt="", body_html="<p>Harbour reopens.</p>", section=Term(code="news", name="News"),
        date_published=datetime(2024, 3, 20, tzinfo=UTC), date_modified=datetime(2024, 3, 21, tzinfo=UTC),
        correction=Correction(note="The vote was on Friday.", corrected_at=datetime(2024, 3, 21, tzinfo=UTC)),
        story_root="g-1",
    )
    record = ConsumerRecord("articles", 0, 8, 0, 0, b"g-1", event.model_dump_json().encode(), None, 0, 0, [])
    states: dict[str, StoryState] = {}
    StateRecovery._apply(record, states, {})
    assert Correction.model_validate_json(states["g-1"].correction) == event.correction
