"""Ingest's newsroom contract on the real Kafka and Redis: dead letters, versions, lifecycle, URLs, gateway."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2

from tests.support.drafts import get, make_draft, page_of, post, wait_for_version
from tests.support.stack import INGEST_TOKEN, PUSH_KEY, ServiceStack


def keys_on_one_partition(n: int, partitions: int = 12) -> list[str]:
    base, found, target, i = uuid.uuid4().hex[:8], [], None, 0
    while len(found) < n:
        guid = f"dlq-{base}-{i}"
        part = (murmur2(guid.encode()) & 0x7FFFFFFF) % partitions
        target = part if target is None else target
        if part == target:
            found.append(guid)
        i += 1
    return found


async def dead_letters(stack: ServiceStack, values: set[bytes], timeout: float = 15) -> dict[bytes, dict[str, str]]:
    consumer = AIOKafkaConsumer(
        stack.topic("broadsheet.deadletter.ingest"), bootstrap_servers=stack.kafka,
        auto_offset_reset="earliest", enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    found: dict[bytes, dict[str, str]] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < len(values):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.value in values:
                        found[r.value] = {k: v.decode() for k, v in r.headers}
    finally:
        await consumer.stop()
    return found


async def test_every_kind_of_bad_draft_is_dead_lettered_and_the_next_one_published(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    guids = keys_on_one_partition(15)
    good = make_draft(guids[-1])
    base = make_draft(guids[0])
    cases: list[tuple[str, bytes, bytes]] = [
        ("not_json", guids[0].encode(), b"{not json"),
        ("invalid_utf8", guids[1].encode(), b'{"guid": "\xff\xfe"}'),
        ("too_large", guids[2].encode(), json.dumps({**base, "guid": guids[2],
                                                      "body_html": "<p>" + "x" * (2 * 1024 * 1024) + "</p>"}).encode()),
        ("missing_guid", guids[3].encode(), json.dumps({k: v for k, v in base.items() if k != "guid"}).encode()),
        ("invalid_version", guids[4].encode(), json.dumps({**base, "guid": guids[4], "version": "three"}).encode()),
        ("unsupported_type", guids[5].encode(), json.dumps({**base, "guid": guids[5], "type": "picture"}).encode()),
        ("incomplete_draft", guids[6].encode(), json.dumps({**base, "guid": guids[6], "headline": ""}).encode()),
        ("incomplete_draft", guids[7].encode(),
         json.dumps({k: v for k, v in {**base, "guid": guids[7]}.items() if k != "body_html"}).encode()),
        ("invalid_date", guids[8].encode(), json.dumps({**base, "guid": guids[8],
                                                         "firstcreated": "20/03/2024 09:30"}).encode()),
        ("key_mismatch", guids[9].encode(), json.dumps({**base, "guid": guids[8] + "-other"}).encode()),
        # Valid JSON syntax that Python refuses to read: an integer of more than 4,300 digits.
        ("not_json", guids[10].encode(),
         json.dumps({**base, "guid": guids[10]}).encode()[:-1] + b', "wire_count": ' + b"9" * 5000 + b"}"),
        # Small in bytes, but nested markup costs the sanitizer the square of its length.
        ("too_large", guids[11].encode(), json.dumps({**base, "guid": guids[11],
                                                       "body_html": "<ul><li>" * 6000 + "deep"}).encode()),
        # A draft well under the limit whose article event is not: every ">" becomes "&gt;" once sanitized. Sent,
        # the broker would refuse the event, and the batch, read again, would fail the same way for ever.
        ("event_too_large", guids[12].encode(), json.dumps({**base, "guid": guids[12],
                                                             "body_html": "<p>" + "> " * 500_000 + "</p>"}).encode()),
        # Text cut by "&" into many pieces costs the sanitizer the square of their number.
        ("too_large", guids[13].encode(), json.dumps({**base, "guid": guids[13],
                                                      "body_html": "<p>" + "& " * 30_000 + "</p>"}).encode()),
    ]
    topic = stack.topic("newsroom.drafts")
    for _, key, value in cases:
        await producer.send_and_wait(topic, value, key=key)
    await post(producer, stack, good)

    await wait_for_version(stack, good["guid"], 1, timeout=15)
    letters = await dead_letters(stack, {value for _, _, value in cases})
    for reason, _, value in cases:
        assert value in letters, f"{reason} was not dead-lettered with its original bytes"
        headers = letters[value]
        assert headers["dlq-reason-code"] == reason, (reason, headers["dlq-reason"])
        assert headers["dlq-source-topic"] == topic
        assert int(headers["dlq-source-offset"]) >= 0
        assert headers["dlq-reason"]
    assert json.loads(letters[cases[3][2]]["dlq-errors"])[0]["loc"] == ["guid"]
    # The partition keeps flowing: the batch holding the bad drafts was committed, not read again for ever.
    later = make_draft(guids[13])
    await post(producer, stack, later)
    await wait_for_version(stack, later["guid"], 1, timeout=15)


async def test_older_version_never_overwrites_and_a_duplicate_emits_nothing(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    draft = make_draft()
    v3 = {**draft, "version": 3, "headline": "Version three headline"}
    v2 = {**draft, "version": 2, "headline": "Version two headline"}
    await post(producer, stack, v3)
    await wait_for_version(stack, draft["guid"], 3)
    await post(producer, stack, v2)
    await post(producer, stack, v3)
    await asyncio.sleep(2.0)
    _, _, body = await page_of(stack, draft["guid"])
    assert "Version three headline" in body and "Version two headline" not in body

    consumer = AIOKafkaConsumer(stack.topic("broadsheet.articles"), bootstrap_servers=stack.kafka,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                events += [json.loads(r.value) for r in records if r.key == draft["guid"].encode()]
    finally:
        await consumer.stop()
    assert [e["version"] for e in events] == [3], "v3 once; the stale v2 and the duplicate v3 emit nothing"


async def test_kill_is_final_and_survives_a_replay_of_the_article_topics(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    draft = make_draft()
    await post(producer, stack, draft)
    path, _ = await wait_for_version(stack, draft["guid"], 1)
    await post(producer, stack, {**draft, "version": 2, "pubstatus": "canceled"})

    async def gone() -> bool:
        return (await get(stack, path)).status_code == 410
    assert await stack.wait_for(gone, timeout=10)

    # Replay: the publisher rebuilds its whole site from the article topics; ingest replays its state too.
    import redis.asyncio as aioredis

    from services.publisher.config import PublisherSettings
    from services.publisher.rebuild import rebuild_site

    client = aioredis.Redis.from_url(stack.redis)
    try:
        settings = stack.settings("publisher", PublisherSettings)
        await rebuild_site(settings, client, settle_seconds=0.3, keep_old_seconds=0.3)
        assert (await get(stack, path)).status_code == 410
        # Ingest loses its memory (Redis keys gone) and a newer usable version arrives: still dead.
        async for key in client.scan_iter(match=f"{stack.namespace}:ingest:*"):
            await client.delete(key)
    finally:
        await client.aclose()
    await post(producer, stack, {**draft, "version": 3})
    await asyncio.sleep(3)
    assert (await get(stack, path)).status_code == 410
    assert (await get(stack, f"/a/{draft['guid']}")).status_code == 410


async def test_withheld_hides_without_killing(stack: ServiceStack, producer: AIOKafkaProducer) -> None:
    draft = make_draft()
    await post(producer, stack, draft)
    path, _ = await wait_for_version(stack, draft["guid"], 1)
    await post(producer, stack, {**draft, "version": 2, "pubstatus": "withheld"})

    async def hidden() -> bool:
        return (await get(stack, path)).status_code == 404
    assert await stack.wait_for(hidden, timeout=10)
    await post(producer, stack, {**draft, "version": 3, "headline": "Back after legal review"})
    path3, body = await wait_for_version(stack, draft["guid"], 3)
    assert path3 == path and "Back after legal review" in body


async def test_embargo_holds_until_the_instant_across_an_ingest_restart(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    release = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=12)
    draft = make_draft(embargoed=release.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       headline=f"Embargoed results {uuid.uuid4().hex[:6]}")
    await post(producer, stack, draft)
    await asyncio.sleep(2)
    assert (await page_of(stack, draft["guid"]))[0] == 404
    assert draft["headline"] not in (await get(stack, "/")).text

    stack.stop("ingest")
    stack.start("ingest")
    stack.wait_ready(services=("ingest",))
    assert (await page_of(stack, draft["guid"]))[0] == 404

    while datetime.now(UTC) < release:
        status = (await page_of(stack, draft["guid"]))[0]
        # a page seen now was released before now: only an answer that arrives before the instant counts
        assert status == 404 or datetime.now(UTC) >= release, "visible before its embargo"
        await asyncio.sleep(0.2)

    async def visible() -> bool:
        return (await page_of(stack, draft["guid"]))[0] == 200
    assert await stack.wait_for(visible, timeout=2.0, interval=0.05), "not visible within 2 s of the embargo"


async def test_an_embargoed_story_is_dated_when_its_embargo_lifts(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    """Sent days ahead, with firstpublished stamped then, the story still goes public (and is dated, and filed
    under its URL's date) at its embargo: readers never see it dated before they could read it."""
    sent = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    release = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    stamp = sent.strftime("%Y-%m-%dT%H:%M:%SZ")
    draft = make_draft(published=sent, firstpublished=stamp, embargoed=release.strftime("%Y-%m-%dT%H:%M:%SZ"))
    draft["versioncreated"] = stamp
    await post(producer, stack, draft)
    path, body = await wait_for_version(stack, draft["guid"], 1, timeout=15)
    assert f"/{release:%Y/%m/%d}/" in path
    assert f'"datePublished":"{release.isoformat()}"' in body


async def test_same_slugline_gets_distinct_urls_and_one_guid_keeps_its_url(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    slugline = f"budget vote {uuid.uuid4().hex[:6]}"
    a = make_draft(slugline=slugline)
    b = make_draft(slugline=slugline)
    await post(producer, stack, a)
    path_a, _ = await wait_for_version(stack, a["guid"], 1)
    await post(producer, stack, b)
    path_b, _ = await wait_for_version(stack, b["guid"], 1)
    assert path_a != path_b and path_b == path_a + "-2"
    await post(producer, stack, {**a, "version": 2, "headline": "A new headline, same story"})
    path_a2, _ = await wait_for_version(stack, a["guid"], 2)
    assert path_a2 == path_a


async def test_evolvedfrom_keeps_the_url_of_the_story_it_rewrites(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    first = make_draft()
    await post(producer, stack, first)
    path, _ = await wait_for_version(stack, first["guid"], 1)
    rewrite = make_draft(evolvedfrom=first["guid"], headline="Update: talks resume at the harbour")
    await post(producer, stack, rewrite)
    path2, body = await wait_for_version(stack, rewrite["guid"], 1)
    assert path2 == path and "Update: talks resume" in body


async def test_correction_shows_a_notice_and_keeps_date_published(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    draft = make_draft()
    await post(producer, stack, draft)
    _, first = await wait_for_version(stack, draft["guid"], 1)
    corrected = {**draft, "version": 2, "signal": [{"code": "sig:correction"}],
                 "ednote": "Correction: an earlier version misstated the pay rise.",
                 "versioncreated": "2024-03-21T10:00:00Z"}
    await post(producer, stack, corrected)
    _, body = await wait_for_version(stack, draft["guid"], 2)
    assert 'class="correction"' in body and "misstated the pay rise" in body
    assert '"datePublished":"2024-03-20T09:30:00+00:00"' in body
    assert '"dateModified":"2024-03-21T10:00:00+00:00"' in body

    # An ordinary update later does not take the notice down: a published correction stays on the record.
    await post(producer, stack, {**draft, "version": 3, "ednote": "Adds a quote from the union",
                                 "versioncreated": "2024-03-22T10:00:00Z"})
    _, updated = await wait_for_version(stack, draft["guid"], 3)
    assert 'class="correction"' in updated and "misstated the pay rise" in updated
    # A newer correction replaces it.
    await post(producer, stack, {**draft, "version": 4, "signal": [{"code": "sig:correction"}],
                                 "ednote": "Correction: the vote was on Friday.",
                                 "versioncreated": "2024-03-23T10:00:00Z"})
    _, recorrected = await wait_for_version(stack, draft["guid"], 4)
    assert "the vote was on Friday" in recorrected and "misstated the pay rise" not in recorrected


async def test_http_gateway(stack: ServiceStack) -> None:
    draft = make_draft()
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as client:
        assert (await client.post("/drafts", json=draft)).status_code == 401
        wrong = await client.post("/drafts", json=draft, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        auth = {"authorization": f"Bearer {INGEST_TOKEN}"}
        invalid = await client.post("/drafts", json={**draft, "version": "x"}, headers=auth)
        assert invalid.status_code == 422
        assert invalid.json()["reason_code"] == "invalid_version" and invalid.json()["errors"]
        huge = await client.post("/drafts", content=b"{" + b" " * (3 * 1024 * 1024) + b"}", headers=auth)
        assert huge.status_code == 413
        # Valid by the schema, but sanitizing leaves nothing to show: refused now, not dead-lettered later.
        for field, value in (("headline", "<script>alert(1)</script>"), ("body_html", "<script>x()</script>")):
            empty = await client.post("/drafts", json={**make_draft(), field: value}, headers=auth)
            assert empty.status_code == 422, field
            assert empty.json()["reason_code"] == "unpublishable" and empty.json()["errors"][0]["loc"] == [field]
        stamped = {k: v for k, v in make_draft().items() if k != "version"}
        by_time = await client.post("/drafts", json=stamped, headers=auth)
        assert by_time.status_code == 202 and isinstance(by_time.json()["version"], int)
        accepted = await client.post("/drafts", json=draft, headers=auth)
        assert accepted.status_code == 202
        answer = accepted.json()
        assert answer["guid"] == draft["guid"] and answer["version"] == 1 and answer["receipt"]
        raw = json.dumps(make_draft()).encode()
        signature = "sha1=" + hmac.new(PUSH_KEY.encode(), raw, hashlib.sha1).hexdigest()
        push = await client.post("/push", content=raw, headers={"x-superdesk-signature": signature})
        assert push.status_code == 201
        bad = await client.post("/push", content=raw, headers={"x-superdesk-signature": "sha1=00"})
        assert bad.status_code == 403
    await wait_for_version(stack, draft["guid"], 1)

    async def receipt_logged() -> bool:
        return any(line.get("receipt") == answer["receipt"] and line.get("event") == "page rendered"
                   for line in stack.log_lines("publisher"))
    assert await stack.wait_for(receipt_logged, timeout=5), "the receipt id must reach the publisher's render log"
