"""Rebuild the whole site from the Kafka log into a new Redis namespace, then switch readers over atomically.

Readers keep getting the old pages while the new namespace is built; live publishers apply every new event to
both namespaces meanwhile (see `live.py`), so the switch loses nothing. A dry run builds the new namespace,
reports which pages would change (before a template change, say), and throws it away.
"""

from __future__ import annotations

import asyncio
import difflib
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
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
from services.publisher.store import PublisherStore, page_body
from shared import topics
from shared.cli import fail, reader_options
from shared.cli import run as cli_run
from shared.kafka import Reject, topic_name, topic_partitions
from shared.logging import get_logger
from shared.redis import hgetall, make_redis, unlink_matching

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
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent replaying (and rendering), then comparing the two sites."""


def site_config(settings: PublisherSettings) -> SiteConfig:
    return SiteConfig(
        name=settings.site_name, base_url=settings.site_base_url, tagline=settings.site_tagline,
        page_size=settings.page_size, max_reply_depth=settings.comments_max_reply_depth,
        nav_sections=settings.nav_sections, comments_close_after_days=settings.comments_close_after_days,
    )


def projector_factory(settings: PublisherSettings) -> Callable[[PublisherStore], Projector]:
    """How every publisher renders: the live consumer and a rebuild must produce the same bytes."""
    site = site_config(settings)
    secret = settings.comment_form_secret.get_secret_value()

    def make(store: PublisherStore) -> Projector:
        return Projector(store, site, form_secret=secret)

    return make


def namespace_projector(settings: PublisherSettings, client: aioredis.Redis, namespace: str) -> Projector:
    return projector_factory(settings)(PublisherStore(client, namespace))


async def page_fingerprints(client: aioredis.Redis, namespace: str) -> dict[str, bytes]:
    """Every page of a namespace that answers readers differently from no page at all: path → status, location
    and ETag (a hash of the body), to compare sites.

    A stored 404 is left out: it is the same error page the reader gets where nothing is stored. Those are list
    pages past a list's end (a list that shrank keeps answering for the pages it had) and withdrawn stories, and
    which of the first a replay writes depends on the order it meets the partitions: a rebuild whose lists peaked
    lower on the way is the same site."""
    prefix = f"{namespace}:page:{{"
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    bodies: dict[str, bytes] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        async with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hmget(key, "status", "loc", "etag")
            for key, (status, location, etag) in zip(chunk, await pipe.execute(), strict=True):
                if status == b"404":
                    continue
                path = key.decode()[len(prefix) : -1]
                bodies[path] = (status or b"") + b" " + (location or b"") + b" " + (etag or b"")
    return bodies


async def page_diffs(client: aioredis.Redis, old: str, new: str, paths: list[str]) -> dict[str, str]:
    diffs: dict[str, str] = {}
    for path in paths:
        before, after = [page_body(await hgetall(client, f"{ns}:page:{{{path}}}")) for ns in (old, new)]
        lines = difflib.unified_diff(
            before.decode(errors="replace").splitlines(), after.decode(errors="replace").splitlines(),
            f"{old}{path}", f"{new}{path}", n=1, lineterm="",
        )
        diffs[path] = "\n".join(lines)
    return diffs


async def drop_namespace(client: aioredis.Redis, namespace: str) -> int:
    """Remove a site namespace's pages and state (never the control keys under `{base}:site:`)."""
    removed = 0
    for pattern in (f"{namespace}:page:*", f"{namespace}:pub:*"):
        removed += await unlink_matching(client, pattern)
    await client.delete(SiteKeys.built(namespace))
    return removed


@dataclass
class Replayed:
    """What replaying some partitions did: records applied, records skipped, and per list the most items it
    held (the pages it has had), so each list is rendered once, at the end."""

    records: int = 0
    skipped: int = 0
    longest: dict[str, int] = field(default_factory=dict)

    def add(self, other: Replayed) -> None:
        self.records += other.records
        self.skipped += other.skipped
        for name, most in other.longest.items():
            self.longest[name] = max(self.longest.get(name, 0), most)


async def log_ends(settings: PublisherSettings) -> dict[TopicPartition, tuple[int, int]]:
    """Every partition of the three input topics with what it holds now: (first offset, end offset)."""
    names = [topic_name(settings, t) for t in (topics.ARTICLES, topics.RELATED, topics.COMMENT_DECISIONS)]
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **reader_options(settings))
    await consumer.start()
    try:
        partitions = [TopicPartition(name, p) for name in names for p in await topic_partitions(consumer, name)]
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return {tp: (int(starts[tp]), int(ends[tp])) for tp in partitions}
    finally:
        await consumer.stop()


async def replay_partitions(
    settings: PublisherSettings,
    projector: Projector,
    ends: dict[TopicPartition, tuple[int, int]],
    on_progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Apply these partitions from their beginning up to the given ends, each partition in order (what one
    guid has on a topic lives on one partition); partitions overlap. Article pages are rendered batch by
    batch; the lists are left to `render_lists`."""
    replayed = Replayed()
    remaining = {tp for tp, (start, end) in ends.items() if end > start}
    if not remaining:
        # No consumer at all: one stopped right after it started dies in aiokafka's coordinator (CancelledError).
        return replayed
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024, **reader_options(settings),
    )
    await consumer.start()
    try:
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            dirty = Dirty()

            async def apply_partition(tp: TopicPartition, records: list[Any], dirty: Dirty = dirty) -> tuple[int, int]:
                applied = rejected = 0
                for record in records:
                    if record.offset >= ends[tp][1]:
                        continue
                    try:
                        await apply_record(record, projector, dirty, live=False)
                    except Reject:
                        rejected += 1  # dead-lettered by the live consumer when it first arrived
                    applied += 1
                return applied, rejected

            for applied, rejected in await asyncio.gather(*(apply_partition(tp, rs) for tp, rs in batches.items())):
                replayed.records += applied
                replayed.skipped += rejected
            for name, changes in dirty.lists.items():
                most = max(max(c.count_before, c.count_after) for c in changes)
                replayed.longest[name] = max(replayed.longest.get(name, 0), most)
            await projector.flush_articles(dirty)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp][1]:
                    remaining.discard(tp)
            if on_progress:
                on_progress(replayed.records)
        return replayed
    finally:
        await consumer.stop()


async def render_lists(projector: Projector, longest: dict[str, int]) -> None:
    for name in sorted(longest):
        await projector.render_whole_list(name, longest[name])


# --- worker processes: rendering is CPU-bound Python, so a rebuild uses every core ---------------------------

_progress: Any = None  # this worker's view of the shared progress counters (one slot per worker)


def _start_worker(progress: Any) -> None:
    global _progress
    _progress = progress


def _replay_in_worker(
    settings: PublisherSettings, namespace: str, slot: int, ends: dict[TopicPartition, tuple[int, int]]
) -> Replayed:
    def report(done: int) -> None:
        _progress[slot] = done

    async def run() -> Replayed:
        client = make_redis(settings)
        try:
            return await replay_partitions(settings, namespace_projector(settings, client, namespace), ends, report)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _render_lists_in_worker(settings: PublisherSettings, namespace: str, longest: dict[str, int]) -> None:
    async def run() -> None:
        client = make_redis(settings)
        try:
            await render_lists(namespace_projector(settings, client, namespace), longest)
        finally:
            await client.aclose()

    asyncio.run(run())


def rebuild_workers(settings: PublisherSettings) -> int:
    return settings.rebuild_workers or max(1, min(os.cpu_count() or 1, 8))


async def replay_into(
    settings: PublisherSettings,
    client: aioredis.Redis,
    namespace: str,
    on_progress: ProgressCallback | None = None,
    workers: int = 1,
) -> int:
    """Apply the three input topics from their beginning up to their end as of now into `namespace`, then
    render every list, the sitemaps and the news sitemap once. With several workers, the partitions are dealt
    out to processes: the store is already safe for any interleaving of partitions (live replicas share it)."""
    ends = await log_ends(settings)
    total = sum(end - start for start, end in ends.values())
    projector = namespace_projector(settings, client, namespace)
    if on_progress:
        on_progress(0, total)
    replayed = Replayed()
    if workers > 1:
        # A worker per partition that holds records at most: an idle one would only start and stop a client.
        workers = min(workers, sum(1 for start, end in ends.values() if end > start))
    if workers <= 1:
        replayed = await replay_partitions(
            settings, projector, ends, (lambda done: on_progress(done, total)) if on_progress else None
        )
        await render_lists(projector, replayed.longest)
    else:
        context = multiprocessing.get_context("spawn")
        progress = context.Array("q", workers, lock=False)
        # Largest partitions first, each to the least loaded worker.
        shares: list[dict[TopicPartition, tuple[int, int]]] = [{} for _ in range(workers)]
        loads = [0] * workers
        for tp, (start, end) in sorted(ends.items(), key=lambda item: item[1][0] - item[1][1]):
            slot = loads.index(min(loads))
            shares[slot][tp] = (start, end)
            loads[slot] += end - start
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(progress,)) as pool:
            jobs = [
                loop.run_in_executor(pool, _replay_in_worker, settings, namespace, slot, share)
                for slot, share in enumerate(shares)
            ]
            while not all(job.done() for job in jobs):
                await asyncio.wait(jobs, timeout=0.5)
                if on_progress:
                    on_progress(sum(progress), total)
            for job in jobs:
                replayed.add(job.result())
            names = sorted(replayed.longest, key=lambda name: -replayed.longest[name])
            await asyncio.gather(*(
                loop.run_in_executor(
                    pool, _render_lists_in_worker, settings, namespace,
                    {name: replayed.longest[name] for name in names[slot::workers]},
                )
                for slot in range(workers)
            ))
    if "home" in replayed.longest:
        await projector.render_sitemaps(0, replayed.longest["home"])
        await projector.render_news_sitemap()
    if replayed.skipped:
        log.warning("records that do not match their contract were skipped", count=replayed.skipped)
    return replayed.records


async def rebuild_site(
    settings: PublisherSettings,
    client: aioredis.Redis,
    *,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    settle_seconds: float = 1.0,
    keep_old_seconds: float = 5.0,
    workers: int | None = None,
    diff_pages: int = 3,
) -> RebuildReport:
    """`workers`: processes that replay the log (default: the `REBUILD_WORKERS` setting, else one per CPU)."""
    keys = SiteKeys(settings.redis_namespace)
    token = uuid.uuid4().hex
    if not await client.set(keys.lock, token, nx=True, ex=3600):
        raise RebuildBusy("another rebuild is running (lock held)")
    started = time.perf_counter()
    old, _ = await read_namespaces(client, keys)
    new = f"{keys.base}~{int(time.time() * 1000)}"
    report = RebuildReport(old, new)
    projector = namespace_projector(settings, client, new)
    try:
        await client.set(keys.rebuilding, new)
        await asyncio.sleep(settle_seconds)  # live replicas notice and start writing both namespaces
        report.records = await replay_into(
            settings, client, new, on_progress, workers if workers is not None else rebuild_workers(settings)
        )
        await projector.write_site_pages()
        await client.set(SiteKeys.built(new), "1")
        report.phases["replay"] = time.perf_counter() - started
        old_pages = await page_fingerprints(client, old)
        new_pages = await page_fingerprints(client, new)
        report.pages = len(new_pages)
        report.changed = sorted(p for p in new_pages.keys() & old_pages.keys() if new_pages[p] != old_pages[p])
        report.added = sorted(new_pages.keys() - old_pages.keys())
        report.removed = sorted(old_pages.keys() - new_pages.keys())
        report.diffs = await page_diffs(client, old, new, report.changed[:diff_pages])
        report.phases["compare"] = time.perf_counter() - started - report.phases["replay"]
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

    try:
        report: RebuildReport = cli_run(run())
    except RebuildBusy as exc:
        fail(str(exc))
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
