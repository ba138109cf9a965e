"""Producers send `json_bytes(event)`; consumers, dead letters and rebuild comparisons were written against
`model_dump_json()`. The two must stay byte-identical, whatever the event holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from services.ingest.domain import build_article
from services.ingest.intake import decode_draft
from shared.contracts.comments import CommentSubmitted
from shared.kafka import json_bytes
from tests.support.drafts import make_draft


def test_an_article_event_is_the_same_bytes_as_model_dump_json() -> None:
    draft_data = make_draft("g-1", headline="Ünïcode “quotes” — and \u2028 a separator", body_html=(
        "<p>Caf\u00e9 &amp; bar</p><figure><img src=\"https://x.test/a.jpg\" alt=\"A\"><figcaption>Ph\u00f6to"
        "</figcaption></figure><p>\U0001f600 emoji</p>"
    ))
    draft = decode_draft(json.dumps(draft_data).encode(), key=b"g-1", max_bytes=2 << 20)
    article = build_article(draft, slug="s", url_path="/world/2026/11/26/s", previous_paths=["/old"], story_root="g-1")
    assert json_bytes(article) == article.model_dump_json().encode()


def test_a_comment_event_is_the_same_bytes_as_model_dump_json() -> None:
    for submitted_at in (datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC),
                         datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))):
        event = CommentSubmitted(
            id="c-1", article_guid="g-1", author="Zoë <b>", email="zoe@example.org", body='Say "hi"\n\tthere',
            ip="2001:db8::1", submitted_at=submitted_at,
        )
        assert json_bytes(event) == event.model_dump_json().encode()
