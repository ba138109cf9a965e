"""Kafka plumbing shared by every service: one broker factory with safe defaults, consumer options, and the
bounded-retry + dead-letter runner that FastStream does not provide for Kafka.

Consumers receive records in batches and process them in order (order matters per guid, and one guid lives on
one partition). Effects go through an `Outbox` that produces without waiting for each acknowledgement; the
batch is committed only after every produce in it is acknowledged, so a crash re-delivers the batch
(at-least-once) and idempotent handlers make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import redis.exceptions
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.group import LeaveGroupRequest
from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.contracts.deadletter import DeadLetter
from shared.logging import get_logger
from shared.metrics import CONSUMER_LAG, HANDLER_SECONDS, MESSAGES, labelled
from shared.settings import ServiceSettings
from shared.topics import STORY_RECORD_BYTES, dead_letter_topic, with_prefix

log = get_logger(__name__)
T = TypeVar("T")

MAX_RECORD_BYTES = 4 * 1024 * 1024 + 65536
MAX_EVENT_BYTES = STORY_RECORD_BYTES - 1024
"""The largest event (value, key and headers) a consumer emits: what the story-sized topics take, less the record
batch's own envelope. An article event is the largest, and escaping can make its body bigger than the draft's."""
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    ConnectionError,
    TimeoutError,
)


def topic_name(settings: ServiceSettings, name: str) -> str:
    return with_prefix(settings.kafka_topic_prefix, name)


def group_id(settings: ServiceSettings, service: str) -> str:
    return f"{settings.kafka_topic_prefix}broadsheet-{service}"


def security_for(settings: ServiceSettings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = settings.ssl_context()
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    if not (settings.kafka_sasl_username and settings.kafka_sasl_password):
        raise ValueError("SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()
    use_ssl = protocol == "SASL_SSL"
    if settings.kafka_sasl_mechanism == "SCRAM-SHA-512":
        return SASLScram512(user, password, ssl_context=ssl_context, use_ssl=use_ssl)
    if settings.kafka_sasl_mechanism == "SCRAM-SHA-256":
        return SASLScram256(user, password, ssl_context=ssl_context, use_ssl=use_ssl)
    return SASLPlaintext(user, password, ssl_context=ssl_context, use_ssl=use_ssl)


_MURMUR_M: Final = 0x5BD1E995
_MURMUR_SEED: Final = 0x9747B28C
_U32: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as aiokafka's `murmur2` computes it.

    Every record a service produces is placed by it, and aiokafka's version is pure Python that takes the key
    apart one byte at a time; this one reads it as little-endian words in one `struct` call and does the same
    arithmetic in about a third of the time (tests/unit/test_kafka_partitioner.py compares the two)."""
    length = len(data)
    h = _MURMUR_SEED ^ length
    whole = length // 4
    for k in struct.unpack_from(f"<{whole}I", data):
        k = (k * _MURMUR_M) & _U32
        k = ((k ^ (k >> 24)) * _MURMUR_M) & _U32
        h = ((h * _MURMUR_M) & _U32) ^ k
    extra = length - 4 * whole
    if extra:
        tail = data[4 * whole :]
        if extra == 3:
            h ^= tail[2] << 16
        if extra >= 2:
            h ^= tail[1] << 8
        h = ((h ^ tail[0]) * _MURMUR_M) & _U32
    h = ((h ^ (h >> 13)) * _MURMUR_M) & _U32
    return h ^ (h >> 15)


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2, as the Java client computes it), with
    the hash of recent keys remembered: a service writes many records per guid (a comment wave on one
    article, the links of one story)."""
    return _key_hash(key) % partitions


def key_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """The producers' partitioner: `partition_for`, and any available partition for a record without a key."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[partition_for(key, len(all_partitions))]


@functools.cache  # installed once
def static_members_leave_on_close() -> None:
    """Make a static group member (one with `INSTANCE_ID`) leave its group when it shuts down cleanly.

    Static membership is for crashes: a process killed outright leaves no word, and its restart, with the same
    instance id, takes its partitions straight back instead of the group waiting out the session timeout
    (measured: 0.8 s instead of 20.4 s for ingest killed with SIGKILL). But aiokafka's static members never leave,
    not even on a clean stop, so a rollout or a scale-down, whose new pods carry new names, would stall the
    stopped member's partitions for the whole session timeout too. A clean stop therefore says goodbye, as a
    dynamic member does (what Kafka 4.1's Java client offers as `CloseOptions` with `LEAVE_GROUP`). Only
    `close()` does: a member that merely overran `max.poll.interval.ms` keeps its place, as aiokafka intends.
    Installed once, by `make_broker`, before any consumer starts.
    """
    maybe_leave_group = GroupCoordinator._maybe_leave_group

    async def leave_on_close(self: GroupCoordinator) -> None:
        if self._closing.done() and self.generation > 0 and self._group_instance_id is not None:
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as exc:  # the session timeout still frees the partitions
                log.warning("static member could not leave its group", group=self.group_id, error=str(exc))
        await maybe_leave_group(self)

    GroupCoordinator._maybe_leave_group = leave_on_close


@functools.cache  # installed once
def forced_metadata_updates_wake_the_synchronizer() -> None:
    """Make every forced metadata update wake aiokafka's metadata task, even while an update is under way.

    aiokafka refreshes metadata in one background task, which sleeps for `metadata_max_age_ms` (5 minutes)
    unless a forced update wakes it. A forced update that comes while a periodic refresh is under way joins
    that refresh instead, and does not wake the task. If the forced update changed the client's topics (a
    consumer rejoining its group sets them), the task sees the change once its refresh is done and starts
    over: into its 5-minute sleep, while the forced update still waits for it. Everything that needs
    metadata waits with it, the commit that ends a batch and the group's heartbeat among them, so a consumer
    stops for up to 5 minutes with `/healthz` green. This happened to a publisher after a broker restart
    (its stack: `commit` → `ensure_coordinator_known` → `force_metadata_update`, the task asleep). Waking the
    task on every forced update makes it go round again at once. Installed once, by `make_broker`, before
    any client starts.
    """
    joins_the_update_under_way = AIOKafkaClient.force_metadata_update

    def force_metadata_update(self: AIOKafkaClient) -> asyncio.Future[bool]:
        waiter = getattr(self, "_md_update_waiter", None)  # aiokafka's own; tests/real/test_metadata_refresh.py
        if isinstance(waiter, asyncio.Future) and not waiter.done():
            waiter.set_result(None)
        update: asyncio.Future[bool] = joins_the_update_under_way(self)
        return update

    AIOKafkaClient.force_metadata_update = force_metadata_update


@functools.cache  # installed once
def writes_on_a_closed_connection_fail_as_broken() -> None:
    """Make a request written on a connection whose socket has just closed fail as a broken connection.

    aiokafka turns an `OSError` from the write into `KafkaConnectionError`, which every caller retries. The
    services run on uvloop, whose transports raise `RuntimeError` instead ("unable to perform operation on
    <TCPTransport closed=True …>") when the socket closed between aiokafka's readiness check and its write. That
    error is unexpected where it lands: after a broker restart it ended a publisher consumer's group coordination
    for good, and its consumer failed every poll from then on, its lag stuck, until the process was restarted.
    Here it closes the connection and becomes the `KafkaConnectionError` an `OSError` would have given. Installed
    once, by `make_broker`, before any client starts.
    """
    send = AIOKafkaConnection.send

    def send_or_fail_as_broken(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        try:
            return send(self, request, expect_response)
        except RuntimeError as exc:
            writer = self._writer
            if writer is not None and not writer.transport.is_closing():
                raise
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(f"Connection at {self.host}:{self.port} broken: {exc}") from exc

    AIOKafkaConnection.send = send_or_fail_as_broken


def make_broker(settings: ServiceSettings, service: str, **overrides: Any) -> KafkaBroker:
    """Producers wait for all in-sync replicas and are idempotent; nothing creates topics implicitly."""
    options: dict[str, Any] = {
        "client_id": f"broadsheet-{service}",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "max_request_size": MAX_RECORD_BYTES,
        "compression_type": None,
        "partitioner": key_partitioner,
        "allow_auto_create_topics": False,
        "request_timeout_ms": 30_000,
        "graceful_timeout": 20.0,
        "security": security_for(settings),
        "description": f"Broadsheet {service}",
        # FastStream's per-message lines go through the same structlog pipeline, below INFO: the services
        # write their own canonical line per record.
        "logger": logging.getLogger(f"faststream.{service}"),
        "log_level": logging.DEBUG,
    }
    options.update(overrides)
    static_members_leave_on_close()
    forced_metadata_updates_wake_the_synchronizer()
    writes_on_a_closed_connection_fail_as_broken()
    return KafkaBroker(settings.kafka_bootstrap_servers, **options)


def json_bytes(model: BaseModel) -> bytes:
    """`model.model_dump_json().encode()`, byte for byte, without the detour through `str`: pydantic
    serializes to bytes and `model_dump_json` decodes them, only for every producer to encode them again
    (on a 3 KB article event the detour costs two thirds of what the serializing does)."""
    return model.__pydantic_serializer__.to_json(model)


async def keep_raw(_: Any) -> None:
    """Decoder that leaves records undecoded: handlers parse them themselves, so a bad record can be
    dead-lettered with its exact bytes instead of failing the whole batch in the framework."""
    return


def records_of(message: KafkaMessage) -> tuple[ConsumerRecord[Any, Any], ...]:
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


EDGE_ACK_SECONDS = 5.0
"""How long an HTTP edge (the ingest gateway, the comment form) waits for Kafka to acknowledge what a request
produces before it answers 503. A healthy broker acknowledges in milliseconds and a leader election in a second
or two; the producer's own timeout (30 s) outlasts most clients. A record acknowledged after the 503 does no
harm: the client's retry carries the same draft version or the same comment id, which the consumers ignore."""


async def publish_from_edge(
    broker: KafkaBroker, value: bytes, *, topic: str, key: bytes, headers: Mapping[str, str]
) -> None:
    """Produce one record for an HTTP request and wait for its acknowledgement; `TimeoutError` past
    `EDGE_ACK_SECONDS`, or the producer's error."""
    async with asyncio.timeout(EDGE_ACK_SECONDS):
        await broker.publish(value, topic=topic, key=key, headers=dict(headers))


FETCH_MAX_WAIT_MS = 100
"""How long the broker may hold a consumer's fetch that finds no new records (see `consumer_options`, and
`shared.cli.reader_options` for the consumers that read the log without a group); an idle consumer asks ten times a
second."""


def consumer_options(
    settings: ServiceSettings, service: str, *, member: str = "main", max_records: int = 500
) -> dict[str, Any]:
    """Subscriber settings every consuming service uses: explicit group, earliest, commit after processing.

    `member` tells apart the several consumers one process may run in the group (one per subscribed topic),
    which static membership needs."""
    options: dict[str, Any] = {
        "decoder": keep_raw,
        "group_id": group_id(settings, service),
        "auto_offset_reset": "earliest",
        # An exception that escapes the runner rewinds the batch rather than committing it (see BatchRunner.run).
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "batch": True,
        "max_records": max_records,
        # A poll returns as soon as records are buffered, whatever this is; but after an empty poll the batch
        # subscriber sleeps this long again before the next one, which a record that arrives then waits out.
        # Short, so a quiet pipeline adds at most ~20 ms per hop to a page's freshness.
        "batch_timeout_ms": 10,
        "max_partition_fetch_bytes": MAX_RECORD_BYTES,
        "fetch_max_bytes": 64 * 1024 * 1024,
        "session_timeout_ms": 20_000,
        # A member learns of a rebalance from its next heartbeat, and the group consumes nothing until every
        # member has rejoined: with one beat a second, a publisher instance joining or leaving (three consumers
        # each) pauses moderation decisions for about a second, not three (measured on a fresh stack: 0.9 s
        # instead of 2.9 s before the first approved comment reached its page).
        "heartbeat_interval_ms": 1_000,
        "max_poll_interval_ms": 300_000,
        # aiokafka fetches a partition again only once its buffered records are all handed out, and sends nothing to
        # a broker while a fetch to it is in flight. While a busy partition's records are being worked through, the
        # idle partitions are fetched without it, and the broker holds that fetch until data comes or this much time
        # passes: the busy partition, drained, then waited out the rest of it. At the default 500 ms, a comment
        # wave stood still for up to half a second every few thousand comments (a tenth of the wave's time).
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
    }
    if settings.instance_id:
        options["group_instance_id"] = f"{group_id(settings, service)}-{settings.instance_id}-{member}"
    return options


class Reject(Exception):
    """The record can never be processed as it is: dead-letter it at once, without retrying."""

    def __init__(self, reason_code: str, reason: str, errors: Sequence[Mapping[str, object]] = ()) -> None:
        super().__init__(f"{reason_code}: {reason}")
        self.reason_code = reason_code
        self.reason = reason
        self.errors = [dict(e) for e in errors]


def parse_event(adapter: TypeAdapter[T], record: ConsumerRecord[Any, Any]) -> T:
    """An internal event that does not match its contract is a bug upstream: dead-letter it with the errors."""
    try:
        return adapter.validate_json(record.value or b"")
    except ValidationError as exc:
        raise Reject("invalid_event", "event does not match its contract", exc.errors(include_url=False)) from exc


def record_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in record.headers or ():
        try:
            headers[key] = value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)
        except UnicodeDecodeError:
            continue
    return headers


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offset for each partition (-1 where it committed none).

    Asks for the partitions by name, because a coordinator still loading its offsets (right after a broker
    starts) answers with a group-level error and no partitions, which aiokafka returns as an empty answer:
    read as "this group never consumed", it would make a restarted publisher skip rebuilding an empty Redis.
    An answer that lacks a partition raises a retriable error instead.
    """
    answer = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
    missing = [tp for tp in partitions if tp not in answer]
    if missing:
        raise CoordinatorLoadInProgressError(f"{group}: offsets for {len(answer)} of {len(partitions)} partitions")
    return {tp: answer[tp].offset for tp in partitions}


def direct_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The broker's connected aiokafka producer, or None (not connected, or an in-memory test broker).

    Every record a consumer emits goes through `Outbox.send`. Handing it straight to aiokafka skips
    FastStream's per-message publish pipeline (a command object, header merging, a correlation id from
    os.urandom) that no Broadsheet consumer reads; it cost about a fifth of ingest's CPU per draft. The declared
    publishers still document the topics in AsyncAPI. FastStream keeps the producer in a private attribute;
    if a version moves it, sends fall back to the publish pipeline, and tests/real/test_outbox.py says so.
    """
    state = getattr(broker.config.broker_config.producer, "_producer", None)
    producer = getattr(state, "producer", None)
    return producer if isinstance(producer, AIOKafkaProducer) else None


DELIVERY_TIMEOUT_SECONDS = 120.0
"""How long a batch waits for Kafka to acknowledge what it produced, like the Java producer's
`delivery.timeout.ms` (same default). aiokafka's idempotent producer never gives up on a record, so a record
whose acknowledgement never comes would hold its consumer for good. This was seen once, after a broker restart:
ingest's last batch before the kill never finished, while the same producer went on delivering the gateway's
drafts. Past the deadline the batch is read again and its records are sent again, which consumers ignore as
duplicates."""


async def acknowledged(futures: Sequence[asyncio.Future[Any]], *, within: float) -> None:
    """Wait until Kafka acknowledges every record; raise the first failure as soon as it comes, or
    `TimeoutError` past `within`. Futures still waiting are left to the producer, not cancelled."""
    done, waiting = await asyncio.wait(futures, timeout=within, return_when=asyncio.FIRST_EXCEPTION)
    for future in done:
        error = future.exception()
        if error is not None:
            raise error
    if waiting:
        raise TimeoutError(f"{len(waiting)} of {len(futures)} records not acknowledged by Kafka within {within:g} s")


JSON_HEADERS: Final[Mapping[str, str]] = {"content-type": "application/json"}
"""The headers of every record an outbox sends (the caller's own are added)."""
ENCODED_JSON_HEADERS: Final = [(name, text.encode()) for name, text in JSON_HEADERS.items()]
"""Shared by every record: aiokafka writes headers into the record batch at once and keeps no reference."""
ENCODED_JSON_HEADERS_SIZE: Final = sum(len(name) + len(raw) for name, raw in ENCODED_JSON_HEADERS)


@dataclass
class Outbox:
    """Collects the produces of a batch so they travel together and are confirmed together before commit.

    Records go into one aiokafka record batch per partition (`BatchBuilder`), handed to the producer when it is
    full and at `flush`: the producer then tracks a batch, not a record. Sent one by one, each record got its own
    future, its own metadata object on acknowledgement and its own pass through the accumulator, which cost a
    consumer more CPU than building the record (bench/outbox_bench.py measures both ways). The partition is the
    one the producers' partitioner gives the key (`partition_for`), so records of one guid stay in order on one
    partition whichever path sent them. Nothing sent here leaves before `flush` (or a full batch): an outbox
    that is dropped unflushed sends nothing, like a batch that failed before its commit.
    """

    broker: KafkaBroker
    pending: list[asyncio.Future[Any]] = field(default_factory=list)
    delivery_timeout: float = DELIVERY_TIMEOUT_SECONDS

    after_flush: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)
    """Batch-local state a handler keeps between records of one batch (cleared with the batch)."""
    _producer: AIOKafkaProducer | None = field(init=False, repr=False)
    """`direct_producer(broker)`, looked up once per batch rather than per record."""
    _open: dict[tuple[str, int], BatchBuilder] = field(init=False, repr=False, default_factory=dict)
    """The record batch being filled for each (topic, partition), in the order they were opened."""
    _partitions: dict[str, int] = field(init=False, repr=False, default_factory=dict)
    """Partition count per topic, read from the producer's metadata once per outbox."""

    def __post_init__(self) -> None:
        self._producer = direct_producer(self.broker)

    async def send(
        self,
        target: DefaultPublisher | str,
        key: str,
        value: BaseModel | bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Produce without waiting; `target` is a declared publisher (documented in AsyncAPI) or a topic.

        An event too big for its topic raises `Reject`, so the record it came from is dead-lettered: sent, the broker
        would refuse it at the flush, and the batch, read again, would fail the same way for ever."""
        topic = target if isinstance(target, str) else target.topic
        payload = value if isinstance(value, bytes) else json_bytes(value)
        all_headers: Mapping[str, str]
        if headers:
            all_headers = {**JSON_HEADERS, **headers}
            encoded_headers = [(name, text.encode()) for name, text in all_headers.items()]
            headers_size = sum(len(name) + len(raw) for name, raw in encoded_headers)
        else:
            all_headers, encoded_headers, headers_size = JSON_HEADERS, ENCODED_JSON_HEADERS, ENCODED_JSON_HEADERS_SIZE
        encoded_key = key.encode()
        size = len(payload) + len(encoded_key) + headers_size
        if size > MAX_EVENT_BYTES:
            raise Reject(
                "event_too_large", f"the {topic} event would be {size} bytes, over the {MAX_EVENT_BYTES}-byte limit"
            )
        producer = self._producer
        if producer is not None:
            count = self._partitions.get(topic)
            if count is None:
                count = self._partitions[topic] = len(await producer.partitions_for(topic))
            where = (topic, partition_for(encoded_key, count))
            builder = self._open.get(where)
            if builder is None:
                builder = self._open[where] = producer.create_batch()
            if builder.append(key=encoded_key, value=payload, timestamp=None, headers=encoded_headers) is None:
                # Full: it goes now, and the record opens the next batch (a first record always fits).
                await self._submit(producer, *where)
                builder = self._open[where] = producer.create_batch()
                builder.append(key=encoded_key, value=payload, timestamp=None, headers=encoded_headers)
            return
        if isinstance(target, str):
            future = await self.broker.publish(
                payload, topic=target, key=encoded_key, headers=dict(all_headers), no_confirm=True
            )
        else:
            future = await target.publish(payload, key=encoded_key, headers=dict(all_headers), no_confirm=True)
        self.pending.append(future)

    async def _submit(self, producer: AIOKafkaProducer, topic: str, partition: int) -> None:
        builder = self._open.pop((topic, partition))
        builder.close()  # nothing else may ride in it: its future stands for exactly these records
        self.pending.append(await producer.send_batch(builder, topic, partition=partition))

    def then(self, effect: Callable[[], Awaitable[None]]) -> None:
        """Run `effect` once everything sent so far is acknowledged (e.g. remember that a version was emitted)."""
        self.after_flush.append(effect)

    async def flush(self) -> None:
        if self._producer is not None:
            for topic, partition in list(self._open):
                await self._submit(self._producer, topic, partition)
        pending, self.pending = self.pending, []
        if pending:
            await acknowledged(pending, within=self.delivery_timeout)
        effects, self.after_flush = self.after_flush, []
        for effect in effects:
            await effect()


Handler = Callable[[ConsumerRecord[Any, Any], Outbox], Awaitable[str]]
Prepare = Callable[[Sequence[ConsumerRecord[Any, Any]], Outbox], Awaitable[None]]


@dataclass
class BatchRunner:
    """Runs one handler over a batch of records with bounded retries and a dead-letter topic.

    - `Reject` → dead-lettered at once with its reason code.
    - transient infrastructure errors (Redis or Kafka unreachable) → retried with backoff for as long as they
      last: dead-lettering valid traffic during an outage would lose it. The partition waits.
    - any other exception → retried `max_attempts` times, then dead-lettered as `handler_error`.
    The handler returns an outcome label for metrics ("processed", "stale", "duplicate", ...).
    """

    service: str
    broker: KafkaBroker
    settings: ServiceSettings
    max_attempts: int = 3
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    consumer: AIOKafkaConsumer | None = None
    """The consumer of the last batch run through `subscribe`: what it holds says which partitions, hence which
    guids, this process decides for (background work keyed by guid asks it)."""
    _dlq_producer: AIOKafkaProducer | None = None
    _lag_reports: list[tuple[Any, set[TopicPartition]]] = field(default_factory=list)
    """Each subscriber declared through `subscribe` (its consumer exists once the broker runs), with the partitions
    it has reported lag for."""
    _failed_batches: dict[Handler, int] = field(default_factory=dict)
    """Per consumer (its handler), batches failed in a row outside their records: the pause before reading one
    again grows with it. One runner serves all of a process's consumers; one's failures must not slow another."""

    async def _dead_letter_producer(self) -> AIOKafkaProducer:
        """Dead letters go through their own producer (own connection): a burst of huge rejected records must
        not queue the service's real output behind it."""
        if self._dlq_producer is None:
            from shared.cli import client_options

            producer = AIOKafkaProducer(
                acks="all", enable_idempotence=True, max_request_size=MAX_RECORD_BYTES, linger_ms=5,
                client_id=f"broadsheet-{self.service}-dead-letters", **client_options(self.settings),
            )
            await producer.start()
            self._dlq_producer = producer
        return self._dlq_producer

    async def report_lag_between_batches(self) -> None:
        """Report every consumer's lag every few seconds, batch or no batch. After a batch only, a consumer stuck
        in a batch, or in the commit after one, left the gauge as its last batch had (often 0): the stall alert
        never saw it, and only the broker's view (`broadsheet status`) did."""
        while not self.stopping.is_set():
            await asyncio.sleep(LAG_REPORT_SECONDS)
            for subscriber, reported in self._lag_reports:
                consumer = getattr(subscriber, "consumer", None)
                if not isinstance(consumer, AIOKafkaConsumer):
                    continue
                try:
                    await report_lag(self.service, consumer, reported)
                except Exception as exc:  # a consumer closing or rejoining its group: the next round reports
                    log.debug("lag not reported", error=repr(exc))

    async def close(self) -> None:
        if self._dlq_producer is not None:
            await self._dlq_producer.stop()
            self._dlq_producer = None

    @property
    def dead_letter_topic(self) -> str:
        return with_prefix(self.settings.kafka_topic_prefix, dead_letter_topic(self.service))

    async def run(
        self, records: Sequence[ConsumerRecord[Any, Any]], handler: Handler, prepare: Prepare | None = None
    ) -> None:
        """Handle a batch. A failure outside any one record's handling (a batch-wide read in `prepare`, a
        dead-letter producer that cannot send, writes after the produce) reads the whole batch again after a
        growing pause: committing it would skip every record in it, the valid ones included, without a trace;
        reading it again at once would spin on a failure that lasts."""
        try:
            await self._run_batch(records, handler, prepare)
        except Exception as exc:
            failures = self._failed_batches[handler] = self._failed_batches.get(handler, 0) + 1
            delay = min(self.backoff_seconds * 2 ** (failures - 1), self.max_backoff_seconds)
            if not isinstance(exc, NackMessage):  # a NackMessage was logged where it was raised
                log.exception("batch failed outside its records; it will be read again", records=len(records),
                              retry_in_seconds=delay)
            if not self.stopping.is_set():
                await asyncio.sleep(delay)
            if isinstance(exc, NackMessage):
                raise
            raise NackMessage() from exc
        self._failed_batches.pop(handler, None)

    async def _run_batch(
        self, records: Sequence[ConsumerRecord[Any, Any]], handler: Handler, prepare: Prepare | None
    ) -> None:
        outbox = Outbox(self.broker)
        if prepare is not None:
            await self._prepare(prepare, records, outbox)
        for record in records:
            await self._run_one(record, handler, outbox)
        await self._flush(outbox)

    async def _prepare(self, prepare: Prepare, records: Sequence[ConsumerRecord[Any, Any]], outbox: Outbox) -> None:
        """Batch-wide reads done once (e.g. one Redis pipeline for every guid in the batch). Only transient
        failures matter here; they are retried like a record's."""
        delay = self.backoff_seconds
        while True:
            try:
                await prepare(records, outbox)
                return
            except TRANSIENT_ERRORS as exc:
                if self.stopping.is_set():
                    raise NackMessage() from exc
                log.warning("batch preparation failed, retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_seconds)

    async def _flush(self, outbox: Outbox) -> None:
        try:
            await outbox.flush()
        except Exception as exc:
            log.warning("produce, or a write after it, failed; the batch will be read again", error=repr(exc))
            raise NackMessage() from exc

    async def _run_one(self, record: ConsumerRecord[Any, Any], handler: Handler, outbox: Outbox) -> None:
        attempt = 0
        transient_delay = self.backoff_seconds
        started = time.perf_counter()
        while True:
            attempt += 1
            mark = len(outbox.pending)
            try:
                outcome = await handler(record, outbox)
            except Reject as exc:
                del outbox.pending[mark:]
                await self.dead_letter(record, outbox, exc.reason_code, exc.reason, exc.errors, attempt)
                return
            except TRANSIENT_ERRORS as exc:
                del outbox.pending[mark:]
                labelled(MESSAGES, self.service, record.topic, "retried").inc()
                if self.stopping.is_set():
                    raise NackMessage() from exc
                log.warning(
                    "transient failure, retrying",
                    topic=record.topic, partition=record.partition, offset=record.offset, error=repr(exc),
                )
                await asyncio.sleep(transient_delay)
                transient_delay = min(transient_delay * 2, self.max_backoff_seconds)
                attempt -= 1
                continue
            except NackMessage:
                raise
            except Exception as exc:
                del outbox.pending[mark:]
                labelled(MESSAGES, self.service, record.topic, "retried").inc()
                if attempt < self.max_attempts:
                    log.warning(
                        "handler failed, retrying", attempt=attempt, topic=record.topic,
                        partition=record.partition, offset=record.offset, error=repr(exc),
                    )
                    await asyncio.sleep(self.backoff_seconds * attempt)
                    continue
                log.exception("handler failed for good", topic=record.topic, offset=record.offset)
                await self.dead_letter(record, outbox, "handler_error", repr(exc)[:500], (), attempt)
                return
            labelled(MESSAGES, self.service, record.topic, outcome).inc()
            labelled(HANDLER_SECONDS, self.service, record.topic).observe(time.perf_counter() - started)
            return

    async def dead_letter(
        self,
        record: ConsumerRecord[Any, Any],
        outbox: Outbox,
        reason_code: str,
        reason: str,
        errors: Sequence[Mapping[str, object]],
        attempts: int,
    ) -> None:
        letter = DeadLetter(
            reason_code=reason_code,
            reason=reason,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            consumer=group_id(self.settings, self.service),
            errors=[dict(e) for e in errors],
            attempts=attempts,
            failed_at=datetime.now(UTC).isoformat(),
        )
        key = record.key if isinstance(record.key, bytes) else b""
        headers = {**record_headers(record), **letter.headers()}
        producer = await self._dead_letter_producer()
        future = await producer.send(
            self.dead_letter_topic,
            record.value if record.value is not None else b"",
            key=key or None,
            headers=[(name, value.encode()) for name, value in headers.items()],
        )
        outbox.pending.append(future)
        labelled(MESSAGES, self.service, record.topic, "dead_lettered").inc()
        log.warning(
            "dead-lettered",
            reason_code=reason_code, reason=reason, topic=record.topic,
            partition=record.partition, offset=record.offset,
        )


def subscribe(
    runner: BatchRunner,
    handlers: Mapping[str, Handler],
    *,
    member: str = "main",
    description: str,
    max_records: int = 500,
    prepare: Prepare | None = None,
) -> None:
    """Declare one batch subscriber (one consumer, one group member) over several topics, each record going to
    its topic's handler through `runner`. One consumer per process keeps rebalances rare and cheap."""
    options = consumer_options(runner.settings, runner.service, member=member, max_records=max_records)
    subscriber = runner.broker.subscriber(
        *handlers, **options, title=f"{runner.service}:{member}", description=description
    )

    async def dispatch(record: ConsumerRecord[Any, Any], outbox: Outbox) -> str:
        return await handlers[record.topic](record, outbox)

    reported: set[TopicPartition] = set()
    runner._lag_reports.append((subscriber, reported))

    async def consume(_: Any, message: KafkaMessage) -> None:
        records = records_of(message)
        if isinstance(message.consumer, AIOKafkaConsumer):  # not FastStream's in-memory test consumer
            runner.consumer = message.consumer
        await runner.run(records, dispatch, prepare)
        if isinstance(message.consumer, AIOKafkaConsumer):
            await report_lag(runner.service, message.consumer, reported)

    consume.__name__ = f"consume_{member}"
    subscriber(consume)


LAG_REPORT_SECONDS = 5.0
"""How often a consumer's lag is reported between batches (it is also reported after each batch)."""


async def report_lag(service: str, consumer: AIOKafkaConsumer, reported: set[TopicPartition]) -> None:
    """Set `broadsheet_consumer_lag` for each partition the consumer holds: the records between its position (the
    next record it hands out) and the partition's end as of the last fetch. No request is made: the consumer keeps
    each fetch's high-water mark, and goes on fetching while a batch is handled.

    Partitions the consumer no longer holds lose their series, so the replica that took them over is the only one
    to report them and a sum over replicas stays true.
    """
    held = consumer.assignment()
    for partition in held:
        try:
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            # A held partition's position is known without waiting, except just after an assignment, while the
            # consumer looks up where to start: that one is skipped rather than waited for (a batch waits on this).
            async with asyncio.timeout(0):
                position = await consumer.position(partition)
        except (AssertionError, IllegalStateError, KafkaError, TimeoutError):  # taken away meanwhile, or no position
            continue
        CONSUMER_LAG.labels(service, partition.topic, str(partition.partition)).set(max(0, highwater - position))
        reported.add(partition)
    for partition in reported - consumer.assignment():
        drop_lag(service, partition)
        reported.discard(partition)


def drop_lag(service: str, partition: TopicPartition) -> None:
    """Forget the lag of a partition this process no longer holds: the replica that took it over reports it."""
    with contextlib.suppress(KeyError):  # never reported here
        CONSUMER_LAG.remove(service, partition.topic, str(partition.partition))


async def read_to_end(consumer: AIOKafkaConsumer, topic: str) -> AsyncIterator[list[ConsumerRecord[Any, Any]]]:
    """Every record of `topic` up to its end as of now, a fetch at a time, each partition in its order: what a
    service reads to rebuild its Redis state from the log (the topics are kept for ever, so never whole in memory).
    `consumer` is one without a group, assigned here."""
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    remaining = {tp for tp in partitions if ends[tp] > 0}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=2000)
        for tp, records in batches.items():
            yield [r for r in records if r.offset < ends[tp]]
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)


async def topic_partitions(consumer: Any, topic: str, *, attempts: int = 50) -> list[int]:
    """Partition numbers of a topic, refreshing the consumer's metadata until the topic is known."""
    for _ in range(attempts):
        # A consumer without a subscription only knows the topics it was asked about.
        await consumer._client.add_topic(topic)
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} not found; create the topics first (broadsheet topics create)")
