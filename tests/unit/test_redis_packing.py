"""Broadsheet's Redis connections pack commands with hiredis; the bytes must be redis-py's own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from shared.redis import HiredisConnection

ARGUMENT = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
)


def stock() -> Connection:
    return Connection()


def packed(connection: Connection, *args: object) -> bytes:
    return b"".join(connection.pack_command(*args))  # type: ignore[arg-type]


@given(st.lists(ARGUMENT, max_size=8))
def test_commands_pack_to_the_bytes_redis_py_writes(args: list[object]) -> None:
    assert packed(HiredisConnection(), "HSET", *args) == packed(stock(), "HSET", *args)


@pytest.mark.parametrize(
    "args",
    [
        ("CONFIG GET", "maxmemory"),  # a command name of two words is sent as two arguments
        (b"CLIENT SETNAME", b"x"),
        ("SET", "k", memoryview(b"view")),
        ("SET", "k", bytearray(b"array")),
        ("SET", "ключ", "значение ✓"),
        ("SET", "k", b"\x00\r\n" * 10_000),  # large values: redis-py splits them into chunks, the bytes agree
        ("EVALSHA", "0" * 40, 2, "a", "b", 1.5, -7),
    ],
)
def test_special_arguments_pack_alike(args: tuple[object, ...]) -> None:
    assert packed(HiredisConnection(), *args) == packed(stock(), *args)


@pytest.mark.parametrize("bad", [None, True, object()])
def test_arguments_redis_py_refuses_are_refused_alike(bad: object) -> None:
    with pytest.raises(DataError):
        stock().pack_command("SET", "k", bad)  # type: ignore[arg-type]
    with pytest.raises(DataError):
        HiredisConnection().pack_command("SET", "k", bad)  # type: ignore[arg-type]


@given(st.lists(st.lists(ARGUMENT, max_size=5), max_size=20))
def test_a_pipeline_packs_to_the_bytes_redis_py_writes(commands: list[list[object]]) -> None:
    pipeline = [("HSET", *args) for args in commands] + [("SET", "k", b"\x00\r\n" * 10_000)]
    ours = b"".join(HiredisConnection().pack_commands(pipeline))  # type: ignore[arg-type]
    assert ours == b"".join(stock().pack_commands(pipeline))  # type: ignore[arg-type]


SPECIAL_COMMANDS: list[tuple[object, ...]] = [
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"x"),
    ("SET", "k", memoryview(b"view")),
    ("SET", "k", bytearray(b"array")),
    ("EVALSHA", "0" * 40, 2, "a", "b", 1.5, -7),
]


def test_a_pipeline_of_special_commands_packs_to_the_bytes_redis_py_writes() -> None:
    """Commands that cannot take the pipeline's shortcut to C (two-word names, bytearrays) pack as they would alone."""
    pipeline = [*SPECIAL_COMMANDS, *(list(args) for args in SPECIAL_COMMANDS)]  # tuples, and lists as some callers pass
    ours = b"".join(HiredisConnection().pack_commands(pipeline))  # type: ignore[arg-type]
    assert ours == b"".join(stock().pack_commands(pipeline))  # type: ignore[arg-type]
    with pytest.raises(DataError):
        HiredisConnection().pack_commands([("SET", "k", "v"), ("SET", "k", None)])  # type: ignore[list-item]
