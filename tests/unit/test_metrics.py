"""The remembered metric children count into the same series as `labels()`; consumer lag follows the partitions."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

from aiokafka import TopicPartition

from services.related.worker import Ownership
from shared.kafka import report_lag
from shared.metrics import CONSUMER_LAG, HANDLER_SECONDS, MESSAGES, REGISTRY, labelled


def test_labelled_returns_the_child_labels_returns_and_counts_into_its_series() -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    child = labelled(MESSAGES, service, "topic-a", "processed")
    assert child is MESSAGES.labels(service, "topic-a", "processed")
    assert labelled(MESSAGES, service, "topic-a", "processed") is child
    labelled(MESSAGES, service, "topic-a", "processed").inc()
    labelled(MESSAGES, service, "topic-a", "processed").inc()
    labelled(MESSAGES, service, "topic-a", "stale").inc()
    series = {"service": service, "topic": "topic-a"}
    assert REGISTRY.get_sample_value("broadsheet_messages_total", {**series, "outcome": "processed"}) == 2
    assert REGISTRY.get_sample_value("broadsheet_messages_total", {**series, "outcome": "stale"}) == 1


def test_labelled_keeps_each_metrics_children_apart() -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    labelled(HANDLER_SECONDS, service, "topic-a").observe(0.003)
    series = {"service": service, "topic": "topic-a"}
    assert REGISTRY.get_sample_value("broadsheet_handler_seconds_count", series) == 1
    assert REGISTRY.get_sample_value("broadsheet_handler_seconds_bucket", {**series, "le": "0.0025"}) == 0
    assert REGISTRY.get_sample_value("broadsheet_handler_seconds_bucket", {**series, "le": "0.005"}) == 1


class AssignedConsumer:
    """The three things `report_lag` reads from aiokafka's consumer: the partitions it holds, each one's high-water
    mark as of its last fetch, and its position (the next record it hands out)."""

    def __init__(self, highwater: dict[TopicPartition, int], positions: dict[TopicPartition, int]) -> None:
        self.highwaters = highwater
        self.positions = positions

    def highwater(self, partition: TopicPartition) -> int | None:
        assert partition in self.highwaters, "Partition is not assigned"
        return self.highwaters[partition]

    async def position(self, partition: TopicPartition) -> int:
        if partition not in self.positions:  # just assigned: aiokafka waits until it knows where to start
            await asyncio.Event().wait()
        return self.positions[partition]

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)


async def test_lag_is_reported_per_partition_and_dropped_with_the_partition() -> None:
    def lag(partition: int) -> float | None:
        labels = {"service": "lag-unit", "topic": "t.lag", "partition": str(partition)}
        return REGISTRY.get_sample_value("broadsheet_consumer_lag", labels)

    zero, one = TopicPartition("t.lag", 0), TopicPartition("t.lag", 1)
    consumer = AssignedConsumer({zero: 100, one: 10}, {zero: 42, one: 10})
    reported: set[TopicPartition] = set()
    await report_lag("lag-unit", consumer, reported)  # type: ignore[arg-type]
    assert (lag(0), lag(1)) == (58, 0)
    del consumer.highwaters[one]  # a rebalance gave partition 1 to another replica: only it reports it now
    consumer.positions[zero] = 100
    await report_lag("lag-unit", consumer, reported)  # type: ignore[arg-type]
    assert (lag(0), lag(1)) == (0, None)

    two = TopicPartition("t.lag", 2)
    consumer.highwaters[two] = 7  # assigned, its position not known yet: skipped, not waited for
    consumer.positions[zero] = 90
    await asyncio.wait_for(report_lag("lag-unit", consumer, reported), 1)  # type: ignore[arg-type]
    assert (lag(0), lag(2)) == (10, None)


async def test_the_related_worker_forgets_the_lag_of_a_partition_taken_from_it() -> None:
    partition = TopicPartition("t.related-lag", 3)
    labels = {"service": "related", "topic": partition.topic, "partition": "3"}
    CONSUMER_LAG.labels("related", partition.topic, "3").set(7)
    worker = SimpleNamespace(owned={3, 4})
    await Ownership(worker).on_partitions_revoked([partition])  # type: ignore[arg-type]
    assert worker.owned == {4}
    assert REGISTRY.get_sample_value("broadsheet_consumer_lag", labels) is None
