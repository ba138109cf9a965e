"""Surge protection on the real broker and Redis: a moderator's pre-moderation outlives a surge's end.

A comments process of its own, with surge thresholds a test can reach in seconds, so the session's shared stack
keeps the defaults: more than 5 comments in a minute start a surge, and 3 s with at most 9 end it (an off level
above the on level, so that the end of a 9-comment burst is calm at once instead of a minute later).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import topics
from shared.contracts import ArticlePublished, Term
from shared.contracts.articles import Author
from shared.contracts.comments import CommentSubmitted
from tests.support.stack import MODERATION_TOKEN, ServiceStack, private_stack, until


@pytest.fixture
async def comments_only(infra: dict[str, str], tmp_path: Path) -> AsyncIterator[ServiceStack]:
    surge = {
        "COMMENTS_SURGE_RATE_ON": "5",
        "COMMENTS_SURGE_RATE_OFF": "9",
        "COMMENTS_SURGE_CALM_MINUTES": "0.05",
        "COMMENTS_SURGE_TICK_SECONDS": "0.5",
    }
    async with private_stack(infra["kafka"], infra["redis"], tmp_path, ("comments",), tag="cs", extra_env=surge) as s:
        yield s


async def alerts(stack: ServiceStack, guid: str) -> list[str]:
    consumer = AIOKafkaConsumer(
        stack.topic(topics.DESK_ALERTS), bootstrap_servers=stack.kafka, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        states: list[str] = []
        for records in (await consumer.getmany(timeout_ms=1500)).values():
            states.extend(json.loads(r.value)["state"] for r in records if r.key == guid.encode())
        return states
    finally:
        await consumer.stop()


def submission(guid: str, n: int) -> CommentSubmitted:
    return CommentSubmitted(
        id=f"s{n:03d}-{uuid.uuid4().hex[:8]}", article_guid=guid, author=f"Reader {n}",
        email=f"surge{n}.{uuid.uuid4().hex[:6]}@example.org", body=f"Reader {n} has a view on the vote.",
        ip=f"192.0.2.{n % 250 + 1}", submitted_at=datetime.now(UTC),
    )


async def test_a_surge_ending_keeps_a_moderators_premoderation(comments_only: ServiceStack) -> None:
    stack = comments_only
    guid = f"surge-{uuid.uuid4().hex[:8]}"
    published = datetime.now(UTC) - timedelta(hours=1)
    article = ArticlePublished(
        guid=guid, version=1, url_path=f"/world/{published:%Y/%m/%d}/{guid}", slug=guid, headline="A vote",
        excerpt="A vote.", body_html="<p>A vote.</p>", section=Term(code="world", name="World"),
        authors=[Author(name="Jane Doe", slug="jane-doe")], date_published=published, date_modified=published,
        story_root=guid,
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    headers = {"Authorization": f"Bearer {MODERATION_TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=stack.url("comments"), headers=headers, timeout=10) as mod:
            await producer.send_and_wait(
                stack.topic(topics.ARTICLES), article.model_dump_json().encode(), key=guid.encode()
            )

            async def view() -> dict[str, Any] | None:
                answer = await mod.get(f"/moderation/articles/{guid}")
                return answer.json() if answer.status_code == 200 else None

            await until(view)
            switched = await mod.post("/moderation/premoderation", json={"article": guid, "on": True})
            assert switched.status_code == 200, switched.text

            submit = stack.topic(topics.COMMENT_SUBMISSIONS)
            # A crowd: surge protection switches on, then off once the article is calm.
            for n in range(9):
                await producer.send(submit, submission(guid, n).model_dump_json().encode(), key=guid.encode())
            await producer.flush()

            async def surge_over() -> bool:
                return (await alerts(stack, guid))[-2:] == ["on", "off"]

            await until(surge_over, within=30)
            state = await view()
            assert state is not None
            assert state["premoderated"] is True, "the moderator's pre-moderation must outlive the surge"
            assert state["surge_premoderated"] is False
            switched = await mod.post("/moderation/premoderation", json={"article": guid, "on": False})
            assert switched.status_code == 200
            state = await view()
            assert state is not None and state["premoderated"] is False
    finally:
        await producer.stop()
