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

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from pydantic import ValidationError

from services.comments.articles import ArticleStates
from services.comments.handlers import (
    ACTION_STATUS,
    BODY_PREFIX,
    SUBMISSION_EVENT,
    CommentEvent,
    DeskEvent,
    without_overrides,
)
from services.comments.moderation import is_edge_refusal, near_identical_key, normalized_body_hash
from services.comments.spam import SpamModel
from services.comments.store import (
    MAX_ACTIONS,
    MAX_HISTORY,
    QUEUE_KEEP,
    STATUSES,
    TRIMMED_QUEUES,
    CommentRecord,
    CommentStore,
    Hasher,
    HistoryEntry,
)
from shared import topics
from shared.cli import reader_options
from shared.contracts.comments import (
    CommentDecided,
    CommentReported,
    CommentSubmitted,
    ModerationAction,
    ModerationBan,
    ModerationBanLifted,
)
from shared.kafka import Reject, read_to_end, topic_name
from shared.logging import get_logger
from shared.redis import CommandBatch, ensure_built
from shared.settings import ServiceSettings

log = get_logger(__name__)
REBUILD_LOCK_SECONDS = 600
MODEL_REASONS = frozenset({"spam_model", "first_time_commenter", "premoderation", "trusted_author", "passed_checks"})
"""First reasons of decisions taken after the spam model ran (its score is kept with the comment)."""
WRITE_CHUNK = 500
AUTOMATIC_ACTORS = frozenset({"pipeline", "readers"})
"""Decisions no moderator took (the pipeline's, readers' reports hiding a comment)."""


@dataclass
class _Comment:
    """What the log says of one comment, kept small: the newest decision whole, the others as history entries."""

    submission: CommentSubmitted | None = None
    history: dict[int, HistoryEntry] = field(default_factory=dict)
    last: CommentDecided | None = None
    actions: list[str] = field(default_factory=list)
    reporters: set[str] = field(default_factory=set)

    def decided(self, event: CommentDecided) -> None:
        self.history[event.revision] = HistoryEntry(
            event.revision, event.status, event.actor, event.decided_at.isoformat(), list(event.reasons)
        )
        if self.last is None or event.revision >= self.last.revision:
            self.last = event

    def entries(self) -> list[HistoryEntry]:
        return [self.history[revision] for revision in sorted(self.history)]


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
        await ensure_built(
            self.store.redis, self.marker, self.lock, self.rebuild,
            lock_seconds=REBUILD_LOCK_SECONDS, wait_seconds=wait_seconds, what="comments state",
        )

    async def rebuild(self) -> int:
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False, auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
            **reader_options(self.settings),
        )
        await consumer.start()
        comments: dict[str, _Comment] = {}
        bans: dict[tuple[str, str], tuple[datetime, bool]] = {}
        article_switches: dict[str, bool] = {}
        section_switches: dict[str, bool] = {}
        decisions = 0
        try:
            async for chunk in self._chunks(consumer, topics.ARTICLES):
                for record in chunk:
                    with contextlib.suppress(Reject, ValidationError):  # the live consumer dead-lettered it
                        await self.articles.apply(record)
            async for chunk in self._chunks(consumer, topics.COMMENT_DECISIONS):
                for record in chunk:
                    try:
                        decided = CommentDecided.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue
                    decisions += 1
                    comments.setdefault(decided.id, _Comment()).decided(decided)
            # Per article one partition: a comment's submission, actions and reports are met in their order.
            async for chunk in self._chunks(consumer, topics.COMMENT_SUBMISSIONS):
                for record in chunk:
                    try:
                        event = SUBMISSION_EVENT.validate_json(record.value or b"")
                    except ValidationError:
                        continue
                    self._note(event, comments, bans, article_switches, section_switches)
        finally:
            await consumer.stop()
        records = [record for c in comments.values() if (record := self._record(c)) is not None]
        await self._write(records, comments, bans, article_switches, section_switches)
        await self.store.redis.set(self.marker, "1")
        log.info("comments state rebuilt from the log", comments=len(records), decisions=decisions)
        return len(records)

    def _note(
        self, event: CommentEvent | DeskEvent,
        comments: dict[str, _Comment], bans: dict[tuple[str, str], tuple[datetime, bool]],
        article_switches: dict[str, bool], section_switches: dict[str, bool],
    ) -> None:
        if isinstance(event, CommentSubmitted):
            comments.setdefault(event.id, _Comment()).submission = event
        elif isinstance(event, ModerationAction):
            self._action(comments.get(event.id), event)
        elif isinstance(event, CommentReported):
            comment = comments.get(event.id)
            submission = comment.submission if comment is not None else None
            if comment is not None and submission is not None and event.article_guid == submission.article_guid:
                comment.reporters.add(event.reporter)  # a report naming another article was refused
        elif isinstance(event, ModerationBan | ModerationBanLifted):
            # Bans made from a comment were once keyed by its article, so a ban and its lifting may sit on two
            # partitions: the later request wins, not the later read.
            key = (event.kind, event.hash)
            if key not in bans or bans[key][0] <= event.requested_at:
                bans[key] = (event.requested_at, isinstance(event, ModerationBan))
        elif event.article_guid is not None:
            article_switches[event.article_guid] = event.on
        elif event.section is not None:
            section_switches[event.section] = event.on

    def _chunks(self, consumer: AIOKafkaConsumer, name: str) -> AsyncIterator[list[ConsumerRecord[Any, Any]]]:
        return read_to_end(consumer, topic_name(self.settings, name))

    @staticmethod
    def _action(comment: _Comment | None, event: ModerationAction) -> None:
        """Applied when its decision is there: the moderator's, at the time asked, with the action's status."""
        if comment is None:
            return
        status, at = ACTION_STATUS[event.action], event.requested_at.astimezone(UTC).isoformat()
        if not any(e.actor == event.moderator and e.status == status and e.at == at for e in comment.history.values()):
            return
        comment.actions.append(event.action_id)
        if event.action == "approve":
            comment.reporters.clear()  # reports before an approval are settled by it

    def _record(self, comment: _Comment) -> CommentRecord | None:
        submission, last = comment.submission, comment.last
        if submission is None or last is None:
            return None
        history = comment.entries()
        reports = 0
        for entry in history:
            counted = [r for r in entry.reasons if r.startswith("reports=")]
            if counted:
                reports = int(counted[0].removeprefix("reports="))
            elif entry.actor not in AUTOMATIC_ACTORS and entry.status in ("approved", "pending"):
                reports = 0  # a moderator's approval or restore starts the count again
        model_ran = bool(history[0].reasons) and history[0].reasons[0] in MODEL_REASONS
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
            body=without_overrides(submission.body),
            body_html=last.body_html,
            submitted_at=submission.submitted_at.isoformat(),
            parent_id=submission.parent_id,
            depth=last.depth,
            email_hash=self.hasher.email(submission.email),
            ip_hash=self.hasher.ip(submission.ip) if submission.ip else None,
            near_key=near_identical_key(submission.body),
            spam_score=round(self.spam_model.score(submission.body), 4) if model_ran else None,
            history=history[-MAX_HISTORY:],
            actions=comment.actions[-MAX_ACTIONS:],
            reports=reports,
        )

    async def _write(
        self, records: Sequence[CommentRecord], comments: dict[str, _Comment],
        bans: dict[tuple[str, str], tuple[datetime, bool]], article_switches: dict[str, bool],
        section_switches: dict[str, bool],
    ) -> None:
        """Each record is written only over an older revision (or none): a replica still deciding while the view
        is rebuilt keeps what it wrote since the log was read. Queues, groups and histories follow the records
        written."""
        store = self.store
        for start in range(0, len(records), WRITE_CHUNK):
            chunk = records[start : start + WRITE_CHUNK]
            fenced = CommandBatch()
            for record in chunk:
                fenced.script(
                    store.rebuild_script, keys=[store.record_key(record.id)],
                    args=[record.revision, record.status, record.to_json()],
                )
            written = [record for record, won in zip(chunk, await fenced.execute(store.redis), strict=True) if won]
            writes = CommandBatch()
            for record in written:
                comment = comments[record.id]
                submission = comment.submission
                assert submission is not None
                others = [status for status in STATUSES if status != record.status]
                for status in others:
                    writes.command("ZREM", store.queue_key(status), record.id)
                writes.command("ZADD", store.queue_key(record.status), submission.submitted_at.timestamp(), record.id)
                writes.command("SADD", store.near_key(record.near_key), record.id)
                author = store.author_key(record.email_hash)
                first = comment.entries()[0]
                if not is_edge_refusal(first.status, first.reasons):
                    member = f"{BODY_PREFIX}{record.article_guid}:{normalized_body_hash(submission.body)}"
                    writes.command("HSET", author, member, record.id)
                if any(e.status == "approved" and e.actor not in AUTOMATIC_ACTORS for e in comment.history.values()):
                    writes.command("HSET", author, "approved", "1")  # trusted once a moderator approved them
                if comment.reporters:
                    writes.command("SADD", store.reporters_key(record.id), *sorted(comment.reporters))
            if written:
                await writes.execute(store.redis)
        switches = CommandBatch()
        for status in TRIMMED_QUEUES:
            switches.command("ZREMRANGEBYRANK", store.queue_key(status), 0, -QUEUE_KEEP - 1)
        for (kind, hashed), (_, banned) in bans.items():
            switches.command("SADD" if banned else "SREM", store.bans_key(kind), hashed)
        for guid, on in article_switches.items():
            switches.command("HSET", store.article_key(guid), "premoderated", "1" if on else "0")
        for section, on in section_switches.items():
            if on:
                switches.command("HSET", store.section_premod_key(), section, "1")
            else:
                switches.command("HDEL", store.section_premod_key(), section)
        await switches.execute(store.redis)
