"""The vertical slice on the real Kafka and Redis: a draft produced by a plain Kafka client becomes a page."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support.stack import ServiceStack


def draft(guid: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "guid": guid,
        "version": version,
        "type": "text",
        "pubstatus": "usable",
        "headline": f"Harbour cranes return to work {guid[-6:]}",
        "body_html": "<p>The port reopened on Tuesday after a week of repairs.</p><p>Dockers welcomed it.</p>",
        "service": [{"code": "business", "name": "Business"}],
        "firstcreated": "2024-03-20T09:30:00Z",
        "versioncreated": "2024-03-20T09:30:00Z",
        **extra,
    }


def same_partition_keys(n: int) -> list[str]:
    """Guids that hash to one partition, so a bad record sits right in front of a good one."""
    from aiokafka.partitioner import murmur2

    base = uuid.uuid4().hex[:8]
    found: list[str] = []
    target = None
    i = 0
    while len(found) < n:
        guid = f"slice-{base}-{i}"
        part = (murmur2(guid.encode()) & 0x7FFFFFFF) % 12
        if target is None:
            target = part
        if part == target:
            found.append(guid)
        i += 1
    return found


async def fetch_page(stack: ServiceStack, guid: str, timeout: float = 5.0) -> httpx.Response | None:
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        async def ready() -> httpx.Response | None:
            redirect = await client.get(f"/a/{guid}")
            if redirect.status_code != 301:
                return None
            page = await client.get(redirect.headers["location"])
            return page if page.status_code == 200 else None

        return await stack.wait_for(ready, timeout=timeout)  # type: ignore[no-any-return]


async def test_draft_to_page_within_five_seconds(stack: ServiceStack, producer: AIOKafkaProducer) -> None:
    guid = f"slice-{uuid.uuid4().hex}"
    started = time.monotonic()
    await producer.send_and_wait(stack.topic("newsroom.drafts"), json.dumps(draft(guid)).encode(), key=guid.encode())
    page = await fetch_page(stack, guid)
    elapsed = time.monotonic() - started
    assert page is not None, f"no page for {guid} within 5 s:\n{stack.log('ingest')[-2000:]}"
    assert elapsed < 5.0
    assert f"Harbour cranes return to work {guid[-6:]}" in page.text
    assert "The port reopened on Tuesday" in page.text
    assert f'<meta name="broadsheet:guid" content="{guid}">' in page.text


async def test_every_consumer_reports_its_lag(stack: ServiceStack, producer: AIOKafkaProducer) -> None:
    """The lag alerts and dashboards read `broadsheet_consumer_lag` from each service: a draft reaches all four
    consumers (comments and related read its article event), and each must then report the partitions it read."""
    guid = f"slice-{uuid.uuid4().hex}"
    await producer.send_and_wait(stack.topic("newsroom.drafts"), json.dumps(draft(guid)).encode(), key=guid.encode())
    assert await fetch_page(stack, guid) is not None
    async with httpx.AsyncClient() as client:
        async def lag_reported(service: str) -> bool:
            text = (await client.get(stack.url(service, "/metrics"))).text
            return any(
                line.startswith("broadsheet_consumer_lag{") and f'service="{service}"' in line
                for line in text.splitlines()
            )

        for service in ("ingest", "related", "comments", "publisher"):
            assert await stack.wait_for(lambda s=service: lag_reported(s), timeout=10), f"{service} reports no lag"


async def test_bad_drafts_are_dead_lettered_and_the_next_one_is_published(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    bad_json_key, missing_guid_key, good = same_partition_keys(3)
    not_json = b'{"guid": "oops", this is not json'
    no_guid = json.dumps({k: v for k, v in draft(missing_guid_key).items() if k != "guid"}).encode()
    topic = stack.topic("newsroom.drafts")
    await producer.send_and_wait(topic, not_json, key=bad_json_key.encode())
    await producer.send_and_wait(topic, no_guid, key=missing_guid_key.encode())
    await producer.send_and_wait(topic, json.dumps(draft(good)).encode(), key=good.encode())

    page = await fetch_page(stack, good, timeout=10)
    assert page is not None, "the valid draft behind two bad ones was not published"

    consumer = AIOKafkaConsumer(
        stack.topic("broadsheet.deadletter.ingest"), bootstrap_servers=stack.kafka,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    letters: dict[bytes, dict[str, str]] = {}
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(letters) < 2:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.value in (not_json, no_guid):
                        letters[r.value] = {k: v.decode() for k, v in r.headers}
    finally:
        await consumer.stop()
    assert set(letters) == {not_json, no_guid}, "both bad drafts must be dead-lettered with their original bytes"
    assert letters[not_json]["dlq-reason-code"] == "not_json"
    assert letters[no_guid]["dlq-reason-code"] == "missing_guid"
    for headers in letters.values():
        assert headers["dlq-source-topic"] == topic
        assert headers["dlq-source-offset"].isdigit()
        assert headers["dlq-consumer"].endswith("broadsheet-ingest")


async def test_usr1_logs_where_each_task_of_a_service_waits(stack: ServiceStack) -> None:
    """What an operator (or a failing chaos test) asks a consumer that stopped moving without an error."""
    where = await asyncio.to_thread(stack.dump_stacks, ["related"])
    assert "related-archive" in where and "_follow_archive" in where, where
    assert all(proc.poll() is None for proc in stack.processes["related"])  # the process carries on
