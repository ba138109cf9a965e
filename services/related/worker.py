"""Keeps every article's Check Also links right as the archive changes, on any number of replicas.

How work and state are split:
- every replica reads the whole articles topic (no consumer group) into its own in-memory index, so every
  replica computes the same links for the same archive: the links are a function of the log, not of how many
  replicas there are;
- every replica also reads the related topic (compacted: the last links emitted per guid) to know what is
  already published;
- the consumer group `broadsheet-related` on the articles topic decides who *emits*: a replica emits the links
  of a guid only when the guid's partition is assigned to it, and only when they differ from the last emitted.
  On a rebalance, the new owner reconciles its partitions (emits what differs), so nothing is lost or doubled.
  A replica joins the group only once its index is built, so scaling up never parks partitions on a replica
  that is still reading the archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Iterable, Mapping
from typing import Any

import nh3
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from faststream.kafka import KafkaBroker
from pydantic import TypeAdapter, ValidationError

from services.related.config import RelatedSettings
from services.related.engine import Link, RelatedDoc, RelatedEngine
from shared import topics
from shared.cli import reader_options
from shared.contracts import (
    ArticleEvent,
    ArticleKilled,
    ArticlePublished,
    ArticleWithdrawn,
    RelatedLink,
    RelatedLinksUpdated,
)
from shared.kafka import (
    BatchRunner,
    Outbox,
    drop_lag,
    group_id,
    partition_for,
    static_members_leave_on_close,
    topic_name,
    topic_partitions,
)
from shared.logging import get_logger
from shared.metrics import CONSUMER_LAG, HANDLER_SECONDS, MESSAGES, labelled
from shared.service import cancel_and_wait

log = get_logger(__name__)
SERVICE = "related"
ARTICLE_EVENT: TypeAdapter[ArticlePublished | ArticleWithdrawn | ArticleKilled] = TypeAdapter(ArticleEvent)
RELATED_EVENT = TypeAdapter(RelatedLinksUpdated)
LIFECYCLE_RANK = {"article.withdrawn": 0, "article.published": 1, "article.killed": 2}


def plain_text(body_html: str) -> str:
    return " ".join(html.unescape(nh3.clean(body_html, tags=set())).split())


def rewritten_story(event: ArticlePublished | ArticleWithdrawn | ArticleKilled) -> str | None:
    """The story a published rewrite takes over (`evolvedfrom`), if any."""
    if isinstance(event, ArticlePublished) and event.evolvedfrom and event.evolvedfrom != event.guid:
        return event.evolvedfrom
    return None


def doc_of(article: ArticlePublished) -> RelatedDoc:
    tags = tuple(sorted({t.code for t in article.tags}))
    return RelatedDoc(
        guid=article.guid,
        story_root=article.story_root,
        headline=article.headline,
        excerpt=article.excerpt,
        url_path=article.url_path,
        text=plain_text(article.body_html),
        tags=tags,
        section=article.section.code,
        published_at=article.date_published.timestamp(),
    )


def as_public_links(links: Iterable[Link]) -> list[RelatedLink]:
    return [
        RelatedLink(guid=link.guid, url_path=link.url_path, headline=link.headline, excerpt=link.excerpt,
                    score=round(link.score, 6))
        for link in links
    ]


def link_signature(links: Iterable[RelatedLink]) -> tuple[tuple[str, str, str, str], ...]:
    """What a reader sees of a list; scores are left out so that re-ranking noise does not re-render pages."""
    return tuple((link.guid, link.url_path, link.headline, link.excerpt) for link in links)


class Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: RelatedWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self.worker.owned.discard(tp.partition)
            drop_lag(SERVICE, tp)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        new = {tp.partition for tp in assigned}
        self.worker.owned |= new
        self.worker.to_reconcile |= new


class RelatedWorker:
    def __init__(self, settings: RelatedSettings, broker: KafkaBroker, runner: BatchRunner) -> None:
        self.settings = settings
        self.broker = broker
        self.runner = runner
        options: dict[str, Any] = {"k": settings.related_k}
        if settings.related_min_score is not None:
            options["min_score"] = settings.related_min_score
        self.engine = RelatedEngine(**options)
        self.articles_topic = topic_name(settings, topics.ARTICLES)
        self.related_topic = topic_name(settings, topics.RELATED)
        self.partitions = settings.kafka_partitions
        self.owned: set[int] = set()
        self.to_reconcile: set[int] = set()
        self.emitted: dict[str, tuple[tuple[str, str, str, str], ...]] = {}
        self.article_versions: dict[str, int] = {}
        self.article_fences: dict[str, tuple[int, int]] = {}
        self.superseded: set[str] = set()
        """Stories a rewrite (`evolvedfrom`) took over: out of every list for good, as the publisher keeps them,
        whatever order the two events are met in and whatever becomes of the rewrite."""
        self.index_ready = asyncio.Event()
        """Set once the index holds the log as it was at start: then the replica joins the group."""
        self.done: dict[int, int] = {}
        """Per partition of the articles topic: the offset up to which links are computed *and* emitted."""
        self.invalid: list[tuple[ConsumerRecord[Any, Any], str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._consumers: list[AIOKafkaConsumer] = []

    def partition_of(self, guid: str) -> int:
        return partition_for(guid.encode(), self.partitions)

    def membership(self) -> dict[str, str]:
        """Static group membership under a stable `INSTANCE_ID` (the pod name), as the other services have it: a
        replica that crashes and comes back takes its partitions straight back instead of the group waiting out
        the session timeout; one that stops cleanly still leaves at once."""
        if not self.settings.instance_id:
            return {}
        static_members_leave_on_close()
        return {"group_instance_id": f"{group_id(self.settings, SERVICE)}-{self.settings.instance_id}-members"}

    async def start(self) -> None:
        options = reader_options(self.settings)
        self.archive = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                        max_partition_fetch_bytes=4 * 1024 * 1024, **options)
        self.published = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **options)
        self.members = AIOKafkaConsumer(
            group_id=group_id(self.settings, SERVICE), enable_auto_commit=False, auto_offset_reset="latest",
            session_timeout_ms=20_000, max_poll_interval_ms=300_000, **options, **self.membership(),
        )
        self._consumers = [self.archive, self.published, self.members]
        for consumer in self._consumers:
            await consumer.start()
        self.partitions = len(await topic_partitions(self.archive, self.articles_topic)) or self.partitions
        self.archive.assign([TopicPartition(self.articles_topic, p) for p in range(self.partitions)])
        related_parts = await topic_partitions(self.published, self.related_topic)
        self.published.assign([TopicPartition(self.related_topic, p) for p in related_parts])
        # The group is joined once the index is built (see `_keep_membership`): a replica that is still reading
        # the archive would hold partitions it cannot serve, and their links would wait for it.
        self._tasks = [
            asyncio.create_task(self._follow_published(), name="related-published"),
            asyncio.create_task(self._follow_archive(), name="related-archive"),
            asyncio.create_task(self._keep_membership(), name="related-membership"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._report_failure)

    @staticmethod
    def _report_failure(task: asyncio.Task[None]) -> None:
        """A loop that dies must say so: the replica then stays not ready and the log tells why."""
        if not task.cancelled() and task.exception() is not None:
            log.error("related loop failed", task=task.get_name(), error=repr(task.exception()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await cancel_and_wait(task)
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def ready(self) -> tuple[bool, str]:
        stopped = [task.get_name() for task in self._tasks if task.done()]
        if stopped:
            return False, f"loop stopped: {', '.join(stopped)} (the log says why)"
        return self.index_ready.is_set(), f"{len(self.engine)} articles indexed, {len(self.owned)} partitions owned"

    # --- loops ----------------------------------------------------------------------------------------------

    async def _follow_published(self) -> None:
        while True:
            batches = await self.published.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if record.value is None:
                        self.emitted.pop(key, None)
                        continue
                    try:
                        event = RELATED_EVENT.validate_json(record.value)
                    except ValidationError:
                        continue
                    self.emitted[event.guid] = link_signature(event.links)

    async def _keep_membership(self) -> None:
        """Stay in the group (ownership) and report lag. The group's offsets say how far the links are emitted,
        not how far the archive is read: a lag of 0 means every Check Also change is on the related topic."""
        await self.index_ready.wait()
        self.members.subscribe([self.articles_topic], listener=Ownership(self))
        log.info("index ready: joining the group", articles=len(self.engine))
        committed: dict[TopicPartition, int] = {}
        while True:
            await self.members.getmany(timeout_ms=1000, max_records=1)
            # One commit, and only of what moved: a commit that meets a rebalance makes the member rejoin (and
            # fails the others' commits in turn), so replicas committing idle partitions every second would
            # keep the group rebalancing for ever.
            moved: dict[TopicPartition, int] = {}
            for tp in self.members.assignment():
                position = self.done.get(tp.partition)
                if position is None:
                    continue
                if committed.get(tp) != position:
                    moved[tp] = position
                highwater = self.archive.highwater(TopicPartition(self.articles_topic, tp.partition))
                if highwater is not None:
                    CONSUMER_LAG.labels(SERVICE, tp.topic, str(tp.partition)).set(max(0, highwater - position))
            if moved:
                try:
                    await self.members.commit(moved)
                    committed.update(moved)
                except Exception as exc:  # a rebalance: the next round commits for what is then assigned
                    log.info("group offsets not committed; retrying", error=type(exc).__name__)
                    committed.clear()

    async def _load_archive(self, end_offsets: Mapping[TopicPartition, int]) -> None:
        """Start-up: read the log up to its end as it was at start, keep the last event of each story, and
        build the index in one go (vectorized), instead of upserting the whole history one event at a time."""
        latest: dict[str, ArticlePublished | ArticleWithdrawn | ArticleKilled] = {}
        fences: dict[str, tuple[int, int]] = {}
        started = time.perf_counter()
        events = 0
        while not await self._reached_all(end_offsets):
            batches = await self.archive.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                events += len(records)
                for record in records:
                    try:
                        event = ARTICLE_EVENT.validate_json(record.value or b"")
                    except ValidationError:
                        continue  # dead-lettered when it first arrived, by the replica that owned it then
                    fence = (event.version, LIFECYCLE_RANK[event.event])
                    killed = latest.get(event.guid, event).event == "article.killed"
                    if fence > fences.get(event.guid, (-1, -1)) and not killed:
                        fences[event.guid] = fence
                        latest[event.guid] = event
                    origin = rewritten_story(event)
                    if origin is not None:
                        self.superseded.add(origin)
        self.article_fences.update(fences)
        self.article_versions.update({guid: fence[0] for guid, fence in fences.items()})
        read = time.perf_counter()
        docs = [
            doc_of(e) for e in latest.values() if isinstance(e, ArticlePublished) and e.guid not in self.superseded
        ]
        options: dict[str, Any] = {"k": self.settings.related_k, "partitions": self.settings.related_index_cells}
        if self.settings.related_min_score is not None:
            options["min_score"] = self.settings.related_min_score
        self.engine = await asyncio.to_thread(RelatedEngine.build, docs, **options)
        log.info("archive loaded", events=events, articles=len(docs), read_seconds=round(read - started, 2),
                 build_seconds=round(time.perf_counter() - read, 2))

    async def _follow_archive(self) -> None:
        end_offsets = await self.archive.end_offsets(list(self.archive.assignment()))
        await self.archive.seek_to_beginning()
        started = time.perf_counter()
        await self._load_archive(end_offsets)
        while True:
            batches = await self.archive.getmany(timeout_ms=200, max_records=200)
            changed: dict[str, tuple[Link, ...]] = {}
            for records in batches.values():
                for record in records:
                    changed.update(self._apply(record))
                    # each upsert is milliseconds of CPU: let health checks and heartbeats through
                    await asyncio.sleep(0)
            if not self.index_ready.is_set() and await self._reached_all(end_offsets):
                self.index_ready.set()  # partitions come with the group join; `Ownership` reconciles them
                log.info("index rebuilt from the log", articles=len(self.engine),
                         seconds=round(time.perf_counter() - started, 2))
            if not self.index_ready.is_set():
                continue
            await self._emit_until_sent(changed)
            for tp in self.archive.assignment():
                self.done[tp.partition] = int(await self.archive.position(tp))

    async def _reached_all(self, end_offsets: Mapping[TopicPartition, int]) -> bool:
        for tp, offset in end_offsets.items():
            if int(await self.archive.position(tp)) < offset:
                return False
        return True

    def _apply(self, record: ConsumerRecord[Any, Any]) -> Mapping[str, tuple[Link, ...]]:
        started = time.perf_counter()
        try:
            event = ARTICLE_EVENT.validate_json(record.value or b"")
        except ValidationError as exc:
            self.invalid.append((record, repr(exc)[:500]))
            return {}
        # Same version: only a step forward in the lifecycle counts (an embargoed story released at its version).
        fence = (event.version, LIFECYCLE_RANK[event.event])
        if fence <= self.article_fences.get(event.guid, (-1, -1)):
            labelled(MESSAGES, SERVICE, record.topic, "stale").inc()
            return {}
        self.article_fences[event.guid] = fence
        self.article_versions[event.guid] = event.version
        changed: dict[str, tuple[Link, ...]] = {}
        origin = rewritten_story(event)
        if origin is not None and origin not in self.superseded:
            self.superseded.add(origin)
            changed.update(self.engine.remove(origin))
        if isinstance(event, ArticlePublished) and event.guid not in self.superseded:
            changed.update(self.engine.upsert(doc_of(event)))
        else:
            changed.update(self.engine.remove(event.guid))
        labelled(MESSAGES, SERVICE, record.topic, "processed").inc()
        labelled(HANDLER_SECONDS, SERVICE, record.topic).observe(time.perf_counter() - started)
        return changed

    async def _emit_until_sent(self, changed: Mapping[str, tuple[Link, ...]]) -> None:
        """Kafka unreachable, or slow to acknowledge: send the same changes again, for as long as it lasts. The
        archive position (and so the group's offsets) stays where it was meanwhile."""
        delay = self.runner.backoff_seconds
        while True:
            try:
                await self._emit_changes(changed)
                return
            except Exception as exc:
                log.warning("links not emitted; retrying", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.runner.max_backoff_seconds)

    async def _emit_changes(self, changed: Mapping[str, tuple[Link, ...]]) -> None:
        """Send the links that changed; only once Kafka has acknowledged them are they counted as emitted. On
        failure everything is left as it was, for the caller to try again."""
        outbox = Outbox(self.broker)
        reconcile, self.to_reconcile = self.to_reconcile, set()
        invalid, self.invalid = self.invalid, []
        try:
            candidates = dict(changed)
            if reconcile:
                for guid in list(self.article_versions):
                    if self.partition_of(guid) in reconcile and guid not in candidates:
                        candidates[guid] = self.engine.links(guid)
                for guid in list(self.emitted):
                    if self.partition_of(guid) in reconcile and guid not in candidates:
                        candidates[guid] = self.engine.links(guid)
            sent: dict[str, tuple[tuple[str, str, str, str], ...]] = {}
            for guid, links in sorted(candidates.items()):
                if self.partition_of(guid) not in self.owned:
                    continue
                public = as_public_links(links)
                signature = link_signature(public)
                if self.emitted.get(guid) == signature or (not signature and guid not in self.emitted):
                    continue
                event = RelatedLinksUpdated(
                    guid=guid, links=public, article_version=self.article_versions.get(guid, 0)
                )
                await outbox.send(self.related_topic, guid, event)
                sent[guid] = signature
            for record, reason in invalid:
                if record.partition in self.owned:
                    await self.runner.dead_letter(record, outbox, "invalid_event", reason, (), 1)
            await outbox.flush()
        except BaseException:
            self.to_reconcile |= reconcile
            self.invalid[:0] = invalid
            raise
        self.emitted.update(sent)
