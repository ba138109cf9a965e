"""A consumer that works through a busy partition while its other partitions are idle gets the busy partition's next
records as soon as it has taken the last ones, not half a second later.

aiokafka fetches a partition again only when its buffered records are all handed out, and sends nothing to a broker
while a fetch to it is in flight. While the busy partition's records are worked through, the idle partitions are
fetched on their own, and the broker holds that fetch until data comes or `fetch_max_wait_ms` passes. A drained
partition waited out the rest of that time: at aiokafka's default (500 ms), about 0.4 s for every fetch's worth of
records. `consumer_options` bounds the hold.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from shared.kafka import FETCH_MAX_WAIT_MS, BatchRunner, Outbox, consumer_options, make_broker, subscribe
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, ensure_topics

SERVICE = "fetch-wait-test"
RECORD_BYTES = 256 * 1024
RECORDS = 80  # about 16 per fetch (4 MB): five fetches
PER_BATCH = 4
WORK_SECONDS = 0.05  # per batch: each fetch's records stay buffered longer than aiokafka's 0.1 s prefetch backoff


async def test_a_drained_partition_is_fetched_again_without_waiting_out_a_long_poll(infra: dict[str, str]) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}fetch-wait.input"
    await ensure_topics(infra["kafka"], specs=[TopicSpec(topic, "test")], partitions=4)
    settings = ServiceSettings(kafka_bootstrap_servers=infra["kafka"], kafka_topic_prefix=prefix)
    assert consumer_options(settings, SERVICE)["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all", max_request_size=2 * RECORD_BYTES)
    await producer.start()
    try:
        for number in range(RECORDS):
            await producer.send(topic, number.to_bytes(4, "big") * (RECORD_BYTES // 4), partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    broker = make_broker(settings, SERVICE)
    runner = BatchRunner(SERVICE, broker, settings)
    batch_starts: list[float] = []
    handled: list[int] = []

    async def work(records: Sequence[ConsumerRecord[Any, Any]], _: Outbox) -> None:
        batch_starts.append(time.monotonic())
        await asyncio.sleep(WORK_SECONDS)

    async def handle(record: ConsumerRecord[Any, Any], _: Outbox) -> str:
        handled.append(int.from_bytes(record.value[:4], "big"))
        return "processed"

    subscribe(runner, {topic: handle}, description="test input", max_records=PER_BATCH, prepare=work)
    await broker.start()
    try:
        deadline = time.monotonic() + 60
        while len(handled) < RECORDS:
            assert time.monotonic() < deadline, f"only {len(handled)} of {RECORDS} records handled"
            await asyncio.sleep(0.05)
    finally:
        await broker.stop()

    assert handled == list(range(RECORDS))
    waited = [later - earlier - WORK_SECONDS for earlier, later in itertools.pairwise(batch_starts)]
    # Five fetches: four times the partition ran dry. Each such wait was about 0.4 s at the default hold; now each is
    # at most the hold, 0.1 s, and the rest of the batches follow each other at once.
    assert sum(waited) < 1.0, f"waited {sum(waited):.2f} s between batches; longest {max(waited):.2f} s"
