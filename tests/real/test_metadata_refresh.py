"""A forced metadata update that comes while aiokafka's periodic refresh is under way is answered at once.

aiokafka refreshes metadata in one background task that sleeps `metadata_max_age_ms` (5 minutes by default)
between refreshes. A forced update that joined a refresh under way, and changed the client's topics, was left
waiting for that whole sleep; a publisher's commit and heartbeat waited with it after a broker restart.
`make_broker` installs `forced_metadata_updates_wake_the_synchronizer`, which makes the task go round again.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka.client import AIOKafkaClient

from shared.kafka import make_broker
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, ensure_topics


async def test_a_forced_update_during_a_periodic_refresh_does_not_wait_for_the_next_one(
    infra: dict[str, str],
) -> None:
    make_broker(ServiceSettings(kafka_bootstrap_servers=infra["kafka"]), "metadata-test")  # installs the fix
    topic = f"t{uuid.uuid4().hex[:8]}.metadata.input"
    await ensure_topics(infra["kafka"], specs=[TopicSpec(topic, "test")], partitions=2)
    client = AIOKafkaClient(bootstrap_servers=infra["kafka"], metadata_max_age_ms=1_000)
    await client.bootstrap()
    try:
        real_update = client._metadata_update
        refreshing = asyncio.Event()

        async def slow_update(cluster: Any, topics: Any) -> bool:
            refreshing.set()
            await asyncio.sleep(1.0)  # a broker slow to answer, as one that is starting up
            updated: bool = await real_update(cluster, topics)
            return updated

        client._metadata_update = slow_update
        await asyncio.wait_for(refreshing.wait(), 5)  # the periodic refresh (every second so far) is under way
        client._metadata_max_age_ms = 600_000  # the next periodic one is ten minutes away
        assert topic not in client.cluster.topics()

        await asyncio.wait_for(client.set_topics([topic]), 10)  # what a consumer rejoining its group does

        assert client.cluster.partitions_for_topic(topic) == {0, 1}
    finally:
        await client.close()
