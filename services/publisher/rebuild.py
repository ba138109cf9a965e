"""Rebuild the whole site from the Kafka log into a new Redis namespace, then switch readers over atomically.

Readers keep getting the old pages while the new namespace is built; live publishers apply every new event to
both namespaces meanwhile (see `live.py`), so the switch loses nothing. A dry run builds the new namespace,
reports which pages would change (before a template change, say), and throws it away.
"""

from __future__ import annotations

import asyncio
import difflib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import Progress

from services.publisher.apply import apply_record
from services.publisher.config import PublisherSettings
from services.publisher.live import SiteKeys, read_namespaces
from services.publisher.project import Dirty, Projector
from services.publisher.site import SiteConfig
from services.publisher.store import PublisherStore
from shared import topics
from shared.cli import client_options
from shared.kafka import Reject, topic_name, topic_partitions
from shared.logging import get_logger
from shared.redis import make_redis

log = get_logger(__name__)
app = typer.Typer(help="The public site: rebuild from the log, compare", no_args_is_help=True)
ProgressCallback = Callable[[int, int], None]


class RebuildBusy(RuntimeError):
    pass


@dataclass
class RebuildReport:
    old_namespace: str
    new_namespace: str
    records: int = 0
    pages: int = 0
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    switched: bool = False
    diffs: dict[str, str] = field(default_factory=dict)
    """A unified diff (old → new) of the first changed pages: why they would change, not only that they do."""


def site_config(settings: PublisherSettings) -> SiteConfig:
    return SiteConfig(
        name=settings.site_name, base_url=settings.site_base_url, tagline=settings.site_tagline,
        page_size=settings.page_size,
    )


def projector_factory(settings: PublisherSettings) -> Callable[[PublisherStore], Projector]:
    """How every publisher renders: the live consumer and a rebuild must produce the same bytes."""
    site = site_config(settings)
    secret = settings.comment_form_secret.get_secret_value()

    def make(store: PublisherStore) -> Projector:
        return Projector(store, site, form_secret=secret)

    return make


async def page_fingerprints(client: aioredis.Redis, namespace: str) -> dict[str, bytes]:
    """Every page of a namespace: path → status, location and ETag (a hash of the body), to compare sites."""
    prefix = f"{namespace}:page:{{"
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    bodies: dict[str, bytes] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        async with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hmget(key, "status", "loc", "etag")
            for key, (status, location, etag) in zip(chunk, await pipe.execute(), strict=True):
                path = key.decode()[len(prefix) : -1]
                bodies[path] = (status or b"") + b" " + (location or b"") + b" " + (etag or b"")
    return bodies


def as_text(raw: bytes | str | None) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw or ""


async def page_diffs(client: aioredis.Redis, old: str, new: str, paths: list[str]) -> dict[str, str]:
    diffs: dict[str, str] = {}
    for path in paths:
        before, after = [await client.hget(f"{ns}:page:{{{path}}}", "body") for ns in (old, new)]
        lines = difflib.unified_diff(
            as_text(before).splitlines(), as_text(after).splitlines(),
            f"{old}{path}", f"{new}{path}", n=1, lineterm="",
        )
        diffs[path] = "\n".join(lines)
    return diffs


async def drop_namespace(client: aioredis.Redis, namespace: str) -> int:
    """Remove a site namespace's pages and state (never the control keys under `{base}:site:`)."""
    removed = 0
    for pattern in (f"{namespace}:page:*", f"{namespace}:pub:*"):
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += await client.unlink(*batch)
                batch = []
        if batch:
            removed += await client.unlink(*batch)
    await client.delete(SiteKeys.built(namespace))
    return removed


async def replay_into(
    settings: PublisherSettings, projector: Projector, on_progress: ProgressCallback | None = None
) -> int:
    """Apply the three input topics from their beginning up to their end as of now."""
    names = [topic_name(settings, t) for t in (topics.ARTICLES, topics.RELATED, topics.COMMENT_DECISIONS)]
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024, **client_options(settings),
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(name, p) for name in names for p in await topic_partitions(consumer, name)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        done = skipped = 0
        if on_progress:
            on_progress(done, total)
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            dirty = Dirty()

            async def apply_partition(tp: TopicPartition, records: list[Any], dirty: Dirty = dirty) -> tuple[int, int]:
                """Records of one partition in order (one guid lives on one partition); partitions overlap."""
                applied = rejected = 0
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    try:
                        await apply_record(record, projector, dirty, live=False)
                    except Reject:
                        rejected += 1  # dead-lettered by the live consumer when it first arrived
                    applied += 1
                return applied, rejected

            for applied, rejected in await asyncio.gather(*(apply_partition(tp, rs) for tp, rs in batches.items())):
                done += applied
                skipped += rejected
            for tp, records in batches.items():
                if records and records[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
            await projector.flush(dirty)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if on_progress:
                on_progress(done, total)
        if skipped:
            log.warning("records that do not match their contract were skipped", count=skipped)
        return done
    finally:
        await consumer.stop()


async def rebuild_site(
    settings: PublisherSettings,
    client: aioredis.Redis,
    *,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    settle_seconds: float = 1.0,
    keep_old_seconds: float = 5.0,
    make_projector: Callable[[PublisherStore], Projector] | None = None,
    diff_pages: int = 3,
) -> RebuildReport:
    keys = SiteKeys(settings.redis_namespace)
    token = uuid.uuid4().hex
    if not await client.set(keys.lock, token, nx=True, ex=3600):
        raise RebuildBusy("another rebuild is running (lock held)")
    started = time.perf_counter()
    old, _ = await read_namespaces(client, keys)
    new = f"{keys.base}~{int(time.time() * 1000)}"
    report = RebuildReport(old, new)
    build = make_projector or projector_factory(settings)
    projector = build(PublisherStore(client, new))
    try:
        await client.set(keys.rebuilding, new)
        await asyncio.sleep(settle_seconds)  # live replicas notice and start writing both namespaces
        report.records = await replay_into(settings, projector, on_progress)
        await projector.write_site_pages()
        await client.set(SiteKeys.built(new), "1")
        old_pages = await page_fingerprints(client, old)
        new_pages = await page_fingerprints(client, new)
        report.pages = len(new_pages)
        report.changed = sorted(p for p in new_pages.keys() & old_pages.keys() if new_pages[p] != old_pages[p])
        report.added = sorted(new_pages.keys() - old_pages.keys())
        report.removed = sorted(old_pages.keys() - new_pages.keys())
        report.diffs = await page_diffs(client, old, new, report.changed[:diff_pages])
        if dry_run:
            await client.delete(keys.rebuilding)
            await drop_namespace(client, new)
        else:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(keys.active, new)
                pipe.delete(keys.rebuilding)
                await pipe.execute()
            report.switched = True
            await asyncio.sleep(keep_old_seconds)  # requests already reading the old namespace finish
            if old != new:
                await drop_namespace(client, old)
    except BaseException:
        await client.delete(keys.rebuilding)
        await drop_namespace(client, new)
        raise
    finally:
        if (await client.get(keys.lock)) == token.encode():
            await client.delete(keys.lock)
    report.seconds = time.perf_counter() - started
    log.info("site rebuilt", old=old, new=new, records=report.records, pages=report.pages,
             changed=len(report.changed), dry_run=dry_run, seconds=round(report.seconds, 2))
    return report


@app.command("rebuild")
def rebuild_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="report which pages would change; switch nothing"),
    show: int = typer.Option(20, help="how many changed paths to list"),
) -> None:
    """Rebuild every page from the Kafka log into a new namespace, then switch readers to it."""
    console = Console(stderr=True)
    settings = PublisherSettings()

    async def run() -> RebuildReport:
        client = make_redis(settings)
        try:
            with Progress(console=console) as progress:
                task = progress.add_task("replaying the log", total=None)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                return await rebuild_site(settings, client, dry_run=dry_run, on_progress=advance)
        finally:
            await client.aclose()

    report = asyncio.run(run())
    verb = "would change" if dry_run else "changed"
    console.print(
        f"{report.records} records replayed into {report.new_namespace} in {report.seconds:.1f}s; "
        f"{report.pages} pages; {len(report.changed)} {verb}, {len(report.added)} new, {len(report.removed)} gone"
    )
    for path in report.changed[:show]:
        typer.echo(f"changed\t{path}")
    for diff in report.diffs.values():
        typer.echo(diff)
    for path in report.added[:show]:
        typer.echo(f"new\t{path}")
    for path in report.removed[:show]:
        typer.echo(f"gone\t{path}")
    if not dry_run:
        console.print(f"readers now served from {report.new_namespace}")
