"""A replica with a stable `INSTANCE_ID` (static group membership) that stops cleanly hands its partitions over at
once.

Static membership lets a crashed replica's restart take its partitions straight back. aiokafka's static members
never leave their group, though, not even on a clean stop: a rollout or a scale-down then stalled the stopped
replica's partitions for the whole session timeout (20 s). `static_members_leave_on_close` makes a clean stop
leave the group, as a dynamic member does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from shared.kafka import BatchRunner, Outbox, consumer_options, make_broker, subscribe
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, ensure_topics

PARTITIONS = 4
SERVICE = "membership-test"


async def test_a_static_member_that_stops_cleanly_hands_its_partitions_over_at_once(infra: dict[str, str]) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}membership.input"
    await ensure_topics(infra["kafka"], specs=[TopicSpec(topic, "test")], partitions=PARTITIONS)
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    brokers = {}
    for replica in ("a", "b"):
        settings = ServiceSettings(
            kafka_bootstrap_servers=infra["kafka"], kafka_topic_prefix=prefix, instance_id=f"replica-{replica}"
        )
        broker = make_broker(settings, SERVICE)
        runner = BatchRunner(SERVICE, broker, settings)

        def handler(name: str) -> Any:
            async def handle(record: ConsumerRecord[Any, Any], _: Outbox) -> str:
                seen[name].add(record.partition)
                return "processed"

            return handle

        subscribe(runner, {topic: handler(replica)}, description="test input")
        brokers[replica] = broker
    assert "group_instance_id" in consumer_options(settings, SERVICE)

    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all")
    await producer.start()

    async def send_to_every_partition() -> None:
        for partition in range(PARTITIONS):
            await producer.send_and_wait(topic, b"record", partition=partition)

    async def until(condition: Any, within: float) -> float:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > within:
                raise TimeoutError
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    try:
        await brokers["a"].start()
        await brokers["b"].start()
        # both replicas hold partitions: each has handled a record (the group may need a rebalance or two)
        deadline = time.monotonic() + 60
        while not (seen["a"] and seen["b"] and len(seen["a"] | seen["b"]) == PARTITIONS):
            assert time.monotonic() < deadline, f"the two replicas never shared the partitions: {seen}"
            await send_to_every_partition()
            await asyncio.sleep(0.5)

        await brokers["b"].stop()
        seen["a"].clear()
        await send_to_every_partition()
        # the session timeout is 20 s: a replica that did not leave would hold its partitions that long
        elapsed = await until(lambda: len(seen["a"]) == PARTITIONS, within=30)
        assert elapsed < 8, f"the remaining replica took {elapsed:.1f} s to take over every partition"
    finally:
        await producer.stop()
        await brokers["a"].stop()
