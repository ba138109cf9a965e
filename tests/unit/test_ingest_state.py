"""What ingest remembers per story survives the trip through its Redis hash unchanged."""

from __future__ import annotations

import dataclasses

from services.ingest.state import StoryState


def test_story_state_round_trips_through_its_hash_fields() -> None:
    state = StoryState(
        guid="g-1", version=7, status="published", slug="harbour-reopens", slug_source="harbour",
        url_path="/news/2024/03/20/harbour-reopens", previous_paths=["/news/2024/03/20/harbour"],
        date_published="2024-03-20T09:30:00+00:00", story_root="g-0",
        correction='{"note":"The vote was on Friday.","corrected_at":"2024-03-21T10:00:00Z"}',
    )
    version, *pairs = state.to_fields()
    fields = {str(k).encode(): str(v).encode() for k, v in zip(pairs[::2], pairs[1::2], strict=True)}
    fields[b"version"] = str(version).encode()
    assert StoryState.from_fields("g-1", fields) == state
    # Every field but the key itself is written: a new field must be added to to_fields too.
    assert {name.decode() for name in fields} == {f.name for f in dataclasses.fields(StoryState)} - {"guid"}
