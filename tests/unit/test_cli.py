"""`broadsheet drafts post` keys each draft by its guid, and a file it cannot read as a draft by nothing."""

from __future__ import annotations

import pytest

from shared.cli import guid_of


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"guid": "story-1", "uri": "urn:x"}', b"story-1"),
        (b'{"uri": "urn:newsml:example.org:1"}', b"urn:newsml:example.org:1"),
        (b'["story-1"]', b""),
        (b"{not json", b""),
        (b"", b""),
        (b'{"guid": "g", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b""),
    ],
)
def test_a_draft_file_is_keyed_by_its_guid(raw: bytes, key: bytes) -> None:
    assert guid_of(raw) == key
