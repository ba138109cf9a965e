"""Malformed records interleaved with valid ones on the same partitions: no consumer crashes or restarts, every
bad record is dead-lettered with its reason and source offset, every valid one gets through, and the valid
drafts' freshness stays within twice that of a clean run measured in the same test (a pair of runs that fails
is measured once more, so one disturbance of a shared machine does not decide)."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from tests.chaos.harness import corpus, headers_of, read_topic
from tests.chaos.infra import Secrets
from tests.chaos.strategies import bad_drafts, bad_submissions, draw_many, huge_draft
from tests.support.drafts import make_draft, wait_for_version
from tests.support.stack import ServiceStack

MAX_DRAFT_BYTES = 2 * 1024 * 1024
POLL_RESOLUTION = 0.25
"""Freshness is measured by polling; a clean p99 under this is taken as this, so that noise of one poll
interval cannot fail the comparison."""


def pids(stack: ServiceStack) -> dict[str, list[int]]:
    result = {}
    for service, procs in stack.processes.items():
        for proc in procs:
            assert proc.poll() is None, f"{service} exited with {proc.returncode}:\n{stack.log(service)[-2000:]}"
        result[service] = [p.pid for p in procs]
    return result


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def valid_drafts(run: str, count: int) -> list[dict[str, Any]]:
    sources = corpus()
    rng = random.Random(run)
    drafts = []
    for i in range(count):
        source = sources[rng.randrange(len(sources))]
        drafts.append(make_draft(f"{run}-{i:04d}", headline=source.title, published=source.published,
                                 section=(source.section, source.section.title())))
    return drafts


async def produce_and_time(
    stack: ServiceStack, valid: list[dict[str, Any]], bad: list[tuple[str, bytes, bool]], seconds: float
) -> tuple[list[float], list[tuple[str, int, int]]]:
    """Produce the valid drafts and the bad records shuffled together at a steady rate over `seconds`; returns
    the valid drafts' freshness (ack → page) and (category, partition, offset) of every bad record."""
    rng = random.Random(len(valid) * 7 + len(bad))
    records: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = []
    for draft in valid:
        records.append(("valid", json.dumps(draft).encode(), draft["guid"].encode(), draft))
    keys = [d["guid"].encode() for d in valid]
    for category, value, keyed in bad:
        key = rng.choice(keys) if keyed else f"other-{uuid.uuid4().hex[:6]}".encode()
        records.append((category, value, key, None))
    rng.shuffle(records)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    acked: dict[str, float] = {}
    fresh: dict[str, float] = {}
    bad_offsets: list[tuple[str, int, int]] = []
    pending: list[asyncio.Future[Any]] = []
    stop = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=5) as client:
            semaphore = asyncio.Semaphore(16)

            async def look(guid: str) -> None:
                async with semaphore:
                    try:
                        if (await client.get(f"/a/{guid}")).status_code == 301:
                            fresh[guid] = time.monotonic() - acked[guid]
                    except httpx.HTTPError:
                        pass

            while not (stop.is_set() and len(fresh) == len(valid)):
                waiting = [g for g in acked if g not in fresh]
                await asyncio.gather(*(look(g) for g in waiting))
                await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    try:
        interval = seconds / max(1, len(records))
        next_at = time.monotonic()
        for category, value, key, draft in records:
            future = await producer.send(stack.topic("newsroom.drafts"), value, key=key)

            def done(f: asyncio.Future[Any], category: str = category, draft: dict[str, Any] | None = draft) -> None:
                meta = f.result()
                if draft is not None:
                    acked[draft["guid"]] = time.monotonic()
                else:
                    bad_offsets.append((category, meta.partition, meta.offset))

            future.add_done_callback(done)
            pending.append(future)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)
        stop.set()
        await asyncio.wait_for(poller, 180)
    finally:
        poller.cancel()
        await producer.stop()
    return list(fresh.values()), bad_offsets


async def dead_letters(stack: ServiceStack, service: str) -> dict[tuple[str, int, int], dict[str, str]]:
    letters = await read_topic(stack.kafka, stack.topic(f"broadsheet.deadletter.{service}"))
    found = {}
    for record in letters:
        headers = headers_of(record)
        key = (headers.get("dlq-source-topic", ""), int(headers.get("dlq-source-partition", -1)),
               int(headers.get("dlq-source-offset", -1)))
        found[key] = {**headers, "_value_len": str(len(record.value or b""))}
    return found


async def wait_dead_lettered(
    stack: ServiceStack, service: str, topic: str, offsets: list[tuple[str, int, int]], within: float = 120
) -> tuple[dict[tuple[str, int, int], dict[str, str]], list[tuple[str, int, int]]]:
    deadline = time.monotonic() + within
    while True:
        letters = await dead_letters(stack, service)
        missing = [o for o in offsets if (topic, o[1], o[2]) not in letters]
        if not missing or time.monotonic() > deadline:
            return letters, missing
        await asyncio.sleep(2)


async def test_bad_drafts_are_dead_lettered_and_valid_ones_published(
    chaos_stack: ServiceStack, chaos_profile: Any
) -> None:
    stack = chaos_stack
    before = pids(stack)
    count, bad_count = chaos_profile.valid_records, chaos_profile.bad_records
    seconds = max(10.0, (count + bad_count) / 100)
    run = f"bad-{uuid.uuid4().hex[:6]}"

    clean, _ = await produce_and_time(stack, valid_drafts(f"{run}-clean", count), [], seconds)
    assert len(clean) == count

    mixed_valid = valid_drafts(f"{run}-mixed", count)
    template = mixed_valid[0]
    huge = [("too_large", huge_draft(template, MAX_DRAFT_BYTES), True) for _ in range(3)]
    bad = draw_many(bad_drafts(template, MAX_DRAFT_BYTES), bad_count - len(huge), seed=1) + huge
    mixed, bad_offsets = await produce_and_time(stack, mixed_valid, bad, seconds)
    assert len(mixed) == count, f"only {len(mixed)} of {count} valid drafts were published"
    assert len(bad_offsets) == len(bad)

    topic = stack.topic("newsroom.drafts")
    letters, missing = await wait_dead_lettered(stack, "ingest", topic, bad_offsets)
    assert not missing, f"{len(missing)} bad records were not dead-lettered, e.g. {missing[:5]}"
    without_reason = [o for o in bad_offsets if not letters[(topic, o[1], o[2])].get("dlq-reason-code")]
    assert not without_reason, f"dead letters without a reason code: {without_reason[:5]}"
    reasons = {letters[(topic, o[1], o[2])]["dlq-reason-code"] for o in bad_offsets}
    assert pids(stack) == before, "a consumer crashed or restarted on malformed input"
    within, told = freshness_verdict(chaos_profile.name, clean, mixed)
    print(f"{told}; with {bad_count} bad records; reasons {reasons}")
    if not within:
        # One more pair of runs, on fresh drafts: on a shared machine a phase can meet a disturbance of its own
        # (in a full suite, once: clean p50 0.19 s, then 0.52 s beside the bad records, 0.08-0.16 s alone). Bad input
        # that does slow valid drafts down fails both pairs.
        clean, _ = await produce_and_time(stack, valid_drafts(f"{run}-clean-again", count), [], seconds)
        mixed, _ = await produce_and_time(stack, valid_drafts(f"{run}-mixed-again", count), bad, seconds)
        within, told = freshness_verdict(chaos_profile.name, clean, mixed)
        print(f"again: {told}")
    assert within, told


def freshness_verdict(profile: str, clean: list[float], mixed: list[float]) -> tuple[bool, str]:
    """Whether the valid drafts' freshness beside bad records stays within twice that of the clean run."""
    clean_p99, mixed_p99 = p99(clean), p99(mixed)
    clean_p50, mixed_p50 = statistics.median(clean), statistics.median(mixed)
    told = f"freshness p50/p99: clean {clean_p50:.2f}/{clean_p99:.2f} s, mixed {mixed_p50:.2f}/{mixed_p99:.2f} s"
    if profile == "long":
        # 1,000 valid drafts: a p99 that means something
        return mixed_p99 <= 2 * max(clean_p99, POLL_RESOLUTION), told
    # 100 valid drafts on a shared 2-core machine: the p99 is the single slowest poll; the median is the stable
    # signal that malformed traffic does not slow valid drafts down
    return mixed_p50 <= 2 * max(clean_p50, POLL_RESOLUTION), told


async def test_bad_comment_submissions_are_dead_lettered(
    chaos_stack: ServiceStack, chaos_profile: Any, chaos_secrets: Secrets
) -> None:
    stack = chaos_stack
    before = pids(stack)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        article = make_draft(f"badc-{uuid.uuid4().hex[:8]}", published=datetime.now(UTC))
        await producer.send_and_wait(stack.topic("newsroom.drafts"), json.dumps(article).encode(),
                                     key=article["guid"].encode())
        await wait_for_version(stack, article["guid"], 1, timeout=60)
        guid = article["guid"]
        count, bad_count = chaos_profile.valid_records // 2, chaos_profile.bad_records // 2

        def submission(i: int) -> dict[str, Any]:
            return {
                "event": "comment.submitted", "id": f"c{uuid.uuid4().hex[:24]}", "article_guid": guid,
                "parent_id": None, "author": f"Reader {i}", "email": f"reader{i}.{uuid.uuid4().hex[:6]}@example.org",
                "url": None, "body": f"A considered reply about the harbour, number {i}.",
                "ip": f"10.9.{i // 250}.{i % 250}", "user_agent": "chaos",
                "submitted_at": datetime.now(UTC).isoformat(),
            }

        valid = [submission(i) for i in range(count)]
        bad = draw_many(bad_submissions(valid[0]), bad_count, seed=2)
        bad.append(("huge", b'{"event": "comment.submitted", "body": "' + b"y" * (2 * 1024 * 1024) + b'"}'))
        records = [("valid", json.dumps(v).encode()) for v in valid] + bad
        random.Random(3).shuffle(records)
        topic = stack.topic("broadsheet.comments.submitted")
        futures = [(category, await producer.send(topic, value, key=guid.encode())) for category, value in records]
        offsets = [(category, (await f).partition, (await f).offset) for category, f in futures]
    finally:
        await producer.stop()

    bad_offsets = [o for o in offsets if o[0] != "valid"]
    letters, missing = await wait_dead_lettered(stack, "comments", topic, bad_offsets)
    assert not missing, f"{len(missing)} bad submissions were not dead-lettered, e.g. {missing[:5]}"
    assert all(letters[(topic, o[1], o[2])].get("dlq-reason-code") for o in bad_offsets)

    async with httpx.AsyncClient(base_url=stack.url("comments"), timeout=10,
                                 headers={"Authorization": f"Bearer {chaos_secrets.moderation_token}"}) as client:
        deadline = time.monotonic() + 60
        unknown = [v["id"] for v in valid]
        while unknown and time.monotonic() < deadline:
            unknown = [cid for cid in unknown if (await client.get(f"/moderation/comments/{cid}")).status_code != 200]
            await asyncio.sleep(1)
    assert not unknown, f"{len(unknown)} valid submissions never reached moderation"
    valid_offsets = {(o[1], o[2]) for o in offsets if o[0] == "valid"}
    wrongly = [k for k in letters if k[0] == topic and (k[1], k[2]) in valid_offsets]
    assert not wrongly, f"valid submissions dead-lettered: {wrongly[:5]}"
    assert pids(stack) == before, "a consumer crashed or restarted on malformed input"

