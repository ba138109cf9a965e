"""Rebuilds the comments service's Redis view from the log when it is missing (Redis restarted empty, flushed).

Kafka keeps everything the view is made of, on three topics that are never compacted:
- the articles topic: each article's state (known, live, killed, when published, which section);
- the decisions topic: every decision on every comment, which is its status, revision and history;
- the submissions topic: what the decisions leave out (the author's e-mail and IP, as keyed hashes here, the raw
  text), the moderators' actions, readers' reports, bans and pre-moderation switches, in their order.

A comment is rebuilt only when it has a decision: a submission the consumer had not decided yet is decided when
the consumer reaches it, as if nothing had happened. Likewise a moderator's action counts as applied (and is
remembered, so that its redelivery changes nothing) only when the decision it made is there. What the view keeps
for a short while only (last comment times for the flood rule, surge counters) is not rebuilt.

One replica rebuilds, under a lock, while the others wait; `/readyz` says not ready until the view is complete.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from services.comments.articles import ArticleStates
from services.comments.handlers import ACTION_STATUS, BODY_PREFIX, SUBMISSION_EVENT, without_overrides
from services.comments.moderation import is_edge_refusal, near_identical_key, normalized_body_hash
from services.comments.spam import SpamModel
from services.comments.store import MAX_ACTIONS, MAX_HISTORY, CommentRecord, CommentStore, Hasher, HistoryEntry
from shared import topics
from shared.cli import client_options
from shared.contracts.comments import (
    CommentDecided,
    CommentReported,
    CommentSubmitted,
    ModerationAction,
    ModerationBan,
    ModerationPremoderation,
)
from shared.kafka import topic_name, topic_partitions
from shared.logging import get_logger
from shared.redis import CommandBatch
from shared.settings import ServiceSettings

log = get_logger(__name__)
REBUILD_LOCK_SECONDS = 600
MODEL_REASONS = frozenset({"spam_model", "first_time_commenter", "premoderation", "trusted_author", "passed_checks"})
"""First reasons of decisions taken after the spam model ran (its score is kept with the comment)."""
WRITE_CHUNK = 500


@dataclass
class _Comment:
    submission: CommentSubmitted | None = None
    decisions: dict[int, CommentDecided] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    reporters: set[str] = field(default_factory=set)


class CommentsRecovery:
    def __init__(
        self, settings: ServiceSettings, store: CommentStore, articles: ArticleStates, hasher: Hasher,
        spam_model: SpamModel,
    ) -> None:
        self.settings = settings
        self.store = store
        self.articles = articles
        self.hasher = hasher
        self.spam_model = spam_model
        self.marker = f"{store.ns}:comments:built"
        self.lock = f"{store.ns}:comments:rebuild-lock"

    async def ready(self) -> tuple[bool, str]:
        if await self.store.redis.exists(self.marker):
            return True, "comments state complete"
        return False, "comments state is being rebuilt from the log"

    async def ensure(self, *, wait_seconds: float = REBUILD_LOCK_SECONDS) -> None:
        """Return once the view is complete; rebuild it first if it is missing."""
        if await self.store.redis.exists(self.marker):
            return
        token = uuid.uuid4().hex
        if await self.store.redis.set(self.lock, token, nx=True, ex=REBUILD_LOCK_SECONDS):
            try:
                await self.rebuild()
            finally:
                await self.store.redis.delete(self.lock)
            return
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while not await self.store.redis.exists(self.marker):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("comments state is being rebuilt by another replica")
            await asyncio.sleep(0.2)

    async def rebuild(self) -> int:
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False, auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
            **client_options(self.settings),
        )
        await consumer.start()
        comments: dict[str, _Comment] = {}
        bans: dict[tuple[str, str], bool] = {}
        article_switches: dict[str, bool] = {}
        section_switches: dict[str, bool] = {}
        try:
            for record in await self._read(consumer, topics.ARTICLES):
                await self.articles.apply(record)
            decisions = await self._read(consumer, topics.COMMENT_DECISIONS)
            for record in decisions:
                try:
                    decided = CommentDecided.model_validate_json(record.value or b"")
                except ValidationError:
                    continue
                comments.setdefault(decided.id, _Comment()).decisions[decided.revision] = decided
            # Per article one partition: a comment's submission, actions and reports are met in their order.
            for record in await self._read(consumer, topics.COMMENT_SUBMISSIONS):
                try:
                    event = SUBMISSION_EVENT.validate_json(record.value or b"")
                except ValidationError:
                    continue
                if isinstance(event, CommentSubmitted):
                    comments.setdefault(event.id, _Comment()).submission = event
                elif isinstance(event, ModerationAction):
                    self._action(comments.get(event.id), event)
                elif isinstance(event, CommentReported):
                    if event.article_guid is not None and event.id in comments:
                        comments[event.id].reporters.add(event.reporter)
                elif isinstance(event, ModerationBan):
                    bans[(event.kind, event.hash)] = not event.lifted
                elif isinstance(event, ModerationPremoderation):
                    if event.article_guid is not None:
                        article_switches[event.article_guid] = event.on
                    elif event.section is not None:
                        section_switches[event.section] = event.on
        finally:
            await consumer.stop()
        records = [record for c in comments.values() if (record := self._record(c)) is not None]
        await self._write(records, comments, bans, article_switches, section_switches)
        await self.store.redis.set(self.marker, "1")
        log.info("comments state rebuilt from the log", comments=len(records), decisions=len(decisions))
        return len(records)

    async def _read(self, consumer: AIOKafkaConsumer, name: str) -> list[ConsumerRecord[Any, Any]]:
        """Every record of a topic up to its end as of now, each partition in its order."""
        topic = topic_name(self.settings, name)
        partitions = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        found: list[ConsumerRecord[Any, Any]] = []
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                found.extend(r for r in records if r.offset < ends[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return found

    @staticmethod
    def _action(comment: _Comment | None, event: ModerationAction) -> None:
        """Applied when its decision is there: the moderator's, at the time asked, with the action's status."""
        if comment is None:
            return
        status = ACTION_STATUS[event.action]
        applied = any(
            d.actor == event.moderator and d.status == status and d.decided_at == event.requested_at
            for d in comment.decisions.values()
        )
        if not applied:
            return
        comment.actions.append(event.action_id)
        if event.action == "approve":
            comment.reporters.clear()  # reports before an approval are settled by it

    def _record(self, comment: _Comment) -> CommentRecord | None:
        submission = comment.submission
        if submission is None or not comment.decisions:
            return None
        history = [comment.decisions[r] for r in sorted(comment.decisions)]
        first, last = history[0], history[-1]
        reports = 0
        for decided in history:
            counted = [r for r in decided.reasons if r.startswith("reports=")]
            if counted:
                reports = int(counted[0].removeprefix("reports="))
            elif decided.actor not in ("pipeline", "readers") and decided.status in ("approved", "pending"):
                reports = 0
        body = without_overrides(submission.body)
        model_ran = bool(first.reasons) and first.reasons[0] in MODEL_REASONS
        return CommentRecord(
            id=submission.id,
            article_guid=submission.article_guid,
            status=last.status,
            revision=last.revision,
            reasons=list(last.reasons),
            actor=last.actor,
            decided_at=last.decided_at.isoformat(),
            author=last.author,
            author_url=last.author_url,
            body=body,
            body_html=last.body_html,
            submitted_at=submission.submitted_at.isoformat(),
            parent_id=submission.parent_id,
            depth=last.depth,
            email_hash=self.hasher.email(submission.email),
            ip_hash=self.hasher.ip(submission.ip) if submission.ip else None,
            near_key=near_identical_key(submission.body),
            spam_score=round(self.spam_model.score(submission.body), 4) if model_ran else None,
            history=[
                HistoryEntry(d.revision, d.status, d.actor, d.decided_at.isoformat(), list(d.reasons))
                for d in history
            ][-MAX_HISTORY:],
            actions=comment.actions[-MAX_ACTIONS:],
            reports=reports,
        )

    async def _write(
        self, records: Sequence[CommentRecord], comments: dict[str, _Comment], bans: dict[tuple[str, str], bool],
        article_switches: dict[str, bool], section_switches: dict[str, bool],
    ) -> None:
        store = self.store
        for start in range(0, len(records), WRITE_CHUNK):
            writes = CommandBatch()
            for record in records[start : start + WRITE_CHUNK]:
                submission = comments[record.id].submission
                assert submission is not None
                writes.command(
                    "HSET", store.record_key(record.id), "revision", record.revision, "status", record.status,
                    "data", record.to_json(),
                )
                score = submission.submitted_at.timestamp()
                writes.command("ZADD", store.queue_key(record.status), score, record.id)
                writes.command("SADD", store.near_key(record.near_key), record.id)
                author = store.author_key(record.email_hash)
                first = comments[record.id].decisions[min(comments[record.id].decisions)]
                if not is_edge_refusal(first.status, first.reasons):
                    member = f"{BODY_PREFIX}{record.article_guid}:{normalized_body_hash(submission.body)}"
                    writes.command("HSET", author, member, "1")
                if any(d.status == "approved" for d in comments[record.id].decisions.values()):
                    writes.command("HSET", author, "approved", "1")
                reporters = comments[record.id].reporters
                if reporters:
                    writes.command("SADD", store.reporters_key(record.id), *sorted(reporters))
            await writes.execute(store.redis)
        switches = CommandBatch()
        for (kind, hashed), banned in bans.items():
            switches.command("SADD" if banned else "SREM", store.bans_key(kind), hashed)
        for guid, on in article_switches.items():
            switches.command("HSET", store.article_key(guid), "premoderated", "1" if on else "0")
        for section, on in section_switches.items():
            if on:
                switches.command("HSET", store.section_premod_key(), section, "1")
            else:
                switches.command("HDEL", store.section_premod_key(), section)
        if bans or article_switches or section_switches:
            await switches.execute(store.redis)
