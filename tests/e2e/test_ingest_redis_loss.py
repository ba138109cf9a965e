"""Ingest after its Redis state is lost (a Redis restarted empty), with no draft arriving to rebuild it.

An ingest process of its own, so that wiping its state touches no other test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import topics
from tests.support.drafts import make_draft
from tests.support.stack import ServiceStack, private_stack


@pytest.fixture
async def ingest_only(infra: dict[str, str], tmp_path: Path) -> AsyncIterator[ServiceStack]:
    async with private_stack(infra["kafka"], infra["redis"], tmp_path, ("ingest",), tag="il") as stack:
        yield stack


async def events_of(stack: ServiceStack, guid: str) -> list[tuple[str, float]]:
    """(event, broker time in seconds) of every article event about `guid` so far."""
    consumer = AIOKafkaConsumer(
        stack.topic(topics.ARTICLES), bootstrap_servers=stack.kafka, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        found: list[tuple[str, float]] = []
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            found.extend(
                (json.loads(r.value)["event"], r.timestamp / 1000) for r in records if r.key == guid.encode()
            )
        return found
    finally:
        await consumer.stop()


async def test_an_embargo_is_released_on_time_after_the_state_is_lost(ingest_only: ServiceStack) -> None:
    stack = ingest_only
    release = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    draft = make_draft(embargoed=release.strftime("%Y-%m-%dT%H:%M:%SZ"), headline="Results at noon")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.topic(topics.DRAFTS), json.dumps(draft).encode(), key=draft["guid"].encode()
        )
    finally:
        await producer.stop()
    deadline = time.monotonic() + 10
    while not await events_of(stack, draft["guid"]):
        assert time.monotonic() < deadline, "the embargoed draft was never held"
    assert [event for event, _ in await events_of(stack, draft["guid"])] == ["article.withdrawn"]

    client = aioredis.Redis.from_url(stack.redis)
    try:
        keys = [key async for key in client.scan_iter(match=f"{stack.namespace}:ingest:*", count=500)]
        assert keys
        await client.delete(*keys)  # what a Redis restarted without its data holds of ingest's state
    finally:
        await client.aclose()

    await asyncio.sleep(max(0.0, (release - datetime.now(UTC)).total_seconds()) + 2.5)
    published = [at for event, at in await events_of(stack, draft["guid"]) if event == "article.published"]
    assert published, "the embargo was not released: nothing rebuilt the schedule"
    assert release.timestamp() <= published[0] <= release.timestamp() + 2.0
