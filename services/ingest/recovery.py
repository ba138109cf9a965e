"""Rebuilds ingest's Redis state from the articles topic when it is missing (Redis flushed or new).

The articles topic keeps every event ingest ever emitted (it is not compacted), so it holds everything ingest
must remember: the last version per story, its URL and old URLs, and every kill — a killed story stays killed
however often the drafts are replayed. Stories held under embargo are re-held from their original draft, which
the event's `draft-partition`/`draft-offset` headers point to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter, ValidationError

from services.ingest.state import IngestStore, StoryState
from shared import topics
from shared.cli import reader_options
from shared.contracts import ArticleEvent, ArticleKilled, ArticlePublished, ArticleWithdrawn, NinjsDraft
from shared.kafka import read_to_end, record_headers, topic_name
from shared.logging import get_logger
from shared.redis import ensure_built
from shared.settings import ServiceSettings

log = get_logger(__name__)
REBUILD_LOCK_SECONDS = 600
"""How long one replica may rebuild before another may take over (deploy/k8s gives ingest's start-up as long)."""
ARTICLE_EVENT: TypeAdapter[ArticlePublished | ArticleWithdrawn | ArticleKilled] = TypeAdapter(ArticleEvent)


class StateRecovery:
    def __init__(self, settings: ServiceSettings, store: IngestStore) -> None:
        self.settings = settings
        self.store = store
        self.marker = f"{store.ns}:ingest:built"
        self.lock = f"{store.ns}:ingest:rebuild-lock"

    async def ensure(self, *, wait_seconds: float = REBUILD_LOCK_SECONDS) -> None:
        """Return once the state is complete; rebuild it first if it is missing (one replica rebuilds, the others
        wait for it as long as its lock lives)."""
        await ensure_built(
            self.store.redis, self.marker, self.lock, self.rebuild,
            lock_seconds=REBUILD_LOCK_SECONDS, wait_seconds=wait_seconds, what="ingest state",
        )

    async def rebuild(self) -> int:
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False, auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
            **reader_options(self.settings),
        )
        await consumer.start()
        states: dict[str, StoryState] = {}
        held: dict[str, tuple[int, int, dict[str, str]]] = {}
        count = 0
        try:
            async for records in read_to_end(consumer, topic_name(self.settings, topics.ARTICLES)):
                for record in records:
                    count += 1
                    self._apply(record, states, held)
            for state in states.values():
                await self.store.save(state)
                for path in [state.url_path, *state.previous_paths]:
                    if path:
                        await self.store.hand_over_path(path, state.guid)
            await self._rehold(consumer, states, held)
        finally:
            await consumer.stop()
        await self.store.redis.set(self.marker, "1")
        log.info("ingest state rebuilt from the articles topic", events=count, stories=len(states))
        return count

    @staticmethod
    def _apply(
        record: Any, states: dict[str, StoryState], held: dict[str, tuple[int, int, dict[str, str]]]
    ) -> None:
        try:
            event = ARTICLE_EVENT.validate_json(record.value or b"")
        except ValidationError:
            return
        state = states.get(event.guid) or StoryState(guid=event.guid)
        if state.status == "killed" or event.version < state.version:
            return
        state.version = event.version
        if isinstance(event, ArticlePublished):
            state.status = "published"
            state.slug = state.slug_source = event.slug
            state.url_path = event.url_path
            state.previous_paths = list(event.previous_paths)
            state.date_published = event.date_published.isoformat()
            state.story_root = event.story_root
            state.correction = event.correction.model_dump_json() if event.correction is not None else ""
            held.pop(event.guid, None)
        elif isinstance(event, ArticleKilled):
            state.status = "killed"
            held.pop(event.guid, None)
        else:
            state.status = "embargoed" if event.reason == "embargoed" else "withheld"
            headers = record_headers(record)
            where = (headers.get("draft-partition", ""), headers.get("draft-offset", ""))
            if event.reason == "embargoed" and all(part.isascii() and part.isdigit() for part in where):
                held[event.guid] = (int(headers["draft-partition"]), int(headers["draft-offset"]), headers)
            else:
                held.pop(event.guid, None)
        states[event.guid] = state

    async def _rehold(
        self, consumer: AIOKafkaConsumer, states: dict[str, StoryState],
        held: dict[str, tuple[int, int, dict[str, str]]],
    ) -> None:
        drafts_topic = topic_name(self.settings, topics.DRAFTS)
        for guid, (partition, offset, headers) in held.items():
            if states[guid].status != "embargoed":
                continue
            tp = TopicPartition(drafts_topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            records = (await consumer.getmany(tp, timeout_ms=5000, max_records=1)).get(tp, [])
            if not records or records[0].value is None:
                log.error("held draft not found in the drafts topic", guid=guid, offset=offset)
                continue
            raw = records[0].value
            try:
                draft = NinjsDraft.model_validate_json(raw)
            except ValidationError:
                continue
            release_at = (draft.embargoed or datetime.fromtimestamp(0)).timestamp()
            await self.store.hold(guid, states[guid].version, release_at, raw, headers)
