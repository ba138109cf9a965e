"""A batch that fails outside any one record's handling is read again, never committed unprocessed.

Per-record failures are dead-lettered by the runner. What fails around the records (a batch-wide read in
`prepare`, a dead-letter producer that cannot send) used to escape to FastStream, whose acknowledgement policy
then committed the batch: every record in it, valid or not, was skipped without a trace.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

import shared.kafka
from shared.kafka import BatchRunner, Outbox, make_broker, subscribe
from shared.metrics import REGISTRY
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, ensure_topics


async def topic_holding(kafka: str, name: str, records: int, *, partitions: int = 1) -> tuple[str, str]:
    """A new topic, under a prefix of its own, holding "record-0", "record-1", ... in turn on each partition."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}{name}"
    await ensure_topics(kafka, specs=[TopicSpec(topic, "test")], partitions=partitions)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for n in range(records):
            await producer.send(topic, f"record-{n}".encode(), key=b"story", partition=n % partitions)
        await producer.flush()
    finally:
        await producer.stop()
    return prefix, topic

async def test_a_batch_whose_preparation_fails_is_read_again_and_every_record_handled(
    infra: dict[str, str],
) -> None:
    prefix, topic = await topic_holding(infra["kafka"], "runner.input", 5)

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



async def test_a_consumer_reports_its_lag_per_partition(infra: dict[str, str]) -> None:
    prefix, topic = await topic_holding(infra["kafka"], "runner.lag", 40, partitions=2)

    def lag(partition: int) -> float:
        labels = {"service": "lag-test", "topic": topic, "partition": str(partition)}
        return REGISTRY.get_sample_value("broadsheet_consumer_lag", labels) or 0.0

    settings = ServiceSettings(kafka_bootstrap_servers=infra["kafka"], kafka_topic_prefix=prefix)
    broker = make_broker(settings, "lag-test")
    runner = BatchRunner("lag-test", broker, settings)
    handled = 0
    peak = 0.0

    async def handle(record: ConsumerRecord[Any, Any], _: Outbox) -> str:
        nonlocal handled, peak
        handled += 1
        peak = max(peak, lag(0), lag(1))  # what the batches before this one left behind them
        return "processed"

    subscribe(runner, {topic: handle}, description="test input", max_records=5)
    await broker.start()
    try:
        deadline = time.monotonic() + 60
        while handled < 40 or lag(0) or lag(1):
            assert time.monotonic() < deadline, (handled, lag(0), lag(1))
            await asyncio.sleep(0.1)
    finally:
        await broker.stop()
        await runner.close()
    assert peak >= 5, "batches of 5 out of 20 records a partition leave records behind them"
    assert {"service": "lag-test", "topic": topic, "partition": "0"} in [
        sample.labels for family in REGISTRY.collect() for sample in family.samples
        if sample.name == "broadsheet_consumer_lag"
    ]


async def test_a_consumer_stuck_in_a_batch_still_reports_the_records_waiting_behind_it(
    infra: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a batch only, the gauge stayed as the last finished batch left it (none here): the stall alert, which
    reads it, never saw a consumer stuck in a batch or in the commit after one."""
    monkeypatch.setattr(shared.kafka, "LAG_REPORT_SECONDS", 0.5)
    prefix, topic = await topic_holding(infra["kafka"], "runner.stuck", 3)
    labels = {"service": "stuck-test", "topic": topic, "partition": "0"}

    settings = ServiceSettings(kafka_bootstrap_servers=infra["kafka"], kafka_topic_prefix=prefix)
    broker = make_broker(settings, "stuck-test")
    runner = BatchRunner("stuck-test", broker, settings)
    stuck, release = asyncio.Event(), asyncio.Event()
    handled = 0

    async def handle(record: ConsumerRecord[Any, Any], _: Outbox) -> str:
        nonlocal handled
        stuck.set()
        await release.wait()
        handled += 1
        return "processed"

    subscribe(runner, {topic: handle}, description="test input")
    await broker.start()
    reporter = asyncio.create_task(runner.report_lag_between_batches())
    try:
        await asyncio.wait_for(stuck.wait(), timeout=60)
        producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all")
        await producer.start()
        try:
            for n in range(10):
                await producer.send(topic, f"later-{n}".encode(), key=b"story", partition=0)
            await producer.flush()
        finally:
            await producer.stop()

        deadline = time.monotonic() + 15
        while (REGISTRY.get_sample_value("broadsheet_consumer_lag", labels) or 0) < 10:
            assert time.monotonic() < deadline, REGISTRY.get_sample_value("broadsheet_consumer_lag", labels)
            await asyncio.sleep(0.1)
        assert handled == 0, "no batch has finished: the lag was reported between batches"

        release.set()
        while handled < 13 or REGISTRY.get_sample_value("broadsheet_consumer_lag", labels):
            assert time.monotonic() < deadline + 30, handled
            await asyncio.sleep(0.1)
    finally:
        release.set()
        runner.stopping.set()
        reporter.cancel()
        await broker.stop()
        await runner.close()

