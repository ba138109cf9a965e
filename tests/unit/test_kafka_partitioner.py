"""The broker's partitioner must place every key where Kafka's default partitioner does: other clients
(the Java tools, a newsroom's producer) key by guid too, and one guid must live on one partition."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.kafka import key_partitioner, murmur2


def test_same_partition_as_the_default_partitioner() -> None:
    default = DefaultPartitioner()
    keys = [uuid.uuid4().hex.encode() for _ in range(2_000)] + [b"", "ünïcode-guid".encode()]
    for partitions in (1, 3, 12, 48):
        every = list(range(partitions))
        for key in keys:
            assert key_partitioner(key, every, every) == default(key, every, every)
            assert key_partitioner(key, every, every) == default(key, every, every)  # the cached path


def test_keyless_records_go_to_an_available_partition() -> None:
    assert {key_partitioner(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
    assert key_partitioner(None, [0, 1, 2], []) in {0, 1, 2}


@given(st.binary(max_size=200))
def test_murmur2_is_aiokafkas_murmur2(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


def test_murmur2_of_every_tail_length_and_high_bytes() -> None:
    for length in range(0, 40):
        for fill in (0x00, 0x7F, 0x80, 0xFF):
            key = bytes((fill + i * 37) % 256 for i in range(length))
            assert murmur2(key) == aiokafka_murmur2(key), (length, fill)
