"""A Kafka request written on a connection whose socket has just closed fails as a broken connection on uvloop too.

The services run on uvloop, whose closed transports raise `RuntimeError` on a write where asyncio's stay silent.
aiokafka retries a `KafkaConnectionError` but not that: after a broker restart, a publisher consumer's group
coordination ended on it for good (`writes_on_a_closed_connection_fail_as_broken`).
"""

from __future__ import annotations

import asyncio

import uvloop
from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from shared.kafka import writes_on_a_closed_connection_fail_as_broken


async def write_after_the_socket_closed(kafka: str) -> type[BaseException]:
    host, port = kafka.rsplit(":", 1)
    connection: AIOKafkaConnection = await create_conn(host, int(port))
    try:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        await connection.send(MetadataRequest([]))  # the connection works
        connection._writer.transport.close()  # the broker went away between aiokafka's check and its write
        await asyncio.sleep(0)
        try:
            await connection.send(MetadataRequest([]))
        except BaseException as exc:
            return type(exc)
        raise AssertionError("a request on a closed socket was sent")
    finally:
        connection.close()


def test_a_write_on_a_closed_socket_is_a_connection_error(infra: dict[str, str]) -> None:
    writes_on_a_closed_connection_fail_as_broken()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        failure = runner.run(write_after_the_socket_closed(infra["kafka"]))
    assert issubclass(failure, KafkaConnectionError), failure  # unpatched: RuntimeError
