"""`broadsheet`: the operator's command line (topics, drafts, ACLs, status, dead letters, AsyncAPI, the site).

Long work shows a progress bar; every command reads the same settings (environment) as the services, so the
same `KAFKA_*` variables that let a service in let the operator in (use the admin user for `acls apply`).

Dead-letter re-drives are remembered in the dead-letter topic itself: each re-drive produces the original
record to its source topic and a marker record (`dlq-redriven: <partition>:<offset>`) to the dead-letter
topic in one Kafka transaction, so a re-driven record is re-driven once, whatever happens to Redis or to
the operator's shell, and two operators re-driving at once fence each other (one transactional id per
dead-letter topic, whose producer starts before the letters are read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import redis.exceptions
import typer
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, ProducerFenced
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from shared import topics
from shared.kafka import FETCH_MAX_WAIT_MS, group_id, security_for
from shared.settings import ServiceSettings

app = typer.Typer(help="Broadsheet operator commands", no_args_is_help=True, add_completion=False)
topics_app = typer.Typer(help="Kafka topics", no_args_is_help=True)
drafts_app = typer.Typer(help="Newsroom drafts", no_args_is_help=True)
acls_app = typer.Typer(help="Kafka ACLs of the services' users (from the access matrix)", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, inspect, re-drive after a fix", no_args_is_help=True)
asyncapi_app = typer.Typer(help="AsyncAPI documents generated from the code", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(drafts_app, name="drafts")
app.add_typer(acls_app, name="acls")
app.add_typer(dlq_app, name="dlq")
app.add_typer(asyncapi_app, name="asyncapi")
console = Console(stderr=True)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 400)
"""Tables for people; piped or redirected, as wide as their rows (Rich would cut them to 80 columns)."""

REDRIVEN_HEADER = "redriven-from"
MARKER_HEADER = "dlq-redriven"
MARKER_KEY = b"dlq-redriven"
DROPPED_ON_REDRIVE = ("received-at",)


def client_options(settings: ServiceSettings) -> dict[str, object]:
    """aiokafka client options (bootstrap, security) from the same settings the services use."""
    options: dict[str, object] = {"bootstrap_servers": settings.kafka_bootstrap_servers}
    security = security_for(settings)
    if security is not None:
        from faststream.kafka.security import parse_security

        options.update(parse_security(security))
    return options


def reader_options(settings: ServiceSettings) -> dict[str, object]:
    """`client_options` for a consumer that reads the log itself (a rebuild, the related index, the CLI): the broker
    holds a fetch that finds nothing `FETCH_MAX_WAIT_MS`, as for the services' consumers, not aiokafka's 500 ms.

    A consumer's metadata and offset requests share its connection with its fetches, and the broker answers one
    request of a connection at a time: a reader that has read one topic to its end keeps fetching there, and each
    request for the next topic waited out a held fetch. The comments rebuild of three empty topics took 4.5 s,
    0.95 s now.
    """
    return {**client_options(settings), "fetch_max_wait_ms": FETCH_MAX_WAIT_MS}


@contextlib.asynccontextmanager
async def admin_client(settings: ServiceSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
    except BaseException:
        await admin.close()
        raise
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def reader(settings: ServiceSettings, **extra: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without a group: reads by explicit assignment and never commits anything."""
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024, **extra, **reader_options(settings),
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    # Let the consumer's background task begin: stopping one that never ran raises CancelledError (aiokafka).
    await asyncio.sleep(0)
    try:
        yield consumer
    finally:
        await consumer.stop()


class MissingTopic(RuntimeError):
    """A topic the command reads does not exist (a wrong KAFKA_TOPIC_PREFIX, or topics never created)."""


def run(coro: Any) -> Any:
    """Run a command's work; what an operator can fix is said in one line (exit 1), not as a traceback."""
    try:
        return asyncio.run(_quiet_when_fenced(coro))
    except KafkaConnectionError as exc:
        fail(f"Kafka is not reachable at {ServiceSettings().kafka_bootstrap_servers}: {exc}")
    except ProducerFenced:
        fail("another re-drive of this dead-letter topic took over; this one sent nothing more")
    except (MissingTopic, topics.TopicsRefused) as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(f"Kafka refused: {exc!r}")
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        fail(f"Redis is not reachable: {exc}")


async def _quiet_when_fenced(coro: Any) -> Any:
    """A fenced transactional producer leaves futures failed with `ProducerFenced` that nobody awaits; asyncio
    would print each with a traceback. The one line `run` prints says it all."""
    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not isinstance(context.get("exception"), ProducerFenced):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return await coro


def fail(message: str) -> NoReturn:
    console.print(f"[red]{message}[/red]")
    raise typer.Exit(1)


# --- topics ---------------------------------------------------------------------------------------------------


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int | None, typer.Option(help="partitions per topic (default from settings)")] = None,
) -> None:
    """Create every Broadsheet topic that does not exist yet (idempotent)."""
    settings = ServiceSettings()
    options = client_options(settings)
    bootstrap = str(options.pop("bootstrap_servers"))
    created = run(
        topics.ensure_topics(
            bootstrap,
            prefix=settings.kafka_topic_prefix,
            partitions=partitions or settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            client_options=options,
        )
    )
    for name in created:
        console.print(f"created {name}")
    console.print(f"{len(topics.TOPICS)} topics present ({len(created)} created)")


@topics_app.command("list")
def topics_list() -> None:
    """The topics Broadsheet uses, with what they hold."""
    settings = ServiceSettings()
    for spec in topics.TOPICS:
        typer.echo(f"{topics.with_prefix(settings.kafka_topic_prefix, spec.name)}\t{spec.description}")


@dataclass
class TopicInfo:
    name: str
    exists: bool
    partitions: int = 0
    replication_factor: int = 0
    records: int = 0
    configs: dict[str, str] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)

    @property
    def drift(self) -> dict[str, tuple[str, str]]:
        return {k: (v, self.configs.get(k, "?")) for k, v in self.expected.items() if self.configs.get(k) != v}


async def describe_topics(settings: ServiceSettings) -> list[TopicInfo]:
    names = {topics.with_prefix(settings.kafka_topic_prefix, s.name): s for s in topics.TOPICS}
    infos: list[TopicInfo] = []
    async with admin_client(settings) as admin:
        metadata = {t["topic"]: t for t in await admin.describe_topics(list(names))}
        present = [n for n in names if n in metadata and not metadata[n]["error_code"]]
        configs: dict[str, dict[str, str]] = {}
        if present:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in present]
            )
            for response in responses:
                for resource in response.resources:
                    entries = resource[4]
                    configs[resource[3]] = {str(e[0]): str(e[1]) for e in entries if e[1] is not None}
    async with reader(settings) as consumer:
        tps = [TopicPartition(n, p["partition"]) for n in present for p in metadata[n]["partitions"]]
        ends = await consumer.end_offsets(tps) if tps else {}
        starts = await consumer.beginning_offsets(tps) if tps else {}
    for name, spec in names.items():
        if name not in present:
            infos.append(TopicInfo(name, False, expected=dict(spec.config)))
            continue
        parts = metadata[name]["partitions"]
        infos.append(
            TopicInfo(
                name=name,
                exists=True,
                partitions=len(parts),
                replication_factor=len(parts[0]["replicas"]) if parts else 0,
                records=sum(ends[tp] - starts[tp] for tp in ends if tp.topic == name),
                configs=configs.get(name, {}),
                expected=dict(spec.config),
            )
        )
    return infos


SHOWN_CONFIGS = ("cleanup.policy", "retention.ms", "retention.bytes", "min.compaction.lag.ms", "max.message.bytes",
                 "min.insync.replicas")


@topics_app.command("describe")
def topics_describe(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Partitions, replication, record counts and the configs that matter, with drift from the code's spec."""
    infos = run(describe_topics(ServiceSettings()))
    if as_json:
        typer.echo(json.dumps([{**asdict(i), "drift": i.drift} for i in infos], indent=2))
        return
    table = Table(title="Broadsheet topics")
    for column in ("topic", "partitions", "RF", "records", *SHOWN_CONFIGS, "drift"):
        table.add_column(column)
    for info in infos:
        if not info.exists:
            table.add_row(info.name, "missing", "", "", *("" for _ in SHOWN_CONFIGS), "create it")
            continue
        table.add_row(
            info.name, str(info.partitions), str(info.replication_factor), str(info.records),
            *(info.configs.get(c, "") for c in SHOWN_CONFIGS),
            ", ".join(f"{k}={have} (want {want})" for k, (want, have) in info.drift.items()),
        )
    out.print(table)
    if any(not i.exists or i.drift for i in infos):
        raise typer.Exit(1)


# --- drafts ---------------------------------------------------------------------------------------------------


def draft_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    return [path]


async def produce_drafts(settings: ServiceSettings, drafts: list[tuple[bytes, bytes]]) -> int:
    """Produce (guid, raw draft) pairs, keyed by guid; returns how many Kafka acknowledged."""
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=True, max_request_size=4 * 1024 * 1024, linger_ms=5,
        **client_options(settings),
    )
    try:
        await producer.start()
        topic = topics.with_prefix(settings.kafka_topic_prefix, topics.DRAFTS)
        with Progress(console=console, transient=False) as progress:
            task = progress.add_task("posting drafts", total=len(drafts))
            futures = []
            for guid, raw in drafts:
                futures.append(await producer.send(topic, raw, key=guid))
                progress.advance(task)
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(drafts)


def checked_drafts(files: list[Path], max_bytes: int) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """The files that can be posted, as (guid, bytes), and why each of the others cannot: ingest would only
    dead-letter a draft without a guid or over the size limit, and a record without a key is on no story's
    partition."""
    drafts: list[tuple[bytes, bytes]] = []
    refused: list[str] = []
    for file in files:
        raw = file.read_bytes()
        guid = guid_of(raw)
        if len(raw) > max_bytes:
            refused.append(f"{file}: {len(raw):,} bytes, over the {max_bytes:,}-byte limit")
        elif not guid:
            refused.append(f"{file}: not a JSON object with a guid (or uri)")
        else:
            drafts.append((guid, raw))
    return drafts, refused


def guid_of(raw: bytes | None) -> bytes:
    """The draft's guid (or uri) as key bytes; empty when the value is not a JSON object with one."""
    try:
        data = json.loads(raw or b"")
    except (ValueError, RecursionError):
        return b""
    if not isinstance(data, dict):
        return b""
    return str(data.get("guid") or data.get("uri") or "").encode()


@drafts_app.command("post")
def drafts_post(path: Annotated[Path, typer.Argument(help="a ninjs JSON file or a folder of them")]) -> None:
    """Produce ninjs drafts to the newsroom.drafts topic, keyed by guid, as a newsroom system would. Files that
    are not drafts (no guid, not JSON, over the size limit) are named and skipped, and the exit code is 1."""
    if not path.exists():
        fail(f"{path} does not exist")
    files = draft_files(path)
    if not files:
        fail(f"no .json drafts under {path}")
    settings = ServiceSettings()
    drafts, refused = checked_drafts(files, settings.max_draft_bytes)
    sent = run(produce_drafts(settings, drafts)) if drafts else 0
    for why in refused:
        console.print(f"[red]skipped {why}[/red]")
    console.print(f"posted {sent} drafts" + (f", skipped {len(refused)}" if refused else ""))
    if refused:
        raise typer.Exit(1)


# --- ACLs -----------------------------------------------------------------------------------------------------

# Kafka protocol codes (org.apache.kafka.common.acl / resource).
RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
OPERATION = {"Read": 3, "Write": 4, "Describe": 8, "IdempotentWrite": 12}
PATTERN_LITERAL = 3
PERMISSION_ALLOW = 3


@dataclass(frozen=True)
class AclEntry:
    principal: str
    resource_type: str
    resource_name: str
    operation: str

    def __str__(self) -> str:
        return f"{self.principal} {self.operation} {self.resource_type}:{self.resource_name}"


def acl_matrix(settings: ServiceSettings, principal_format: str = "User:broadsheet-{service}") -> list[AclEntry]:
    """Exactly what each service needs: Read+Describe on what it reads, Write+Describe on what it writes, Read on
    its own group (joins, commits, offset fetches), IdempotentWrite on the cluster (idempotent producers)."""
    from shared.asyncapi import ACCESS

    entries: list[AclEntry] = []
    for service, access in ACCESS.items():
        principal = principal_format.format(service=service)
        ops: dict[str, list[str]] = {}
        for topic in access.reads:
            ops.setdefault(topic, []).extend(["Read", "Describe"])
        for topic in access.writes:
            ops.setdefault(topic, []).extend(["Write", "Describe"])
        for topic, wanted in ops.items():
            name = topics.with_prefix(settings.kafka_topic_prefix, topic)
            entries.extend(AclEntry(principal, "topic", name, op) for op in dict.fromkeys(wanted))
        group = group_id(settings, service)
        entries.append(AclEntry(principal, "group", group, "Read"))
        entries.append(AclEntry(principal, "group", group, "Describe"))
        entries.append(AclEntry(principal, "cluster", "kafka-cluster", "IdempotentWrite"))
    return entries


async def create_acls(settings: ServiceSettings, entries: Sequence[AclEntry]) -> None:
    """CreateAcls over the Kafka admin protocol (aiokafka has the request, not an admin method)."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import CreateAclsRequest

    client = AIOKafkaClient(**client_options(settings))
    await client.bootstrap()
    try:
        node = client.get_random_node()
        with Progress(console=console) as progress:
            task = progress.add_task("creating ACLs", total=len(entries))
            for entry in entries:
                request = CreateAclsRequest(
                    RESOURCE[entry.resource_type], entry.resource_name, PATTERN_LITERAL, entry.principal, "*",
                    OPERATION[entry.operation], PERMISSION_ALLOW,
                )
                response = await client.send(node, request)
                for code, message in response.creation_responses:
                    if code:
                        raise for_code(code)(f"{entry}: {message}")
                progress.advance(task)
    finally:
        await client.close()


@acls_app.command("apply")
def acls_apply(
    principal: Annotated[str, typer.Option(help="principal of each service's user")] = "User:broadsheet-{service}",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the ACLs, create nothing")] = False,
) -> None:
    """Create the ACLs of the access matrix (idempotent; run as a super user)."""
    settings = ServiceSettings()
    entries = acl_matrix(settings, principal)
    if dry_run:
        for entry in entries:
            typer.echo(str(entry))
        return
    run(create_acls(settings, entries))
    console.print(f"{len(entries)} ACLs present for {len({e.principal for e in entries})} users")


# --- lag and status -------------------------------------------------------------------------------------------


@dataclass
class GroupLag:
    group: str
    service: str
    partitions: dict[str, dict[int, int]] = field(default_factory=dict)
    """topic → partition → records behind the end of the log (uncommitted partitions count from the start)."""

    @property
    def total(self) -> int:
        return sum(sum(parts.values()) for parts in self.partitions.values())

    def per_topic(self) -> dict[str, int]:
        return {topic: sum(parts.values()) for topic, parts in self.partitions.items()}


async def consumer_lag(settings: ServiceSettings, services: Iterable[str] = topics.SERVICES) -> list[GroupLag]:
    """Lag of each service's consumer group on the topics it consumes through the group."""
    from shared.asyncapi import ACCESS

    result: list[GroupLag] = []
    async with admin_client(settings) as admin, reader(settings) as consumer:
        for service in services:
            names = [topics.with_prefix(settings.kafka_topic_prefix, t) for t in ACCESS[service].group_reads]
            tps = [
                TopicPartition(name, p)
                for name in names
                for p in sorted(consumer.partitions_for_topic(name) or await _partitions(consumer, name))
            ]
            group = group_id(settings, service)
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(tps) if tps else {}
            starts = await consumer.beginning_offsets(tps) if tps else {}
            lag = GroupLag(group, service)
            for tp in tps:
                meta = committed.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                lag.partitions.setdefault(tp.topic, {})[tp.partition] = max(0, ends[tp] - position)
            result.append(lag)
    return result


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(30):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise MissingTopic(f"topic {topic} does not exist (check KAFKA_TOPIC_PREFIX, or run `broadsheet topics create`)")


METRIC_LINE = re.compile(r'^(?P<name>[a-zA-Z_:]+)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')


def histogram_quantiles(text: str, metric: str, quantiles: Sequence[float]) -> dict[float, float] | None:
    """Quantiles estimated from a Prometheus histogram's cumulative buckets (linear inside a bucket)."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if not match or match["name"] != f"{metric}_bucket":
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        bound = float("inf") if labels.get("le") == "+Inf" else float(labels.get("le", "nan"))
        buckets[bound] = buckets.get(bound, 0.0) + float(match["value"])
    if not buckets or max(buckets.values()) <= 0:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    result: dict[float, float] = {}
    for q in quantiles:
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound in bounds:
            count = buckets[bound]
            if count >= rank:
                if bound == float("inf"):
                    result[q] = lower_bound
                else:
                    share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
                    result[q] = lower_bound + (bound - lower_bound) * share
                break
            lower_bound, lower_count = bound, count
    return result


async def freshness(url: str) -> dict[float, float] | None:
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return histogram_quantiles(response.text, "broadsheet_freshness_seconds", (0.5, 0.99))


def default_metrics_url() -> str:
    import os

    return f"http://127.0.0.1:{os.environ.get('PUBLISHER_HTTP_PORT', '8080')}/metrics"


@app.command("status")
def status(
    metrics_url: Annotated[str | None, typer.Option(help="the publisher's /metrics (freshness)")] = None,
    all_partitions: Annotated[bool, typer.Option("--all", help="list partitions with no lag too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Consumer lag per group (per topic/partition and total), dead letters per service, page freshness."""
    settings = ServiceSettings()
    lags = run(consumer_lag(settings))
    letters = run(dead_letter_counts(settings))
    fresh = run(freshness(metrics_url or default_metrics_url()))
    if as_json:
        typer.echo(json.dumps({
            "groups": {g.group: {"service": g.service, "total": g.total, "topics": g.per_topic(),
                                 "partitions": g.partitions} for g in lags},
            "dead_letters": letters,
            "freshness_seconds": {"p50": fresh[0.5], "p99": fresh[0.99]} if fresh else None,
        }, indent=2))
        return
    table = Table(title="Consumer lag")
    for column in ("group", "topic", "partition", "lag"):
        table.add_column(column)
    for lag in lags:
        for topic, parts in lag.partitions.items():
            for partition, behind in sorted(parts.items()):
                if behind or all_partitions:
                    table.add_row(lag.group, topic, str(partition), str(behind))
            table.add_row(lag.group, topic, "all", str(sum(parts.values())), style="bold")
        table.add_row(lag.group, "total", "", str(lag.total), style="bold cyan")
    out.print(table)
    dlq = Table(title="Dead letters")
    for column in ("service", "topic", "waiting", "re-driven"):
        dlq.add_column(column)
    for service, counts in letters.items():
        dlq.add_row(service, counts["topic"], str(counts["waiting"]), str(counts["redriven"]))
    out.print(dlq)
    if fresh:
        out.print(f"freshness (draft received → page written): p50 {fresh[0.5]:.3f}s, p99 {fresh[0.99]:.3f}s")
    else:
        out.print("freshness: no samples (publisher /metrics unreachable or nothing published yet)")


# --- dead letters ---------------------------------------------------------------------------------------------


@dataclass
class Letter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    timestamp: int

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def reason_code(self) -> str:
        return self.headers.get("dlq-reason-code", "")

    def summary(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": (self.key or b"").decode("utf-8", "replace"),
            "reason_code": self.reason_code,
            "reason": self.headers.get("dlq-reason", ""),
            "source_topic": self.headers.get("dlq-source-topic", ""),
            "source_partition": int(self.headers.get("dlq-source-partition") or -1),
            "source_offset": int(self.headers.get("dlq-source-offset") or -1),
            "consumer": self.headers.get("dlq-consumer", ""),
            "attempts": int(self.headers.get("dlq-attempts") or 1),
            "failed_at": self.headers.get("dlq-failed-at")
            or datetime.fromtimestamp(self.timestamp / 1000, UTC).isoformat(),
        }


@dataclass
class DeadLetters:
    topic: str
    letters: list[Letter]
    redriven: dict[str, str]
    """`partition:offset` of a dead letter → where its re-drive went."""

    def waiting(self) -> list[Letter]:
        return [letter for letter in self.letters if letter.ref not in self.redriven]


def decode_headers(raw: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for k, v in raw or ()}


def dlq_topic(settings: ServiceSettings, service: str) -> str:
    if service not in topics.SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(topics.SERVICES)}")
    return topics.with_prefix(settings.kafka_topic_prefix, topics.dead_letter_topic(service))


async def read_dead_letters(settings: ServiceSettings, service: str, *, progress: bool = True) -> DeadLetters:
    """Every record of the service's dead-letter topic up to its current end, and the re-drive markers."""
    topic = dlq_topic(settings, service)
    letters: list[Letter] = []
    redriven: dict[str, str] = {}
    async with reader(settings) as consumer:
        parts = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        with Progress(console=console, transient=True, disable=not progress) as bar:
            task = bar.add_task(f"reading {topic}", total=sum(ends[tp] - starts[tp] for tp in tps))
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
                for records in batches.values():
                    for record in records:
                        _collect(record, letters, redriven)
                    bar.advance(task, len(records))
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    letters.sort(key=lambda letter: (letter.timestamp, letter.partition, letter.offset))
    return DeadLetters(topic, letters, redriven)


def _collect(record: ConsumerRecord[Any, Any], letters: list[Letter], redriven: dict[str, str]) -> None:
    headers = decode_headers(record.headers)
    if MARKER_HEADER in headers:
        redriven[headers[MARKER_HEADER]] = headers.get("dlq-redriven-to", "")
        return
    letters.append(
        Letter(record.topic, record.partition, record.offset, record.key, record.value or b"", headers,
               record.timestamp)
    )


async def dead_letter_counts(settings: ServiceSettings) -> dict[str, dict[str, Any]]:
    counts: dict[str, dict[str, Any]] = {}
    for service in topics.SERVICES:
        letters = await read_dead_letters(settings, service, progress=False)
        counts[service] = {
            "topic": letters.topic,
            "waiting": len(letters.waiting()),
            "redriven": len(letters.redriven),
            "by_reason": _by_reason(letters.waiting()),
        }
    return counts


def _by_reason(letters: Iterable[Letter]) -> dict[str, int]:
    found: dict[str, int] = {}
    for letter in letters:
        found[letter.reason_code] = found.get(letter.reason_code, 0) + 1
    return dict(sorted(found.items()))


def select(letters: DeadLetters, *, reason: str | None, offset: str | None, include_redriven: bool) -> list[Letter]:
    chosen = letters.letters if include_redriven else letters.waiting()
    if reason:
        chosen = [letter for letter in chosen if letter.reason_code == reason]
    if offset is not None:
        chosen = [letter for letter in chosen if matches(letter, offset)]
    return chosen


LETTER_REF = re.compile(r"[0-9]+(:[0-9]+)?")


def matches(letter: Letter, ref: str) -> bool:
    """`ref` is `partition:offset`, or an offset alone."""
    if not LETTER_REF.fullmatch(ref):
        raise typer.BadParameter(f"{ref!r}: give `partition:offset` or an offset, e.g. 3:120", param_hint="offset")
    if ":" in ref:
        partition, _, offset = ref.partition(":")
        return letter.partition == int(partition) and letter.offset == int(offset)
    return letter.offset == int(ref)


ServiceArg = Annotated[str, typer.Argument(help="ingest, related, comments or publisher")]


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str | None, typer.Option(help="one service's dead letters (default: all)")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason code, e.g. unsupported_type")] = None,
    redriven: Annotated[bool, typer.Option("--redriven", help="include records already re-driven")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Dead letters waiting for a fix: offset, key, reason, source topic/partition/offset, time."""
    settings = ServiceSettings()
    services = [service] if service else list(topics.SERVICES)
    rows: list[dict[str, Any]] = []
    for name in services:
        letters = run(read_dead_letters(settings, name))
        for letter in select(letters, reason=reason, offset=None, include_redriven=redriven):
            rows.append({"service": name, **letter.summary(),
                         "redriven_to": letters.redriven.get(letter.ref)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Dead letters")
    for column in ("service", "at", "key", "reason code", "reason", "source", "failed at", "re-driven"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["service"], f"{row['partition']}:{row['offset']}", row["key"], row["reason_code"],
            row["reason"][:120], f"{row['source_topic']}[{row['source_partition']}]@{row['source_offset']}",
            row["failed_at"], row["redriven_to"] or "",
        )
    out.print(table)
    console.print(f"{len(rows)} dead letters")


@dlq_app.command("show")
def dlq_show(
    service: ServiceArg,
    offset: Annotated[str, typer.Argument(help="`partition:offset` (as `dlq list` shows it) or an offset")],
) -> None:
    """One dead letter: every header, then the original bytes exactly as they were read."""
    settings = ServiceSettings()
    letters = run(read_dead_letters(settings, service))
    chosen = select(letters, reason=None, offset=offset, include_redriven=True)
    if not chosen:
        console.print(f"no dead letter at {offset} in {letters.topic}")
        raise typer.Exit(1)
    if len(chosen) > 1:
        console.print(f"offset {offset} is in several partitions: {', '.join(c.ref for c in chosen)}; "
                      "say partition:offset")
        raise typer.Exit(2)
    letter = chosen[0]
    typer.echo(f"topic: {letter.topic}")
    typer.echo(f"partition: {letter.partition}")
    typer.echo(f"offset: {letter.offset}")
    typer.echo(f"key: {(letter.key or b'').decode('utf-8', 'replace')}")
    if letter.ref in letters.redriven:
        typer.echo(f"re-driven to: {letters.redriven[letter.ref]}")
    for name, value in sorted(letter.headers.items()):
        typer.echo(f"header {name}: {value}")
    typer.echo(f"value ({len(letter.value)} bytes):")
    import sys

    sys.stdout.flush()
    sys.stdout.buffer.write(letter.value + b"\n")
    sys.stdout.flush()


@dataclass
class Redrive:
    letter: Letter
    key: bytes | None
    target: str
    result: str = ""


async def redrive(
    settings: ServiceSettings,
    service: str,
    *,
    reason: str | None = None,
    offset: str | None = None,
    set_key_from_guid: bool = False,
    dry_run: bool = False,
) -> list[Redrive]:
    """Produce each chosen dead letter's original bytes and key to its source topic, with `redriven-from`, and
    mark it re-driven in the same transaction. Records already re-driven are never chosen again.

    The transactional producer starts before the letters are read: starting it fences any other re-drive of the
    topic (its transactions fail from then on) and waits for that one's open transaction to end, so the markers
    read after it include everything the other re-drive committed, and nothing is sent twice."""
    if dry_run:
        return plan_redrive(await read_dead_letters(settings, service), reason, offset, set_key_from_guid)
    topic = dlq_topic(settings, service)
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=True, transactional_id=f"{topic}.redrive",
        max_request_size=8 * 1024 * 1024, **client_options(settings),
    )
    try:
        await producer.start()
        letters = await read_dead_letters(settings, service)
        plan = plan_redrive(letters, reason, offset, set_key_from_guid)
        with Progress(console=console) as bar:
            task = bar.add_task(f"re-driving {len(plan)} records", total=len(plan))
            for item in plan:
                letter = item.letter
                origin = f"{letters.topic}:{letter.partition}:{letter.offset}"
                headers = [
                    (k, v.encode()) for k, v in letter.headers.items()
                    if not k.startswith("dlq-") and k not in DROPPED_ON_REDRIVE and k != REDRIVEN_HEADER
                ]
                headers.append((REDRIVEN_HEADER, origin.encode()))
                async with producer.transaction():
                    sent = await producer.send_and_wait(item.target, letter.value, key=item.key, headers=headers)
                    item.result = f"{sent.topic}:{sent.partition}:{sent.offset}"
                    marker = [
                        (MARKER_HEADER, letter.ref.encode()),
                        ("dlq-redriven-to", item.result.encode()),
                        ("dlq-redriven-at", datetime.now(UTC).isoformat().encode()),
                    ]
                    await producer.send_and_wait(
                        letters.topic, b"", key=MARKER_KEY, partition=letter.partition, headers=marker
                    )
                bar.advance(task)
    finally:
        await producer.stop()
    return plan


def plan_redrive(
    letters: DeadLetters, reason: str | None, offset: str | None, set_key_from_guid: bool
) -> list[Redrive]:
    plan: list[Redrive] = []
    for letter in select(letters, reason=reason, offset=offset, include_redriven=False):
        source = letter.headers.get("dlq-source-topic", "")
        if not source:
            console.print(f"skipping {letter.ref}: no dlq-source-topic header")
            continue
        key = (guid_of(letter.value) or letter.key) if set_key_from_guid else letter.key
        plan.append(Redrive(letter, key, source))
    return plan


@dlq_app.command("redrive")
def dlq_redrive(
    service: ServiceArg,
    reason: Annotated[str | None, typer.Option(help="only dead letters with this reason code")] = None,
    offset: Annotated[str | None, typer.Option(help="only this dead letter (`partition:offset` or offset)")] = None,
    set_key_from_guid: Annotated[
        bool, typer.Option("--set-key-from-guid", help="fix: key the record by the guid in its JSON value")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be re-driven")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Re-produce dead letters to their source topic after a fix; each one is re-driven at most once."""
    settings = ServiceSettings()
    plan = run(redrive(settings, service, reason=reason, offset=offset, set_key_from_guid=set_key_from_guid,
                       dry_run=dry_run))
    rows = [{"from": f"{item.letter.partition}:{item.letter.offset}", "to": item.result or item.target,
             "key": (item.key or b"").decode("utf-8", "replace"), "reason_code": item.letter.reason_code}
            for item in plan]
    if as_json:
        typer.echo(json.dumps({"redriven": [] if dry_run else rows, "planned": rows if dry_run else []}, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['from']}\t→ {row['to']}\tkey={row['key']}\t{row['reason_code']}")
    verb = "would re-drive" if dry_run else "re-drove"
    console.print(f"{verb} {len(plan)} records from {dlq_topic(settings, service)}")


# --- AsyncAPI -------------------------------------------------------------------------------------------------


@asyncapi_app.command("gen")
def asyncapi_gen(
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for {service}.yaml")] = None,
) -> None:
    """Write deploy/asyncapi/{service}.yaml from the code (services, topics, contracts)."""
    from shared import asyncapi

    written = asyncapi.write_all(out_dir or asyncapi.DEFAULT_OUT_DIR)
    for path in written:
        console.print(f"wrote {path}")


# --- the site (publisher) -------------------------------------------------------------------------------------

_site_mounted = False


def mount_site() -> None:
    """`broadsheet site …` is the publisher's own command group. It is mounted when the CLI runs, not when this
    module is imported: the publisher imports `client_options` from here."""
    global _site_mounted
    if _site_mounted:
        return
    from services.publisher.rebuild import app as site_app

    app.add_typer(site_app, name="site")
    _site_mounted = True


def main() -> None:
    mount_site()
    try:
        app()
    except ValidationError as exc:
        if not exc.title.endswith("Settings"):
            raise
        # A setting missing or wrong in the environment is the operator's to fix: say which, not a traceback.
        for error in exc.errors(include_url=False, include_input=False):
            name = "_".join(str(part) for part in error["loc"]).upper()
            console.print(f"[red]configuration: {name + ': ' if name else ''}{error['msg']}[/red]")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
