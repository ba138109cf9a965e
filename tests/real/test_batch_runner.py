"""A batch that fails outside any one record's handling is read again, never committed unprocessed.

Per-record failures are dead-lettered by the runner. What fails around the records (a batch-wide read in
`prepare`, a dead-letter producer that cannot send) used to escape to FastStream, whose acknowledgement policy
then committed the batch: every record in it, valid or not, was skipped without a trace.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from shared.kafka import BatchRunner, Outbox, make_broker, subscribe
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, ensure_topics


async def test_a_batch_whose_preparation_fails_is_read_again_and_every_record_handled(
    infra: dict[str, str],
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}runner.input"
    await ensure_topics(infra["kafka"], specs=[TopicSpec(topic, "test")], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all")
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, f"record-{n}".encode(), key=b"story")
    finally:
        await producer.stop()

    settings = ServiceSettings(kafka_bootstrap_servers=infra["kafka"], kafka_topic_prefix=prefix)
    broker = make_broker(settings, "runner-test")
    runner = BatchRunner("runner-test", broker, settings, backoff_seconds=0.05)
    preparations = 0
    handled: list[bytes] = []
    all_handled = asyncio.Event()

    async def prepare(records: Sequence[ConsumerRecord[Any, Any]], _: Outbox) -> None:
        nonlocal preparations
        preparations += 1
        if preparations == 1:
            raise ValueError("a batch-wide read that fails in a way no retry policy foresaw")

    async def handle(record: ConsumerRecord[Any, Any], _: Outbox) -> str:
        handled.append(record.value)
        if len(set(handled)) == 5:
            all_handled.set()
        return "processed"

    subscribe(runner, {topic: handle}, prepare=prepare, description="test input")
    await broker.start()
    try:
        await asyncio.wait_for(all_handled.wait(), timeout=60)
    finally:
        await broker.stop()
        await runner.close()
    assert preparations >= 2, "the failed batch must have been prepared again"
    assert sorted(set(handled)) == [f"record-{n}".encode() for n in range(5)]
