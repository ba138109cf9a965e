"""The comments service's Redis view lost (a Redis restarted empty) and rebuilt from the log.

A comments process of its own, so that wiping its keys touches no other test: the view after the rebuild must be
what it was (records with their history, queues, reports, near-identical groups, bans, pre-moderation), and the
rules that read it must decide as before (trusted authors, duplicates, bans, a redelivered moderator action).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.contracts import ArticlePublished, Term
from shared.contracts.articles import Author
from shared.contracts.comments import CommentReported, CommentSubmitted, ModerationAction
from tests.support.stack import MODERATION_TOKEN, ServiceStack, private_stack, until

STATUSES = ("pending", "reported", "approved", "rejected", "spam")
SPAM = "Check out my channel!!! Free gift cards, subscribe now www.free-cards-4u.com and win $500"


@pytest.fixture
async def comments_only(infra: dict[str, str], tmp_path: Path) -> AsyncIterator[ServiceStack]:
    quick = {"COMMENTS_FLOOD_SECONDS": "0", "COMMENTS_SURGE_TICK_SECONDS": "0.5"}
    async with private_stack(infra["kafka"], infra["redis"], tmp_path, ("comments",), tag="cr", extra_env=quick) as s:
        yield s


def article(guid: str) -> ArticlePublished:
    published = datetime.now(UTC) - timedelta(hours=1)
    return ArticlePublished(
        guid=guid, version=1, url_path=f"/world/{published:%Y/%m/%d}/{guid}", slug=guid, headline=guid,
        excerpt="A story.", body_html="<p>A story.</p>", section=Term(code="world", name="World"),
        authors=[Author(name="Jane Doe", slug="jane-doe")], date_published=published, date_modified=published,
        story_root=guid,
    )


class Desk:
    """The producer a newsroom's readers and moderators reach Kafka through, and the moderation API."""

    def __init__(self, stack: ServiceStack, producer: AIOKafkaProducer, api: httpx.AsyncClient) -> None:
        self.stack, self.producer, self.api = stack, producer, api
        self.submissions = stack.topic(topics.COMMENT_SUBMISSIONS)

    async def send(self, guid: str, event: Any) -> None:
        await self.producer.send_and_wait(self.submissions, event.model_dump_json().encode(), key=guid.encode())

    async def comment(self, guid: str, email: str, body: str, ip: str = "192.0.2.1") -> str:
        submission = CommentSubmitted(
            id=f"c{uuid.uuid4().hex[:12]}", article_guid=guid, author=email.split("@")[0].title(), email=email,
            body=body, ip=ip, submitted_at=datetime.now(UTC),
        )
        await self.send(guid, submission)
        await self.record(submission.id)
        return submission.id

    async def approve(self, comment_id: str) -> None:
        answer = await self.api.post(f"/moderation/comments/{comment_id}/approve", json={"moderator": "Ann"})
        assert answer.status_code == 202, answer.text
        await self.record(comment_id, "approved")

    async def record(self, comment_id: str, status: str | None = None) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            answer = await self.api.get(f"/moderation/comments/{comment_id}")
            if answer.status_code != 200:
                return None
            record: dict[str, Any] = answer.json()
            return record if status is None or record["status"] == status else None

        return await until(found)

    async def view(self, ids: list[str], guids: list[str]) -> dict[str, Any]:
        records = {cid: (await self.api.get(f"/moderation/comments/{cid}")).json() for cid in ids}
        queues = {
            status: sorted(c["id"] for c in (await self.api.get("/moderation/comments", params={
                "status": status, "limit": 500})).json())
            for status in STATUSES
        }
        articles = {guid: (await self.api.get(f"/moderation/articles/{guid}")).json() for guid in guids}
        return {"records": records, "queues": queues, "articles": articles}


async def test_the_view_comes_back_from_the_log_and_decides_as_before(comments_only: ServiceStack) -> None:
    stack = comments_only
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    headers = {"Authorization": f"Bearer {MODERATION_TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=stack.url("comments"), headers=headers, timeout=10) as api:
            desk = Desk(stack, producer, api)
            open_guid, quiet_guid = f"open-{uuid.uuid4().hex[:6]}", f"quiet-{uuid.uuid4().hex[:6]}"
            for guid in (open_guid, quiet_guid):
                await producer.send_and_wait(
                    stack.topic(topics.ARTICLES), article(guid).model_dump_json().encode(), key=guid.encode()
                )
                await until(lambda g=guid: _known(api, g))
            tag = uuid.uuid4().hex[:6]
            alice, bob, carol = (f"{name}.{tag}@example.org" for name in ("alice", "bob", "carol"))

            first = await desk.comment(open_guid, alice, "The harbour deal looks fair to me.")
            approval = ModerationAction(
                action_id=uuid.uuid4().hex, id=first, article_guid=open_guid, action="approve", moderator="Ann",
                reason="fine", requested_at=datetime.now(UTC),
            )
            await desk.send(open_guid, approval)
            await desk.record(first, "approved")
            trusted = await desk.comment(open_guid, alice, "And the union agreed to it as well.")
            disliked = await desk.comment(open_guid, bob, "Dockers never read the small print.", ip="198.51.100.4")
            await desk.approve(disliked)
            for n in range(3):
                await desk.send(open_guid, CommentReported(
                    id=disliked, article_guid=open_guid, reporter=f"reader-{n}", reported_at=datetime.now(UTC)
                ))
            await desk.record(disliked, "reported")
            argued = await desk.comment(open_guid, f"dave.{tag}@example.org", "The port should stay public.")
            await desk.approve(argued)
            for n in range(2):  # two readers report it: one short of hiding it
                await desk.send(open_guid, CommentReported(
                    id=argued, article_guid=open_guid, reporter=f"critic-{n}", reported_at=datetime.now(UTC)
                ))
            # A report naming another article is refused by the consumer (dead-lettered); it must not count later.
            await desk.send(quiet_guid, CommentReported(
                id=argued, article_guid=quiet_guid, reporter="intruder", reported_at=datetime.now(UTC)
            ))
            # A record the live consumer refused to read: the rebuild skips it as the consumer did.
            await producer.send_and_wait(stack.topic(topics.ARTICLES), b"not an event", key=b"broken")
            spam = await desk.comment(open_guid, f"wave.{tag}@example.org", SPAM, ip="203.0.113.50")
            assert (await desk.record(spam))["status"] == "spam"
            ban = await api.post("/moderation/bans", json={"email": carol, "moderator": "Ann", "reason": "abuse"})
            assert ban.status_code == 201
            switched = await api.post("/moderation/premoderation", json={"article": quiet_guid, "on": True})
            assert switched.status_code == 200
            ids = [first, trusted, disliked, argued, spam]
            assert (await desk.record(trusted))["status"] == "approved"
            before = await desk.view(ids, [open_guid, quiet_guid])

            # Redis loses the comments service's keys.
            client = aioredis.Redis.from_url(stack.redis)
            try:
                keys = [k async for k in client.scan_iter(match=f"{stack.namespace}:comments:*", count=500)]
                assert len(keys) > 10
                await client.delete(*keys)
                assert (await api.get(f"/moderation/comments/{first}")).status_code == 404
            finally:
                await client.aclose()

            async def rebuilt() -> bool:
                return (await api.get("/readyz")).status_code == 200

            await until(rebuilt, within=30)
            after = await desk.view(ids, [open_guid, quiet_guid])
            assert after == before

            # A rebuild never writes a record over a newer revision (a replica still deciding meanwhile).
            client = aioredis.Redis.from_url(stack.redis)
            try:
                record_key = f"{stack.namespace}:comments:{{c:{trusted}}}"
                stored = json.loads(await client.hget(record_key, "data"))
                newer = {**stored, "revision": 99, "reasons": ["written_meanwhile"]}
                await client.hset(record_key, mapping={"revision": 99, "data": json.dumps(newer)})
                await client.delete(f"{stack.namespace}:comments:built")
            finally:
                await client.aclose()
            await asyncio.sleep(1.0)
            await until(rebuilt, within=30)
            assert (await desk.record(trusted))["reasons"] == ["written_meanwhile"]

            # The rules that read the view decide as before.
            again = await desk.comment(open_guid, alice, "One more thought on the deal.")
            assert (await desk.record(again))["reasons"] == ["trusted_author"]
            repeat = await desk.comment(open_guid, bob, "Dockers never read the small print.", ip="198.51.100.4")
            assert (await desk.record(repeat))["reasons"] == ["duplicate"]
            banned = await desk.comment(open_guid, carol, "I am back.")
            assert (await desk.record(banned))["reasons"] == ["banned_email"]
            held = await desk.comment(quiet_guid, alice, "A calm comment on a quiet story.")
            assert (await desk.record(held))["reasons"] == ["premoderation"]
            await desk.send(open_guid, approval)  # the first approval, delivered again
            await asyncio.sleep(1.0)
            assert (await desk.record(first))["revision"] == 2
            # A third reader's report after the rebuild counts with the two before it.
            await desk.send(open_guid, CommentReported(
                id=argued, article_guid=open_guid, reporter="critic-2", reported_at=datetime.now(UTC)
            ))
            assert (await desk.record(argued, "reported"))["reports"] == 3
    finally:
        await producer.stop()


async def _known(api: httpx.AsyncClient, guid: str) -> bool:
    return (await api.get(f"/moderation/articles/{guid}")).status_code == 200
