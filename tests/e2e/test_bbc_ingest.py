"""Every BBC article of the shared research corpus, replayed as a ninjs draft, ingests without error."""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.corpus_bbc import load_bbc, to_ninjs
from tests.support.stack import ServiceStack


async def test_whole_bbc_corpus_ingests_without_a_dead_letter(
    private_stack: ServiceStack, producer: AIOKafkaProducer, shared_data: Path
) -> None:
    stack = private_stack
    articles = load_bbc()
    assert len(articles) == 2225
    drafts = [to_ninjs(a, guid=f"{stack.prefix}bbc-{a.category}-{a.number}") for a in articles]
    topic = stack.topic("newsroom.drafts")
    futures = [await producer.send(topic, json.dumps(d).encode(), key=d["guid"].encode()) for d in drafts]
    await asyncio.gather(*futures)

    consumer = AIOKafkaConsumer(
        stack.topic("broadsheet.articles"), bootstrap_servers=stack.kafka, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: set[str] = set()
    wanted = {d["guid"] for d in drafts}
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while seen < wanted and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                seen.update(r.key.decode() for r in records if r.key and r.key.decode() in wanted)
    finally:
        await consumer.stop()
    assert seen == wanted, f"{len(wanted - seen)} drafts produced no article event"

    dead = [line for line in stack.log_lines("ingest") if line.get("event") == "dead-lettered"
            and str(line.get("topic", "")).endswith("newsroom.drafts") and "bbc-" in json.dumps(line)]
    assert not dead, dead[:3]
    # The publisher follows the articles topic on its own clock: wait for it, then every page is there.
    await stack.wait_idle(timeout=120)
    async with httpx.AsyncClient(base_url=stack.url("publisher"), follow_redirects=True) as client:
        for sample in drafts[:: len(drafts) // 20]:
            page = await client.get(f"/a/{sample['guid']}")
            assert page.status_code == 200 and sample["headline"][:40] in html.unescape(page.text), sample["guid"]
