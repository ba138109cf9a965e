"""A group's committed offsets, read so that a coordinator still loading them is never taken for "none".

The publisher decides from them whether an empty Redis lost a site the log still has (and must be rebuilt):
right after a broker starts, aiokafka reports a loading coordinator as an empty answer.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError
from aiokafka.structs import OffsetAndMetadata

from shared.kafka import committed_offsets
from shared.topics import TopicSpec, ensure_topics


async def test_committed_offsets_of_a_group_that_consumed_and_of_one_that_did_not(infra: dict[str, str]) -> None:
    topic = f"test.committed.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra["kafka"], specs=[TopicSpec(topic, "test")], partitions=3)
    partitions = [TopicPartition(topic, p) for p in range(3)]
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"])
    consumer = AIOKafkaConsumer(bootstrap_servers=infra["kafka"], group_id=f"{topic}.reader", enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=infra["kafka"])
    await producer.start()
    await consumer.start()
    await admin.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(topic, b"x", partition=1)
        consumer.assign(partitions)
        await consumer.commit({TopicPartition(topic, 1): OffsetAndMetadata(4, "")})

        assert await committed_offsets(admin, f"{topic}.reader", partitions) == {
            TopicPartition(topic, 0): -1, TopicPartition(topic, 1): 4, TopicPartition(topic, 2): -1,
        }
        assert set((await committed_offsets(admin, f"{topic}.never", partitions)).values()) == {-1}
    finally:
        await admin.delete_topics([topic])
        await admin.close()
        await consumer.stop()
        await producer.stop()


class _LoadingCoordinator:
    """What aiokafka hands back while the group coordinator loads its offsets: an answer without partitions."""

    async def list_consumer_group_offsets(self, group: str, partitions: list[TopicPartition]) -> dict[object, object]:
        return {}


async def test_an_answer_without_the_partitions_is_a_retriable_error_not_an_empty_group() -> None:
    with pytest.raises(CoordinatorLoadInProgressError) as raised:
        await committed_offsets(_LoadingCoordinator(), "broadsheet-publisher", [TopicPartition("a", 0)])  # type: ignore[arg-type]
    assert raised.value.retriable
