"""CPU a consumer spends per record it produces: `Outbox` (one aiokafka record batch per partition) against
sending each record on its own with `AIOKafkaProducer.send` and waiting for every record's future.

Both sides use the services' producer (`make_broker`: acks=all, idempotent, 256 KB batches, linger 2 ms), the
same keys, values and headers, 500 records per flush as a consumer batch, on the real broker, alternating over
several rounds in one run. Record sizes: an article event (3 KB) and a comment decision (400 bytes).

    .venv/bin/python -m bench.outbox_bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import Outbox, acknowledged, direct_producer, make_broker
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, ensure_topics

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
BATCH = 500
HEADERS = {"receipt": "r-0123456789abcdef", "trace_id": "f" * 32}


async def one_by_one(broker: Any, topic: str, keys: list[str], value: bytes) -> None:
    producer = direct_producer(broker)
    assert producer is not None
    headers = [("content-type", b"application/json"), *((k, v.encode()) for k, v in HEADERS.items())]
    for start in range(0, len(keys), BATCH):
        futures = [
            await producer.send(topic, value, key=key.encode(), headers=headers) for key in keys[start : start + BATCH]
        ]
        await acknowledged(futures, within=60)


async def batched(broker: Any, topic: str, keys: list[str], value: bytes) -> None:
    for start in range(0, len(keys), BATCH):
        outbox = Outbox(broker)
        for key in keys[start : start + BATCH]:
            await outbox.send(topic, key, value, HEADERS)
        await outbox.flush()


async def cpu_per_record(way: Callable[..., Awaitable[None]], broker: Any, topic: str, n: int, size: int) -> float:
    keys = [f"story-{uuid.uuid4().hex}" for _ in range(n)]
    value = b"x" * size
    started = time.process_time()
    await way(broker, topic, keys, value)
    return (time.process_time() - started) / n * 1e6


async def main(records: int, rounds: int) -> None:
    topic = f"bench.outbox-{uuid.uuid4().hex[:6]}"
    await ensure_topics(KAFKA, prefix="", partitions=12, specs=[TopicSpec(topic, "bench scratch")])
    broker = make_broker(ServiceSettings(kafka_bootstrap_servers=KAFKA), "outbox-bench")
    await broker.start()
    try:
        await cpu_per_record(batched, broker, topic, 2000, 400)  # connections and metadata warm
        print(f"{records} records per round, {BATCH} per flush, {rounds} rounds")
        print(f"{'size':>6}  {'one by one, µs':>15}  {'Outbox, µs':>11}  {'ratio':>6}")
        for size in (3000, 400):
            ratios = []
            for _ in range(rounds):
                single = await cpu_per_record(one_by_one, broker, topic, records, size)
                grouped = await cpu_per_record(batched, broker, topic, records, size)
                ratios.append(grouped / single)
                print(f"{size:>6}  {single:>15.1f}  {grouped:>11.1f}  {grouped / single:>6.2f}", flush=True)
            print(f"{size:>6}  median ratio (Outbox CPU / one by one): {statistics.median(ratios):.2f}")
    finally:
        await broker.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.records, arguments.rounds))
