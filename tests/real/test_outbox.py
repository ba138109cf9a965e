"""Outbox sends on the real broker: what a consumer emits arrives keyed, with its headers, on the declared topic.

Sends skip FastStream's publish pipeline and go to the broker's aiokafka producer (`direct_producer`). That
producer sits in a private FastStream attribute: the first test fails when an upgrade moves it, instead of
letting every service silently fall back to the slower path.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import MAX_EVENT_BYTES, Outbox, Reject, direct_producer, make_broker
from shared.settings import ServiceSettings
from shared.topics import STORY_SIZED, TopicSpec, ensure_topics


async def test_outbox_sends_through_aiokafka_and_keeps_key_headers_and_order(infra: dict[str, str]) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra["kafka"], specs=[TopicSpec(topic, "bench")])
    settings = ServiceSettings(kafka_bootstrap_servers=infra["kafka"])
    broker = make_broker(settings, "outbox-test")
    declared = broker.publisher(topic)
    await broker.start()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra["kafka"], auto_offset_reset="earliest")
    try:
        assert direct_producer(broker) is not None, "FastStream moved its aiokafka producer: see direct_producer"
        outbox = Outbox(broker)
        for n in range(5):
            await outbox.send(declared, "story-1", f'{{"n": {n}}}'.encode(), {"receipt": f"r-{n}"})
        await outbox.send(topic, "story-2", b'{"n": "by name"}')
        await outbox.flush()

        await consumer.start()
        received = []
        while len(received) < 6:
            for records in (await consumer.getmany(timeout_ms=5000)).values():
                received.extend(records)
        by_key: dict[bytes, list[tuple[bytes, dict[str, bytes]]]] = {}
        for record in received:
            by_key.setdefault(record.key, []).append((record.value, dict(record.headers)))
        assert [value for value, _ in by_key[b"story-1"]] == [f'{{"n": {n}}}'.encode() for n in range(5)]
        assert [headers["receipt"] for _, headers in by_key[b"story-1"]] == [f"r-{n}".encode() for n in range(5)]
        assert all(headers["content-type"] == b"application/json" for _, headers in by_key[b"story-1"])
        assert by_key[b"story-2"] == [(b'{"n": "by name"}', {"content-type": b"application/json"})]
    finally:
        await consumer.stop()
        await broker.stop()
        await delete_topic(infra["kafka"], topic)


async def test_an_event_its_topic_would_refuse_is_rejected_before_it_is_sent(infra: dict[str, str]) -> None:
    """The limit is what a story-sized topic really takes: an event right at it is acknowledged; one byte more is a
    `Reject` (its record is dead-lettered), because sent, the broker's refusal would fail the batch each time."""
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra["kafka"], specs=[TopicSpec(topic, "bench", STORY_SIZED)])
    broker = make_broker(ServiceSettings(kafka_bootstrap_servers=infra["kafka"]), "outbox-test")
    await broker.start()
    try:
        outbox = Outbox(broker)
        envelope = len("story-1") + len("content-type") + len("application/json")
        await outbox.send(topic, "story-1", b"x" * (MAX_EVENT_BYTES - envelope))
        await outbox.flush()

        with pytest.raises(Reject) as refused:
            await outbox.send(topic, "story-1", b"x" * (MAX_EVENT_BYTES - envelope + 1))
        assert refused.value.reason_code == "event_too_large"
        assert outbox.pending == []
    finally:
        await broker.stop()
        await delete_topic(infra["kafka"], topic)


async def test_batches_keep_each_keys_order_and_partition_past_a_full_batch(infra: dict[str, str]) -> None:
    """Records go out in one aiokafka batch per partition; a full batch (256 KB) goes and the next one opens.
    Across batches each key keeps its order, and each record lands on the partition the producers' own
    partitioner gives its key, where a record sent one by one with the same key lands too."""
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra["kafka"], partitions=6, specs=[TopicSpec(topic, "bench")])
    broker = make_broker(ServiceSettings(kafka_bootstrap_servers=infra["kafka"]), "outbox-test")
    await broker.start()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra["kafka"], auto_offset_reset="earliest")
    keys = [f"story-{n}" for n in range(4)]
    try:
        producer = direct_producer(broker)
        assert producer is not None
        for key in keys:  # one by one, through aiokafka's accumulator and `key_partitioner`
            await (await producer.send(topic, b"alone", key=key.encode()))
        outbox = Outbox(broker)
        for n in range(1200):  # 1.2 MB over 4 keys: several full batches per partition
            await outbox.send(topic, keys[n % 4], f"{n:06d}".encode() + b"." * 1000)
        await outbox.flush()

        await consumer.start()
        received = []
        while len(received) < 1204:
            for records in (await consumer.getmany(timeout_ms=5000)).values():
                received.extend(records)
        assert len(received) == 1204
        for key in keys:
            mine = [r for r in received if r.key == key.encode()]
            assert len({r.partition for r in mine}) == 1, f"{key} spread over partitions"
            assert mine[0].value == b"alone"
            numbers = [int(r.value[:6]) for r in mine[1:]]
            assert numbers == sorted(numbers) and len(numbers) == 300
    finally:
        await consumer.stop()
        await broker.stop()
        await delete_topic(infra["kafka"], topic)


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
