"""A batch waits for Kafka's acknowledgements for a bounded time (`Outbox.delivery_timeout`), so a record whose
acknowledgement never comes makes the batch fail and be read again, instead of holding the consumer for good.
A failed record fails the batch at once, as before; what is done only after delivery never runs early."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import KafkaTimeoutError
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shared.kafka import DELIVERY_TIMEOUT_SECONDS, Outbox


async def outbox_with(*futures: asyncio.Future[object], within: float) -> tuple[Outbox, list[str]]:
    async with TestKafkaBroker(KafkaBroker()) as broker:  # in memory: the futures stand for aiokafka's
        outbox = Outbox(broker, delivery_timeout=within)
    outbox.pending.extend(futures)
    effects: list[str] = []

    async def remember() -> None:
        effects.append("remembered")

    outbox.then(remember)
    return outbox, effects


async def test_a_record_never_acknowledged_fails_the_batch_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    delivered, lost = loop.create_future(), loop.create_future()
    delivered.set_result(None)
    outbox, effects = await outbox_with(delivered, lost, within=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="1 of 2 records not acknowledged"):
        await outbox.flush()
    assert 0.3 <= time.monotonic() - started < 2
    assert effects == []  # the state that says "emitted" is not written
    assert not lost.done()  # left to the producer, which may still deliver it


async def test_a_failed_record_fails_the_batch_without_waiting_for_the_others() -> None:
    loop = asyncio.get_running_loop()
    failed, waiting = loop.create_future(), loop.create_future()
    outbox, effects = await outbox_with(failed, waiting, within=30)
    loop.call_later(0.05, failed.set_exception, KafkaTimeoutError())
    started = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        await outbox.flush()
    assert time.monotonic() - started < 5 and effects == []


async def test_acknowledged_records_let_the_batch_go_on() -> None:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    outbox, effects = await outbox_with(*futures, within=5)
    for n, future in enumerate(futures):
        loop.call_later(0.01 * n, future.set_result, None)
    await outbox.flush()
    assert effects == ["remembered"] and outbox.pending == []


def test_the_default_deadline_is_the_java_producers_delivery_timeout() -> None:
    assert DELIVERY_TIMEOUT_SECONDS == 120.0
