"""Comments end to end on the real Kafka and Redis: the publisher's form edge, the comments service's moderation
and its API, and the article page that shows the decisions.

Readers are told apart by their source address: each one connects from its own loopback IP (127.0.0.x), as
readers behind different networks would, so the per-IP flood limit applies to each separately.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support.drafts import make_draft, post, wait_for_version
from tests.support.stack import MODERATION_TOKEN, ServiceStack

pytestmark = pytest.mark.e2e

_next_ip = itertools.count(2)
TOKEN_RE = re.compile(r'name="form_token" value="([^"]+)"')


def reader_ip() -> str:
    n = next(_next_ip)
    return f"127.0.{n // 250}.{n % 250 + 2}"


class Reader:
    """One reader: an e-mail, a name and a connection from an address of its own."""

    def __init__(self, stack: ServiceStack, name: str | None = None) -> None:
        self.stack = stack
        self.ip = reader_ip()
        self.name = name or f"Reader {uuid.uuid4().hex[:6]}"
        self.email = f"r{uuid.uuid4().hex[:10]}@example.org"
        self.client = httpx.AsyncClient(
            base_url=stack.url("publisher"),
            transport=httpx.AsyncHTTPTransport(local_address=self.ip),
            follow_redirects=False,
            timeout=10,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def form_token(self, path: str) -> str:
        page = await self.client.get(path)
        assert page.status_code == 200
        match = TOKEN_RE.search(page.text)
        assert match, "the article page carries no form token"
        assert match.group(1) != "__FORM_TOKEN__"
        return match.group(1)

    async def comment(
        self, guid: str, path: str, body: str, headers: dict[str, str] | None = None, **fields: str
    ) -> httpx.Response:
        data = {
            "comment_post_ID": guid,
            "comment_parent": "0",
            "author": self.name,
            "email": self.email,
            "url": "",
            "comment": body,
            "website_url": "",
            "form_token": await self.form_token(path),
            **fields,
        }
        return await self.client.post("/comments", data=data, headers=headers)


class Moderation:
    def __init__(self, stack: ServiceStack) -> None:
        self.client = httpx.AsyncClient(
            base_url=stack.url("comments"), headers={"Authorization": f"Bearer {MODERATION_TOKEN}"}, timeout=10
        )
        self.seen: list[bytes] = []
        """Every response body, to prove that no address ever comes back."""

    async def close(self) -> None:
        await self.client.aclose()

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        self.seen.append(response.content)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, path: str, payload: dict[str, Any] | None = None) -> httpx.Response:
        response = await self.client.post(path, json=payload or {})
        self.seen.append(response.content)
        return response

    async def queue(self, status: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.get("/moderation/comments", status=status, limit=500)
        return result

    async def comment_on(self, guid: str, status: str, timeout: float = 10) -> list[dict[str, Any]]:
        async def found() -> list[dict[str, Any]]:
            return [c for c in await self.queue(status) if c["article_guid"] == guid]

        result = await wait(found, timeout)
        assert result, f"no {status} comment on {guid} within {timeout}s"
        return result

    async def status_of(self, comment_id: str, status: str, timeout: float = 10) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            response = await self.client.get(f"/moderation/comments/{comment_id}")
            if response.status_code != 200:
                return None
            self.seen.append(response.content)
            record: dict[str, Any] = response.json()
            return record if record["status"] == status else None

        result = await wait(reached, timeout)
        assert result, f"comment {comment_id} did not become {status} within {timeout}s"
        return result


async def wait(check: Any, timeout: float = 10, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(interval)
    return result


async def article(stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation) -> tuple[str, str]:
    """A fresh article, published a little while ago, known to the publisher and to moderation."""
    draft = make_draft(published=datetime.now(UTC) - timedelta(hours=1))
    await post(producer, stack, draft)
    path, _ = await wait_for_version(stack, draft["guid"], 1)

    async def known() -> bool:
        return (await mod.client.get(f"/moderation/articles/{draft['guid']}")).status_code == 200

    assert await wait(known), "moderation never learnt of the article"
    return draft["guid"], path


async def page(stack: ServiceStack, path: str) -> str:
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        response = await client.get(path)
        assert response.status_code == 200
        return response.text


async def author_status(stack: ServiceStack, guid: str, comment_id: str, timeout: float = 5) -> str:
    """How the publisher tells a comment's author that moderation went, once it has the decision."""
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        async def check() -> str | None:
            response = await client.get(f"/api/comments/{comment_id}", params={"article_guid": guid})
            assert response.status_code == 200 and response.headers["cache-control"] == "no-store", response.text
            assert set(response.json()) == {"id", "status"}
            status = str(response.json()["status"])
            return None if status == "received" else status

        status = await wait(check, timeout, 0.05)
    assert status, f"the publisher never had a decision on {comment_id}"
    return str(status)


async def page_until(stack: ServiceStack, path: str, predicate: Any, timeout: float = 5) -> str:
    async def check() -> str | None:
        text = await page(stack, path)
        return text if predicate(text) else None

    result = await wait(check, timeout, 0.05)
    assert result, f"{path} never showed the expected state within {timeout}s"
    return str(result)


async def topic_records(stack: ServiceStack, name: str) -> list[Any]:
    """Every record of a topic as it is now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = stack.topic(name)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(12))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for tp, batch in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                records.extend(r for r in batch if r.offset < ends[tp])
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def decisions_for(stack: ServiceStack, comment_id: str) -> list[dict[str, Any]]:
    values = [json.loads(r.value) for r in await topic_records(stack, "broadsheet.comments.decisions")]
    return [v for v in values if v["id"] == comment_id]


@pytest.fixture
async def mod(stack: ServiceStack) -> AsyncIterator[Moderation]:
    moderation = Moderation(stack)
    yield moderation
    await moderation.close()


@pytest.fixture
async def readers(stack: ServiceStack) -> AsyncIterator[list[Reader]]:
    made: list[Reader] = []
    yield made
    for reader in made:
        await reader.close()


def new_reader(stack: ServiceStack, readers: list[Reader], name: str | None = None) -> Reader:
    reader = Reader(stack, name)
    readers.append(reader)
    return reader


def thread_of(html: str, comment_id: str) -> str:
    """The markup of one comment's `<article>` element, nested replies included."""
    start = html.index(f'<article id="comment-{comment_id}"')
    depth, position = 0, start
    for match in re.finditer(r"<article\b|</article>", html[start:]):
        depth += 1 if match.group(0) == "<article" else -1
        position = start + match.end()
        if depth == 0:
            break
    return html[start:position]


async def test_held_approved_trusted_and_a_threaded_reply(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    alice = new_reader(stack, readers, "Alice Example")
    started = time.monotonic()
    first = await alice.comment(guid, path, "The night shift deserves fair pay.\n\nThanks for covering this.")
    assert first.status_code == 303
    assert first.headers["location"].startswith(f"{path}?pending=c")
    assert first.headers["location"].endswith("#comment-pending")
    pending_id = first.headers["location"].partition("?pending=")[2].partition("#")[0]

    [held] = await mod.comment_on(guid, "pending")
    assert held["id"] == pending_id
    assert await author_status(stack, guid, held["id"]) == "awaiting_moderation"
    assert "first_time_commenter" in held["reasons"]
    assert held["body"] == "The night shift deserves fair pay.\n\nThanks for covering this."
    assert held["body_html"] == "<p>The night shift deserves fair pay.</p><p>Thanks for covering this.</p>"
    assert held["near_key"].startswith("nd2:")
    # read against its story: the headline and the public URL, as a link in the moderation UI
    assert held["article"]["headline"] == f"Dockers strike over night-shift pay {guid[-6:]}"
    assert held["article"]["url"].startswith("http") and held["article"]["url"].endswith(path)
    assert "No comments yet" in await page(stack, path)

    approved = await mod.post(f"/moderation/comments/{held['id']}/approve", {"moderator": "Maria", "reason": "fine"})
    assert approved.status_code == 202, approved.text
    shown = await page_until(stack, path, lambda html: f'id="comment-{held["id"]}"' in html)
    assert "1 Comment" in shown
    assert await author_status(stack, guid, held["id"]) == "published"
    assert "Thanks for covering this." in shown
    audit = await mod.status_of(held["id"], "approved")
    assert audit["actor"] == "Maria" and audit["revision"] == 2
    assert [h["status"] for h in audit["history"]] == ["pending", "approved"]

    # The same author again, once the flood window is over: trusted now, so published at once.
    await asyncio.sleep(max(0.0, 15.5 - (time.monotonic() - started)))
    second = await alice.comment(guid, path, "Update: the union says talks resume on Friday.")
    assert second.status_code == 303

    async def auto_approved() -> list[dict[str, Any]]:
        return [c for c in await mod.queue("approved") if c["article_guid"] == guid and c["id"] != held["id"]]

    [auto] = await wait(auto_approved)
    assert "trusted_author" in auto["reasons"]
    shown = await page_until(stack, path, lambda html: f'id="comment-{auto["id"]}"' in html)
    assert "2 Comments" in shown

    # A reply goes under its parent.
    bob = new_reader(stack, readers, "Bob Example")
    reply = await bob.comment(guid, path, "Agreed, and the crane operators too.", comment_parent=held["id"])
    assert reply.status_code == 303
    pending_reply = await mod.comment_on(guid, "pending")
    assert pending_reply[0]["parent_id"] == held["id"] and pending_reply[0]["depth"] == 1
    # the moderator sees what it answers
    assert pending_reply[0]["parent"] == {
        "author": "Alice Example", "excerpt": "The night shift deserves fair pay. Thanks for covering this."
    }
    assert held["parent"] is None
    assert (await mod.post(f"/moderation/comments/{pending_reply[0]['id']}/approve")).status_code == 202
    shown = await page_until(stack, path, lambda html: f'id="comment-{pending_reply[0]["id"]}"' in html)
    assert f'id="comment-{pending_reply[0]["id"]}"' in thread_of(shown, held["id"])
    assert "3 Comments" in shown

    # The addresses are nowhere: pages, feeds, the decisions topic, the API's answers.
    for reader in (alice, bob):
        for public_path in (path, "/", "/feed.xml", "/section/business", "/section/business/feed.xml"):
            assert reader.email not in await page(stack, public_path)
        for record in await topic_records(stack, "broadsheet.comments.decisions"):
            assert reader.email.encode() not in record.value
            assert reader.ip.encode() not in record.value
        await mod.queue("approved")
        for body in mod.seen:
            assert reader.email.encode() not in body
            assert reader.ip.encode() not in body


async def test_a_reply_below_the_deepest_level_is_refused_at_the_form_with_its_reason(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    """Threads stop at depth 5: the form says so at once (not "awaiting moderation" for a comment the pipeline
    would reject), and the deepest comments offer no Reply link."""
    guid, path = await article(stack, producer, mod)
    parent = "0"
    chain: list[str] = []
    for depth in range(6):
        writer = new_reader(stack, readers)
        posted = await writer.comment(guid, path, f"Level {depth} of the thread.", comment_parent=parent)
        assert posted.status_code == 303, posted.text
        [held] = await mod.comment_on(guid, "pending")
        assert held["depth"] == depth
        assert (await mod.post(f"/moderation/comments/{held['id']}/approve")).status_code == 202
        await page_until(stack, path, lambda html, cid=held["id"]: f'id="comment-{cid}"' in html)
        parent = held["id"]
        chain.append(parent)

    too_deep = await new_reader(stack, readers).comment(guid, path, "One level too far.", comment_parent=chain[-1])
    assert too_deep.status_code == 400
    assert "thread_too_deep" in too_deep.text and "One level too far." in too_deep.text
    shown = await page(stack, path)
    assert f'data-comment-id="{chain[-2]}"' in shown  # depth 4 still takes replies
    assert f'data-comment-id="{chain[-1]}"' not in shown


async def test_double_submit_and_redelivery_make_one_comment(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    carol = new_reader(stack, readers)
    token = await carol.form_token(path)
    form = {
        "comment_post_ID": guid, "comment_parent": "0", "author": carol.name, "email": carol.email,
        "url": "https://carol.example.org/", "comment": "Posted twice by an impatient click.",
        "website_url": "", "form_token": token,
    }
    answers = await asyncio.gather(*(carol.client.post("/comments", data=form) for _ in range(2)))
    assert [a.status_code for a in answers] == [303, 303]
    again = await carol.client.post("/comments", data=form)
    assert again.status_code == 303, "a double submit is answered like the first"
    [held] = await mod.comment_on(guid, "pending")
    await asyncio.sleep(1.0)
    assert len([c for c in await mod.queue("pending") if c["article_guid"] == guid]) == 1
    assert len(await decisions_for(stack, held["id"])) == 1

    # The same submission delivered twice by Kafka: one decision.
    submitted = {
        "event": "comment.submitted", "id": f"redelivered-{uuid.uuid4().hex[:8]}", "article_guid": guid,
        "author": "Dan Replay", "email": f"d{uuid.uuid4().hex[:8]}@example.org", "body": "Said once, delivered twice.",
        "ip": "192.0.2.7", "submitted_at": datetime.now(UTC).isoformat(),
    }
    for _ in range(2):
        await producer.send_and_wait(
            stack.topic("broadsheet.comments.submitted"), json.dumps(submitted).encode(), key=guid.encode()
        )
    await mod.status_of(submitted["id"], "pending")
    await asyncio.sleep(1.5)
    decisions = await decisions_for(stack, submitted["id"])
    assert len(decisions) == 1
    assert decisions[0]["revision"] == 1 and decisions[0]["actor"] == "pipeline"
    assert "email" not in decisions[0] and "ip" not in decisions[0]


async def test_edge_refuses_floods_duplicates_and_invalid_forms(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    erin = new_reader(stack, readers)
    first = await erin.comment(guid, path, "First thoughts on the strike.", idempotency_key="form-1")
    assert first.status_code == 303

    # The same text from a new form: a duplicate, said as such.
    duplicate = await erin.comment(guid, path, "First   thoughts on the STRIKE.", idempotency_key="form-2")
    assert duplicate.status_code == 409
    assert "already posted" in duplicate.text

    # A different comment at once, by e-mail and by IP.
    by_email = await erin.comment(guid, path, "And a second thought.", idempotency_key="form-3")
    assert by_email.status_code == 429
    assert "And a second thought." in by_email.text
    stranger = new_reader(stack, readers)
    await stranger.client.aclose()
    stranger.ip, stranger.client = erin.ip, erin.client
    by_ip = await stranger.comment(guid, path, "Someone else on the same network.")
    assert by_ip.status_code == 429

    # Invalid forms answer 400 with the reason and the reader's text kept.
    frank = new_reader(stack, readers)
    text = 'My <b>long</b> comment & "quotes" stay.'
    invalid = await frank.comment(guid, path, text, email="frank-at-example")
    assert invalid.status_code == 400
    assert "valid email address" in invalid.text
    assert "My &lt;b&gt;long&lt;/b&gt; comment &amp; &#34;quotes&#34; stay." in invalid.text
    assert 'value="frank-at-example"' in invalid.text
    assert (await frank.comment(guid, path, text, form_token="forged")).status_code == 400
    assert (await frank.comment(guid, path, text, website_url="http://spam.example")).status_code == 400
    assert (await frank.comment(guid, path, text, url="javascript:alert(1)")).status_code == 400
    assert (await frank.comment(guid, path, "x" * 5001)).status_code == 400
    assert (await frank.comment(guid, path, "   ")).status_code == 400
    assert (await frank.comment("no-such-article", path, text)).status_code == 400  # token is per article
    # A form on another site's page, posting from each of its visitors' browsers.
    elsewhere = await frank.comment(guid, path, text, headers={"origin": "https://elsewhere.example"})
    assert elsewhere.status_code == 403 and "cross_site" in elsewhere.text
    assert "&amp; &#34;quotes&#34;" in elsewhere.text

    # The JSON edge: the same checks, JSON answers.
    api = await frank.client.post("/api/comments", json={"comment_post_ID": guid, "author": "", "email": "x",
                                                         "comment": ""})
    assert api.status_code == 400
    assert {e["code"] for e in api.json()["errors"]} == {"missing_name", "invalid_email", "empty_body"}
    too_deep = await frank.client.post("/api/comments", content=b"[" * 5000 + b"]" * 5000,
                                       headers={"content-type": "application/json"})
    assert too_deep.status_code == 400, "JSON deeper than the reader can follow is a bad request, not a crash"
    missing = await frank.client.post("/api/comments", json={"comment_post_ID": "no-such-article",
                                                             "author": "Frank", "email": frank.email,
                                                             "comment": "Hello"})
    assert missing.status_code == 404
    accepted = await frank.client.post("/api/comments", json={"comment_post_ID": guid, "author": "Frank",
                                                              "email": frank.email, "comment": "Via the API."})
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "pending" and accepted.json()["id"].startswith("c")
    await mod.status_of(accepted.json()["id"], "pending")


async def test_banned_words_bans_and_near_identical_bulk(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    rude = new_reader(stack, readers)
    assert (await rude.comment(guid, path, "What the f*ck, this is fuck-ing nonsense. FUCK this.")).status_code == 303
    [rejected] = await mod.comment_on(guid, "rejected")
    assert "banned_word" in rejected["reasons"]
    assert await author_status(stack, guid, rejected["id"]) == "not_published"

    banned = new_reader(stack, readers)
    ban = await mod.post("/moderation/bans", {"email": banned.email.upper(), "moderator": "Maria", "reason": "abuse"})
    assert ban.status_code == 201
    assert (await banned.comment(guid, path, "I have been here before.")).status_code == 303

    async def banned_rejected() -> list[dict[str, Any]]:
        return [c for c in await mod.comment_on(guid, "rejected") if "banned_email" in c["reasons"]]

    assert await wait(banned_rejected), "a banned address must be rejected"
    # The ban is an event too: who, when, what and why, with the address's hash, never the address.
    records = await topic_records(stack, "broadsheet.comments.submitted")
    [mine] = [r for r in records if b'"comment.ban"' in r.value and json.loads(r.value)["reason"] == "abuse"]
    event = json.loads(mine.value)
    assert (event["moderator"], event["kind"], len(event["hash"])) == ("Maria", "email", 32)
    assert event["requested_at"] and event["ban_id"]
    assert banned.email.encode() not in mine.value and banned.email.upper().encode() not in mine.value

    wave = [new_reader(stack, readers) for _ in range(3)]
    for n, reader in enumerate(wave):
        body = f"Great article!!! Check out my channel for {n + 1} free gift cards www.example-{n}.com"
        assert (await reader.comment(guid, path, body)).status_code == 303

    async def grouped() -> list[dict[str, Any]]:
        held = [c for c in [*await mod.queue("pending"), *await mod.queue("spam")] if c["article_guid"] == guid]
        keys = {c["near_key"] for c in held}
        return held if len(held) == 3 and len(keys) == 1 else []

    held = await wait(grouped)
    assert held, "three near-identical comments should share one near-identical key"
    assert all(c["near_count"] == 3 for c in held)
    for comment in held:  # held by the spam model or for a first-time author: the author cannot tell which
        assert await author_status(stack, guid, comment["id"]) == "awaiting_moderation"
    bulk = await mod.post("/moderation/comments/bulk", {"near_key": held[0]["near_key"], "action": "reject"})
    assert bulk.status_code == 202
    assert len(bulk.json()["accepted"]) + len(bulk.json()["unchanged"]) == 3
    for comment in held:
        record = await mod.status_of(comment["id"], "rejected")
        assert record["actor"] == "moderator"
        assert record["reasons"] == ["rejected_by_moderator", "near-identical group"]
    assert await wait(lambda: _all_turned_down(stack, guid, [c["id"] for c in held]))


async def _all_turned_down(stack: ServiceStack, guid: str, ids: list[str]) -> bool:
    return all([await author_status(stack, guid, cid) == "not_published" for cid in ids])


async def test_three_reports_hide_a_comment(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    grace = new_reader(stack, readers)
    assert (await grace.comment(guid, path, "A comment some readers will not like.")).status_code == 303
    [held] = await mod.comment_on(guid, "pending")
    assert (await mod.post(f"/moderation/comments/{held['id']}/approve")).status_code == 202
    marker = f'id="comment-{held["id"]}"'
    await page_until(stack, path, lambda html: marker in html)

    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        # The page's Report button: a form that comes back to the article (reader 0, who reports again below),
        # refused when it comes from another site's page.
        form = {"comment_post_ID": guid}
        button = await client.post(f"/comments/{held['id']}/report", data=form,
                                   headers={"user-agent": "Reader browser 0"})
        assert button.status_code == 303 and button.headers["location"] == f"{path}#comments"
        forged = await client.post(f"/comments/{held['id']}/report", data=form,
                                   headers={"origin": "https://elsewhere.example", "user-agent": "Reader browser 9"})
        assert forged.status_code == 403
        # Without its article, a report is keyed by the comment, away from the comment's other events: the
        # consumer sends it on, keyed by the article, so the comment's record keeps one writer in order.
        bare = await client.post(f"/comments/{held['id']}/report", json={}, headers={"user-agent": "Reader browser 0"})
        assert bare.status_code == 202

        async def forwarded() -> bool:
            records = await topic_records(stack, "broadsheet.comments.submitted")
            reports = [(r.key, json.loads(r.value)) for r in records]
            reports = [(k, e) for k, e in reports if e.get("event") == "comment.reported" and e["id"] == held["id"]]
            sent = [e for k, e in reports if k == held["id"].encode()]
            return bool(sent) and any(
                k == guid.encode() and e["article_guid"] == guid and e["reported_at"] == sent[0]["reported_at"]
                for k, e in reports
            )

        assert await wait(forwarded)
        # One person reporting again under other browser names is still one reader: a reader is a network.
        for n in range(3):
            report = await client.post(
                f"/comments/{held['id']}/report",
                json={"comment_post_ID": guid, "reason": "offensive"},
                headers={"user-agent": f"Reader browser {n}", "cookie": f"bs_reader=forged{n:08d}"},
            )
            assert report.status_code == 202, report.text
        unknown = await client.post("/comments/nope/report", json={"comment_post_ID": guid})
        assert unknown.status_code == 404
    await asyncio.sleep(0.5)
    assert marker in await page(stack, path), "one reader must not hide a comment"

    # Readers on two other networks (this connection's is the first): three readers hide it.
    for n in range(2):
        transport = httpx.AsyncHTTPTransport(local_address=f"127.{200 + n}.0.{n + 2}")
        async with httpx.AsyncClient(base_url=stack.url("publisher"), transport=transport) as other:
            for _ in range(2):  # the same reader twice counts once
                report = await other.post(
                    f"/comments/{held['id']}/report", json={"comment_post_ID": guid, "reason": "offensive"}
                )
                assert report.status_code == 202, report.text
        if n == 0:
            await asyncio.sleep(0.5)
            assert marker in await page(stack, path), "fewer than three readers must not hide a comment"

    shown = await page_until(stack, path, lambda html: marker not in html)
    assert "No comments yet" in shown
    record = await mod.status_of(held["id"], "reported")
    assert record["actor"] == "readers"
    assert held["id"] in [c["id"] for c in await mod.queue("reported")]


def report_event(comment_id: str, guid: str, reporter: str) -> bytes:
    return json.dumps({
        "event": "comment.reported", "id": comment_id, "article_guid": guid, "reporter": reporter,
        "reported_at": datetime.now(UTC).isoformat(),
    }).encode()


async def test_a_report_in_the_batch_that_approves_a_hidden_comment_counts_alone(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    """Approving a comment that reports hid forgets those reports, and a report right behind the approval (one
    consumer batch) is the first of the new count: it neither hides the comment again nor gets lost."""
    guid, path = await article(stack, producer, mod)
    assert (await new_reader(stack, readers).comment(guid, path, "A view some readers dislike.")).status_code == 303
    [held] = await mod.comment_on(guid, "pending")
    assert (await mod.post(f"/moderation/comments/{held['id']}/approve")).status_code == 202
    await mod.status_of(held["id"], "approved")
    submissions = stack.topic("broadsheet.comments.submitted")
    for n in range(3):
        await producer.send_and_wait(submissions, report_event(held["id"], guid, f"old-reader-{n}"), key=guid.encode())
    await mod.status_of(held["id"], "reported")

    approval = {
        "event": "comment.moderation", "action_id": uuid.uuid4().hex, "id": held["id"], "article_guid": guid,
        "action": "approve", "moderator": "Ann", "requested_at": datetime.now(UTC).isoformat(),
    }
    await producer.send(submissions, json.dumps(approval).encode(), key=guid.encode())
    await producer.send(submissions, report_event(held["id"], guid, "new-reader-0"), key=guid.encode())
    await producer.flush()
    record = await mod.status_of(held["id"], "approved")
    await asyncio.sleep(1.0)
    record = await mod.get(f"/moderation/comments/{held['id']}")
    assert (record["status"], record["reports"]) == ("approved", 0), record["history"]

    for n in range(1, 3):  # with the report kept, two more readers make three
        await producer.send_and_wait(submissions, report_event(held["id"], guid, f"new-reader-{n}"), key=guid.encode())
    record = await mod.status_of(held["id"], "reported")
    assert record["reports"] == 3


async def test_moderators_who_decided_on_an_old_revision_are_refused(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    """Two moderators on one comment: the second one's decision, taken on the revision both saw, is refused (409 at
    the API; by the consumer too when it arrives after the first one's)."""
    guid, path = await article(stack, producer, mod)
    assert (await new_reader(stack, readers).comment(guid, path, "Two moderators, one comment.")).status_code == 303
    [held] = await mod.comment_on(guid, "pending")
    assert held["revision"] == 1
    first = await mod.post(f"/moderation/comments/{held['id']}/approve", {"moderator": "Ann", "expected_revision": 1})
    assert first.status_code == 202, first.text
    await mod.status_of(held["id"], "approved")
    second = await mod.post(f"/moderation/comments/{held['id']}/reject", {"moderator": "Bob", "expected_revision": 1})
    assert second.status_code == 409
    assert (second.json()["comment_status"], second.json()["revision"]) == ("approved", 2)
    assert "changed since revision 1" in second.json()["error"]
    bad = await mod.post(f"/moderation/comments/{held['id']}/reject", {"expected_revision": "1"})
    assert bad.status_code == 400
    # The same from a selection: each comment names the revision it was seen at.
    selected = await mod.post("/moderation/comments/bulk", {
        "action": "reject", "ids": [held["id"]], "revisions": {held["id"]: 1}, "moderator": "Bob",
    })
    assert selected.status_code == 202 and selected.json()["accepted"] == []
    assert "changed since revision 1" in selected.json()["refused"][0]["error"]

    # The same stale decision straight on the topic, as if the API had read the record before Ann's was applied.
    stale = {
        "event": "comment.moderation", "action_id": uuid.uuid4().hex, "id": held["id"], "article_guid": guid,
        "action": "reject", "moderator": "Bob", "requested_at": datetime.now(UTC).isoformat(), "expected_revision": 1,
    }
    await producer.send_and_wait(stack.topic("broadsheet.comments.submitted"), json.dumps(stale).encode(),
                                 key=guid.encode())
    behind = {**stale, "action_id": uuid.uuid4().hex, "action": "spam", "expected_revision": 2, "moderator": "Cy"}
    await producer.send_and_wait(stack.topic("broadsheet.comments.submitted"), json.dumps(behind).encode(),
                                 key=guid.encode())
    record = await mod.status_of(held["id"], "spam")  # applied in order: the stale one before it changed nothing
    assert [(h["status"], h["actor"]) for h in record["history"]] == [
        ("pending", "pipeline"), ("approved", "Ann"), ("spam", "Cy")
    ]


async def test_approvals_that_would_show_what_moderation_refused_are_refused(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    troll = new_reader(stack, readers)
    assert (await troll.comment(guid, path, "Held before the ban.")).status_code == 303
    [held] = await mod.comment_on(guid, "pending")
    assert (await mod.post("/moderation/bans", {"comment_id": held["id"], "moderator": "Ann"})).status_code == 201
    refused = await mod.post(f"/moderation/comments/{held['id']}/approve")
    assert refused.status_code == 409 and refused.json()["banned"] == ["email"]
    selected = await mod.post("/moderation/comments/bulk", {"action": "approve", "ids": [held["id"]]})
    assert selected.status_code == 202 and selected.json()["accepted"] == []
    assert [r["id"] for r in selected.json()["refused"]] == [held["id"]]
    assert "banned" in selected.json()["refused"][0]["error"]
    # A ban made by mistake can be lifted (an event too), and the approval goes through.
    lifted = await mod.client.request(
        "DELETE", "/moderation/bans", json={"comment_id": held["id"], "moderator": "Ann", "reason": "mistake"}
    )
    assert lifted.status_code == 200 and lifted.json() == {"lifted": ["author"]}
    records = await topic_records(stack, "broadsheet.comments.submitted")
    bans = [json.loads(r.value) for r in records if b'"comment.ban' in r.value]
    mine = [(e["event"], e["moderator"]) for e in bans if e.get("comment_id") == held["id"]]
    assert mine == [("comment.ban", "Ann"), ("comment.ban_lifted", "Ann")]
    assert len({r.key for r in records if b'"comment.ban' in r.value and held["id"].encode() in r.value}) == 1
    assert (await mod.post(f"/moderation/comments/{held['id']}/approve")).status_code == 202
    await mod.status_of(held["id"], "approved")

    # A reply whose parent was taken down after the reply came in would show out of its thread.
    parent_author, replier = new_reader(stack, readers), new_reader(stack, readers)
    assert (await parent_author.comment(guid, path, "A parent comment.")).status_code == 303
    [parent] = [c for c in await mod.comment_on(guid, "pending") if c["body"] == "A parent comment."]
    assert (await mod.post(f"/moderation/comments/{parent['id']}/approve")).status_code == 202
    await page_until(stack, path, lambda html: f'id="comment-{parent["id"]}"' in html)
    reply = await replier.comment(guid, path, "A reply to it.", comment_parent=parent["id"])
    assert reply.status_code == 303
    [held_reply] = [c for c in await mod.comment_on(guid, "pending") if c["parent_id"] == parent["id"]]
    assert (await mod.post(f"/moderation/comments/{parent['id']}/reject")).status_code == 202
    await mod.status_of(parent["id"], "rejected")
    orphan = await mod.post(f"/moderation/comments/{held_reply['id']}/approve")
    assert orphan.status_code == 409 and orphan.json()["parent_status"] == "rejected"
    assert (await mod.post(f"/moderation/comments/{parent['id']}/approve")).status_code == 202
    await mod.status_of(parent["id"], "approved")
    assert (await mod.post(f"/moderation/comments/{held_reply['id']}/approve")).status_code == 202


async def test_premoderation_switches_are_audited_and_need_a_known_article(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    unknown = await mod.post("/moderation/premoderation", {"article": f"typo-{guid}", "on": True})
    assert unknown.status_code == 404
    switched = await mod.post(
        "/moderation/premoderation", {"article": guid, "on": True, "moderator": "Ann", "reason": "election night"}
    )
    assert switched.status_code == 200
    seen = await mod.get(f"/moderation/articles/{guid}")
    assert seen["premoderated"] is True and seen["url"].endswith(path) and seen["headline"].startswith("Dockers")
    records = await topic_records(stack, "broadsheet.comments.submitted")
    [switch] = [
        json.loads(r.value) for r in records
        if b'"comment.premoderation"' in r.value and json.loads(r.value)["article_guid"] == guid
    ]
    assert (switch["on"], switch["moderator"], switch["reason"]) == (True, "Ann", "election night")
    assert switch["requested_at"] and switch["switch_id"]
    assert (await new_reader(stack, readers).comment(guid, path, "Held for pre-moderation.")).status_code == 303
    [held] = await mod.comment_on(guid, "pending")
    assert "premoderation" in held["reasons"]


async def test_a_queue_page_says_how_long_the_queue_is(
    stack: ServiceStack, producer: AIOKafkaProducer, mod: Moderation, readers: list[Reader]
) -> None:
    guid, path = await article(stack, producer, mod)
    for n in range(2):
        assert (await new_reader(stack, readers).comment(guid, path, f"Queue entry {n}.")).status_code == 303
    await wait(lambda: _mine(mod, guid, 2))
    answer = await mod.client.get("/moderation/comments", params={"status": "pending", "limit": 1})
    assert answer.status_code == 200 and len(answer.json()) == 1
    assert int(answer.headers["x-total-count"]) >= 2


async def _mine(mod: Moderation, guid: str, count: int) -> bool:
    return len([c for c in await mod.queue("pending") if c["article_guid"] == guid]) >= count


async def test_moderation_api_needs_the_token(stack: ServiceStack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("comments")) as client:
        assert (await client.get("/moderation/comments?status=pending")).status_code == 401
        wrong = await client.get("/moderation/comments?status=pending", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await client.post("/moderation/comments/x/approve")).status_code == 401
        assert (await client.post("/moderation/bans", json={"email": "a@example.org"})).status_code == 401
        right = await client.get(
            "/moderation/comments?status=pending", headers={"Authorization": f"Bearer {MODERATION_TOKEN}"}
        )
        assert right.status_code == 200
        assert isinstance(right.json(), list)
        token = {"Authorization": f"Bearer {MODERATION_TOKEN}"}
        for bad in ("limit=ten", "before=soon", "before=nan", "status=everything"):
            assert (await client.get(f"/moderation/comments?{bad}", headers=token)).status_code == 400, bad
        assert (await client.get("/moderation/comments?before=inf&limit=-5", headers=token)).status_code == 200
        ui = await client.get("/moderation/")
        assert ui.status_code == 200
        assert "script-src 'self'" in ui.headers["content-security-policy"]
        assert "<script>" not in ui.text
