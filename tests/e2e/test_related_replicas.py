"""Two related replicas emit exactly the links one replica computes, through a scale-up and a scale-down.

Only the related service runs here: the article events are produced straight to the articles topic, so the test
controls the stream (publishes, updates that move a story to another topic or rename it, kills) and the moments a
replica joins or leaves the group. The reference is one engine built in this process over the final archive,
which is what a single replica holds after reading the log.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.related.config import RelatedSettings
from services.related.engine import RelatedEngine
from services.related.worker import as_public_links, doc_of, link_signature
from shared import topics
from shared.cli import consumer_lag
from shared.contracts import ArticleKilled, ArticlePublished, RelatedLinksUpdated, Term
from shared.settings import ServiceSettings
from tests.support.stack import SERVICES, ServiceStack, free_port
from tests.support.topics import TOPICS

Signature = tuple[tuple[str, str, str, str], ...]


def published(guid: str, topic: str, seed: int, *, version: int = 1, headline: str | None = None) -> ArticlePublished:
    rng = random.Random(seed)
    words = TOPICS[topic]
    paragraphs = [" ".join(rng.sample(words, 20)) for _ in range(3)]
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=seed)
    return ArticlePublished(
        guid=guid,
        version=version,
        url_path=f"/news/2026/01/01/{guid}",
        slug=guid,
        headline=headline or f"{topic.title()} story {guid}",
        excerpt=paragraphs[0][:80],
        body_html="".join(f"<p>{p}</p>" for p in paragraphs),
        section=Term(code="news", name="News"),
        date_published=when,
        date_modified=when,
        story_root=guid,
    )


class Archive:
    """The stream the test writes, and the final state a single replica would hold."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.latest: dict[str, ArticlePublished | ArticleKilled] = {}
        self.topic_of: dict[str, str] = {}
        self.seed = 0

    async def send(self, event: ArticlePublished | ArticleKilled) -> None:
        await self.producer.send_and_wait(self.topic, event.model_dump_json().encode(), key=event.guid.encode())
        self.latest[event.guid] = event

    async def publish_new(self, tag: str, count: int) -> list[str]:
        guids = []
        for n in range(count):
            self.seed += 1
            topic = list(TOPICS)[n % len(TOPICS)]
            guid = f"{tag}-{n:03d}"
            self.topic_of[guid] = topic
            await self.send(published(guid, topic, self.seed))
            guids.append(guid)
        return guids

    def live(self) -> list[ArticlePublished]:
        return [e for e in self.latest.values() if isinstance(e, ArticlePublished)]

    async def update(self, guid: str, *, topic: str | None = None, headline: str | None = None) -> None:
        current = self.latest[guid]
        assert isinstance(current, ArticlePublished)
        self.seed += 1
        topic = self.topic_of[guid] = topic or self.topic_of[guid]
        await self.send(published(guid, topic, self.seed, version=current.version + 1, headline=headline))

    async def kill(self, guid: str) -> None:
        await self.send(ArticleKilled(guid=guid, version=self.latest[guid].version + 1))

    def expected_links(self, settings: RelatedSettings) -> dict[str, Signature]:
        options: dict[str, Any] = {"k": settings.related_k, "partitions": settings.related_index_cells}
        if settings.related_min_score is not None:
            options["min_score"] = settings.related_min_score
        engine = RelatedEngine.build([doc_of(e) for e in self.live()], **options)
        return {
            e.guid: link_signature(as_public_links(engine.links(e.guid)))
            for e in self.live()
            if engine.links(e.guid)
        }


async def emitted_links(kafka: str, topic: str) -> dict[str, Signature]:
    """The last list emitted per guid (what the compacted related topic keeps), empty lists left out."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.add_topic(topic)
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        last: dict[str, Signature] = {}
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.value is None:
                        last.pop(record.key.decode(), None)
                        continue
                    event = RelatedLinksUpdated.model_validate_json(record.value)
                    last[event.guid] = link_signature(event.links)
        return {guid: links for guid, links in last.items() if links}
    finally:
        await consumer.stop()


@pytest.fixture
async def related_only(infra: dict[str, str], tmp_path: Path) -> AsyncIterator[ServiceStack]:
    run = uuid.uuid4().hex[:8]
    stack = ServiceStack(
        kafka=infra["kafka"], redis=infra["redis"], prefix=f"rr{run}.", namespace=f"rr{run}",
        ports={name: free_port() for name in SERVICES}, log_dir=tmp_path,
    )
    await stack.create_topics()
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop_all)
        await stack.delete_topics()


async def wait_ready(port: int, within: float = 90) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"related on port {port} not ready in {within}s")


async def wait_emitted(stack: ServiceStack, within: float = 60) -> None:
    """Until the related group has emitted everything up to the end of the articles topic, twice in a row."""
    settings = ServiceSettings(kafka_bootstrap_servers=stack.kafka, kafka_topic_prefix=stack.prefix)
    deadline = time.monotonic() + within
    quiet = 0
    lag: Any = None
    while quiet < 2:
        (lag,) = await consumer_lag(settings, ["related"])
        quiet = quiet + 1 if lag.total == 0 else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"related still {lag.total} records behind after {within}s: {lag.partitions}")
        await asyncio.sleep(0.5)


def assert_same(expected: dict[str, Signature], emitted: dict[str, Signature], stage: str) -> None:
    differing = sorted(g for g in expected.keys() | emitted.keys() if expected.get(g) != emitted.get(g))
    assert differing == [], (
        f"{stage}: {len(differing)} lists differ from one engine over the final archive, e.g. "
        + "; ".join(f"{g}: expected {expected.get(g)} emitted {emitted.get(g)}" for g in differing[:3])
    )


async def test_two_replicas_emit_the_links_of_one(related_only: ServiceStack) -> None:
    stack = related_only
    settings = stack.settings("related", RelatedSettings)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        archive = Archive(producer, stack.topic(topics.ARTICLES))
        first = await archive.publish_new("a", 60)

        stack.start("related")
        await wait_ready(stack.ports["related"])
        # A second replica joins (a rebalance) while the stream goes on: renames, moves to another topic, kills.
        stack.ports["related-1"] = free_port()
        stack.start("related", 1)
        second = await archive.publish_new("b", 30)
        for guid in first[:10]:
            await archive.update(guid, headline=f"Renamed {guid}")
        for n, guid in enumerate(first[10:20]):
            await archive.update(guid, topic=list(TOPICS)[n % len(TOPICS)])
        for guid in first[20:25] + second[:3]:
            await archive.kill(guid)
        await wait_ready(stack.ports["related-1"])
        await archive.publish_new("c", 30)
        for guid in second[5:10]:
            await archive.update(guid, headline=f"Renamed {guid}")
        await wait_emitted(stack)
        logs = [stack.log_lines("related", n) for n in (0, 1)]
        assert all(any(line.get("event") == "index ready: joining the group" for line in log) for log in logs)
        assert_same(archive.expected_links(settings), await emitted_links(stack.kafka, stack.topic(topics.RELATED)),
                    "two replicas")

        # Back to one: the leaver's partitions go to the other replica, which reconciles them.
        leaver = stack.processes["related"].pop()
        leaver.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(leaver.wait, 40) == 0
        await archive.publish_new("d", 20)
        for guid in second[10:14]:
            await archive.kill(guid)
        for guid in first[30:35]:
            await archive.update(guid, headline=f"Renamed again {guid}")
        await wait_emitted(stack)
        assert_same(archive.expected_links(settings), await emitted_links(stack.kafka, stack.topic(topics.RELATED)),
                    "back to one replica")
    finally:
        await producer.stop()
