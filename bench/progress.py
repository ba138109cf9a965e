"""Following a measured process's output from outside it, without competing with it for the machine.

A bench that consumed the output while the service produced it would take CPU from the service (these machines
have two cores, and the broker needs its share) and add a second reader to the broker's work; its rate would
then be measured under a load the bare baseline never sees. So the output's growth is read from the broker's
end offsets, twice a second, and the records themselves are read once the run is over.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def cpu_seconds(pid: int) -> float:
    """User and system CPU the process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} not found")


async def wait_for_records(topic: str, expected: int, within: float, pid: int | None = None) -> list[tuple[int, float]]:
    """Sleep until the topic holds `expected` records, asking the broker twice a second. With `pid`, each answer
    is paired with the CPU seconds that process has used so far: (records, CPU seconds) per poll."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await consumer.start()
    samples: list[tuple[int, float]] = []
    try:
        await consumer._client.add_topic(topic)
        parts = await partitions_of(consumer, topic)
        deadline = time.monotonic() + within
        while True:
            held = sum((await consumer.end_offsets(parts)).values())
            if pid is not None:
                samples.append((held, cpu_seconds(pid)))
            if held >= expected:
                return samples
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} did not reach {expected} records")
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


def cpu_per_record(samples: list[tuple[int, float]], expected: int) -> float:
    """CPU seconds per record in the steady middle of a run: between the polls that saw 10 % and 90 % of it
    (start-up before, and the tail's last partial poll after, are left out)."""
    middle = [s for s in samples if 0.1 * expected <= s[0] <= 0.9 * expected]
    if len(middle) < 2 or middle[-1][0] == middle[0][0]:
        return float("nan")
    return (middle[-1][1] - middle[0][1]) / (middle[-1][0] - middle[0][0])
