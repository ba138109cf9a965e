"""The comments consumer: submissions, reader reports and moderator actions in, decisions and desk alerts out.

Every event about a comment travels on the submissions topic keyed by the article guid, so one partition
orders a comment's submission, reports and moderator actions and one consumer applies them in turn: the
comment's record has a single writer and its revisions follow each other.

Per batch, the state the decisions need (records, article states, author and IP history, bans) is read from
Redis in one pipelined round trip before the first record runs (`prefetch`); what a record changes is kept in
the batch's `BatchState`, so later records of the same batch see it (a double submit in one batch is still
one comment). Redis is written once the decisions of the batch are acknowledged by Kafka (`Outbox.then`):
records are created fenced by their absence and updated fenced by the revision they replace, so a batch
delivered again re-emits the same revisions (which the publisher ignores) and changes nothing.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis
from aiokafka import ConsumerRecord
from pydantic import TypeAdapter, ValidationError

from services.comments.articles import ArticleState as StoredArticle
from services.comments.articles import ArticleStates
from services.comments.config import CommentsSettings
from services.comments.moderation import (
    ArticleState,
    Decision,
    ModerationContext,
    ModerationPolicy,
    ParentState,
    SurgeChange,
    SurgeDetector,
    SurgeThresholds,
    is_valid_author_url,
    moderate,
    near_identical_key,
    normalized_body_hash,
    surge_signal,
)
from services.comments.spam import SpamModel, shipped_model
from services.comments.store import (
    MAX_ACTIONS,
    QUEUE_KEEP,
    STATUSES,
    TRIMMED_QUEUES,
    CommentRecord,
    CommentStore,
    Hasher,
    HistoryEntry,
)
from services.comments.textnorm import canonical_text
from shared.contracts.comments import (
    CommentDecided,
    CommentReported,
    CommentStatus,
    CommentSubmitted,
    ModerationAction,
    ModerationBan,
    ModerationBanLifted,
    ModerationPremoderation,
    SubmissionEvent,
    SurgeAlert,
)
from shared.kafka import Outbox, Reject
from shared.logging import get_logger
from shared.redis import CommandBatch, pairs

log = get_logger(__name__)

CommentEvent = CommentSubmitted | CommentReported | ModerationAction
"""The submissions topic's events about one comment (the topic also carries bans)."""
DeskEvent = ModerationBan | ModerationBanLifted | ModerationPremoderation
"""The submissions topic's moderator events that are about no one comment."""
SUBMISSION_EVENT: TypeAdapter[CommentEvent | DeskEvent] = TypeAdapter(SubmissionEvent)
ACTION_STATUS: dict[str, CommentStatus] = {
    "approve": "approved",
    "reject": "rejected",
    "spam": "spam",
    "restore": "pending",
}
ACTION_REASON = {
    "approve": "approved_by_moderator",
    "reject": "rejected_by_moderator",
    "spam": "marked_spam_by_moderator",
    "restore": "restored_by_moderator",
}
EDGE_STYLE = frozenset({400, 403, 404, 409, 410, 429})
"""Decisions an edge would have refused at once: they leave no trace in the author's history."""
SURGE_TTL_SECONDS = 24 * 3600
RECENT_BUCKET_SECONDS = 60
"""Last comment times per e-mail and IP live in one hash per minute, read and written a batch at a time, each as
`{time} {comment id}`: a batch read again after its records were lost meets its own times there, and a comment's
own time is no flood (a bare time, as written before, is always another comment's)."""
BODY_PREFIX = "b:"
"""Fields of the author's hash that mark a text already posted on an article, `b:{guid}:{normalized hash}`, each
holding the id of the comment that posted it: a comment read again is no duplicate of itself (`1`, as written
before, is always another comment)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_BIDI_OVERRIDES = re.compile("[\u202a-\u202e]")
"""Embeddings and overrides: they turn text around ("\u202eevil" shows as "live"), which a reader's name or words
never need; isolates and marks, which right-to-left text does use, stay."""


def without_overrides(text: str) -> str:
    return _BIDI_OVERRIDES.sub("", text) if _BIDI_OVERRIDES.search(text) else text


def recent_entry(value: bytes) -> tuple[float, bytes]:
    """A last comment time as stored, with the id of its comment (empty for a bare time)."""
    stamp, _, comment_id = value.partition(b" ")
    return float(stamp), comment_id


def last_other(entries: list[tuple[float, bytes]] | None, comment_id: str) -> float | None:
    """The latest of these times that another comment than `comment_id` left."""
    if not entries:
        return None
    own = comment_id.encode()
    return max((stamp for stamp, by in entries if by != own), default=None)


def body_to_html(text: str) -> str:
    """A reader's text for display: escaped, paragraphs on blank lines, `<br>` on single newlines.

    Nothing becomes markup, links included: readers' links stay plain text, so spam earns no clicks.
    """
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if "\n" not in normalized:  # one line, as most comments are: the same markup without splitting it up
        return f"<p>{html.escape(normalized, quote=True)}</p>" if normalized else ""
    paragraphs = [p.strip() for p in _BLANK_LINES.split(normalized) if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line.strip(), quote=True) for line in p.split("\n")) + "</p>"
        for p in paragraphs
    )


def policy_from(settings: CommentsSettings) -> ModerationPolicy:
    return ModerationPolicy(
        banned_words=settings.word_list(settings.comments_banned_words),
        suspect_words=settings.word_list(settings.comments_suspect_words),
        comments_close_after=(
            timedelta(days=settings.comments_close_after_days) if settings.comments_close_after_days > 0 else None
        ),
        flood_window=timedelta(seconds=settings.comments_flood_seconds),
        max_links=settings.comments_max_links,
        hold_first_time_commenters=settings.comments_hold_first_time,
        max_reply_depth=settings.comments_max_reply_depth,
        spam_threshold=settings.comments_spam_threshold,
    )


def surge_thresholds(settings: CommentsSettings) -> SurgeThresholds:
    return SurgeThresholds(
        rate_on_per_minute=settings.comments_surge_rate_on,
        rate_off_per_minute=settings.comments_surge_rate_off,
        calm_period=timedelta(minutes=settings.comments_surge_calm_minutes),
    )


@dataclass
class AuthorFacts:
    """What Redis says about a submission's author and IP (read before the batch runs)."""

    body_member: str = ""
    email_hash: str = ""
    ip_hash: str | None = None
    approved: bool = False
    last_at: float | None = None
    duplicate: bool = False
    ip_last_at: float | None = None
    banned_email: bool = False
    banned_ip: bool = False


@dataclass
class Prefetched:
    records: dict[str, CommentRecord | None] = field(default_factory=dict)
    articles: dict[str, StoredArticle | None] = field(default_factory=dict)
    facts: dict[str, AuthorFacts] = field(default_factory=dict)
    sections_premoderated: set[str] | None = None


@dataclass
class BatchState:
    """What the records of one batch changed, seen by the later records of that batch, written after flush."""

    prefetched: Prefetched
    created: dict[str, CommentRecord] = field(default_factory=dict)
    updated: dict[str, tuple[int, CommentRecord]] = field(default_factory=dict)
    author_approved: set[str] = field(default_factory=set)
    author_last: dict[str, tuple[float, str]] = field(default_factory=dict)
    """Per e-mail hash, the latest submission time in the batch and its comment's id; `ip_last` the same per IP."""
    ip_last: dict[str, tuple[float, str]] = field(default_factory=dict)
    bodies: dict[tuple[str, str], str] = field(default_factory=dict)
    """(e-mail hash, body member) of each text posted in the batch, with the id of the comment that posted it."""
    surge_flags: dict[str, bool] = field(default_factory=dict)
    """Articles whose surge pre-moderation switched in this batch (a moderator's own flag is not the batch's)."""
    clear_reporters: set[str] = field(default_factory=set)
    fresh_reporters: dict[str, set[str]] = field(default_factory=dict)
    """Readers who reported a comment after this batch approved it: its reporters once the old ones are gone."""
    stale_articles: set[str] = field(default_factory=set)
    surge_touched: set[str] = field(default_factory=set)

    def known_record(self, comment_id: str) -> tuple[bool, CommentRecord | None]:
        if comment_id in self.created:
            return True, self.created[comment_id]
        if comment_id in self.updated:
            return True, self.updated[comment_id][1]
        if comment_id in self.prefetched.records:
            return True, self.prefetched.records[comment_id]
        return False, None

    def save(self, record: CommentRecord, previous_revision: int | None) -> None:
        """Keep the newest state of a record; the Redis write is fenced by the revision stored before."""
        if record.id in self.created or previous_revision is None:
            self.created[record.id] = record
        elif record.id in self.updated:
            self.updated[record.id] = (self.updated[record.id][0], record)
        else:
            self.updated[record.id] = (previous_revision, record)


class CommentPipeline:
    def __init__(
        self,
        settings: CommentsSettings,
        client: aioredis.Redis,
        articles: ArticleStates,
        store: CommentStore,
        *,
        submissions_topic: str,
        decisions_topic: str,
        alerts_topic: str,
        spam_model: SpamModel | None = None,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.articles = articles
        self.store = store
        self.hasher = Hasher(settings.comments_hash_key.get_secret_value())
        self.policy = policy_from(settings)
        self.spam_model = spam_model or shipped_model()
        canonical_text("warm up: ça, ﬁne")  # builds the folding tables now, not on a comment (ﬁ: not yet NFKC)
        self.thresholds = surge_thresholds(settings)
        self.surge = SurgeDetector(self.thresholds)
        self.surge_loaded: set[str] = set()
        self.submissions_topic = submissions_topic
        self.decisions_topic = decisions_topic
        self.alerts_topic = alerts_topic
        self._prefetched: Prefetched | None = None
        self._parsed: dict[tuple[int, int], CommentEvent | DeskEvent] = {}
        """The batch's submissions-topic events as `prepare` parsed them, by (partition, offset)."""
        self._spam_scores: dict[str, tuple[str, float]] = {}
        """The spam model's score of each submission of the batch, by comment id, with the body it scored."""
        articles.on_change.append(self._article_changed)
        self._changed_articles: set[str] = set()

    # --- batch plumbing -----------------------------------------------------------------------------------

    async def prepare(self, records: Sequence[ConsumerRecord[Any, Any]], submissions_topic: str) -> None:
        """Read what the batch needs in one round trip. Best effort: a record missing here is read on its own."""
        events: list[CommentEvent] = []
        self._parsed = {}
        for record in records:
            if record.topic != submissions_topic:
                continue
            try:
                event = SUBMISSION_EVENT.validate_json(record.value or b"")
            except ValidationError:
                continue
            self._parsed[(record.partition, record.offset)] = event
            if not isinstance(event, DeskEvent):
                events.append(event)
        self._prefetched = None
        self._spam_scores = {}
        if not events:
            return
        prefetch = asyncio.ensure_future(self.prefetch(events))
        try:
            await asyncio.sleep(0)  # the prefetch sends its reads; the scoring below runs while Redis answers
            self._spam_scores = self.score_spam(events)
            self._prefetched = await prefetch
        except Exception as exc:
            log.warning("prefetch failed; records read one by one", error=repr(exc))
        finally:
            prefetch.cancel()  # only does something when cut short: the batch stops waiting for its reads

    def score_spam(self, events: Sequence[CommentEvent]) -> dict[str, tuple[str, float]]:
        """The spam model's score of every submission of a batch, worked out together.

        Scoring looks up a few dozen features per comment in a model of 12,000. One comment after the other, the
        lookups find the model in the CPU's cache; scored between the other checks of each comment, they did not
        (the same lookups: 2 µs a comment in a row, 12 µs with the cache cleared between comments; over a whole
        decision, 9 µs less CPU with the batch scored here). A comment decided before the spam check (a
        duplicate, a banned word) wastes its score: such comments are few, and the model would be cold for all.
        Runs while the prefetch waits for Redis. A text the model fails on is left out: its comment is scored on its
        own, where a failure is that record's (retried, then dead-lettered), not the whole batch's.
        """
        model = self.spam_model
        scores: dict[str, tuple[str, float]] = {}
        for event in events:
            if isinstance(event, CommentSubmitted):
                try:
                    scores[event.id] = (event.body, model.score(event.body))
                except Exception as exc:
                    log.warning("spam score left to the comment's own turn", id=event.id, error=repr(exc))
        return scores

    def _article_changed(self, guid: str) -> None:
        self._changed_articles.add(guid)

    def batch_of(self, outbox: Outbox) -> BatchState:
        batch: BatchState | None = outbox.scratch.get("comments")
        if batch is None:
            prefetched, self._prefetched = self._prefetched or Prefetched(), None
            batch = outbox.scratch["comments"] = BatchState(prefetched)

            async def write() -> None:
                await self.write_batch(batch)

            outbox.then(write)
        if self._changed_articles:
            batch.stale_articles |= self._changed_articles
            self._changed_articles = set()
        return batch

    async def prefetch(self, events: Sequence[CommentEvent]) -> Prefetched:
        """One pipelined read: records, articles and section flags; per submission one HMGET of the author's hash
        (trusted? this text posted before?); for the whole batch, the recent comment times of its e-mails and
        IPs (one HMGET per minute in the flood window) and their bans."""
        store = self.store
        result = Prefetched()
        record_ids: list[str] = []
        guids: list[str] = []
        submissions = [e for e in events if isinstance(e, CommentSubmitted)]
        for event in events:
            record_ids.append(event.id)
            if isinstance(event, CommentSubmitted):
                guids.append(event.article_guid)
                if event.parent_id:
                    record_ids.append(event.parent_id)
        record_ids = list(dict.fromkeys(record_ids))
        guids = list(dict.fromkeys(guids))
        email_hashes = [self.hasher.email(e.email) for e in submissions]
        ip_hashes = [self.hasher.ip(e.ip) if e.ip else None for e in submissions]
        members = [f"{BODY_PREFIX}{e.article_guid}:{normalized_body_hash(e.body)}" for e in submissions]
        new_surge = [g for g in guids if g not in self.surge_loaded]
        buckets = self._recent_buckets(submissions)
        recent_fields = [f"e:{h}" for h in email_hashes] + [f"i:{h}" for h in ip_hashes if h is not None]
        batch = CommandBatch()
        for comment_id in record_ids:
            batch.command("HGET", store.record_key(comment_id), "data")
        for guid in guids:
            batch.command("HGETALL", store.article_key(guid), reply=pairs)
        batch.command("HGETALL", store.section_premod_key(), reply=pairs)
        for email_hash, member in zip(email_hashes, members, strict=True):
            batch.command("HMGET", store.author_key(email_hash), "approved", member)
        if submissions:
            for bucket in buckets:
                batch.command("HMGET", store.recent_key(bucket), *recent_fields)
            batch.command("SMISMEMBER", store.bans_key("email"), *email_hashes)
            known_ips = [h for h in ip_hashes if h is not None]
            if known_ips:
                batch.command("SMISMEMBER", store.bans_key("ip"), *known_ips)
        for guid in new_surge:
            batch.command("GET", store.surge_key(guid))
        replies = iter(await batch.execute(self.redis))
        for comment_id in record_ids:
            raw = next(replies)
            result.records[comment_id] = CommentRecord.from_json(raw) if raw else None
        for guid in guids:
            result.articles[guid] = StoredArticle.from_hash(guid, next(replies))
        result.sections_premoderated = {k.decode() for k, v in next(replies).items() if v == b"1"}
        facts: list[AuthorFacts] = []
        for event, member, email_hash, ip_hash in zip(submissions, members, email_hashes, ip_hashes, strict=True):
            approved, posted_by = next(replies)
            fact = AuthorFacts(
                body_member=member, email_hash=email_hash, ip_hash=ip_hash, approved=approved == b"1",
                duplicate=posted_by is not None and posted_by != event.id.encode(),
            )
            result.facts[event.id] = fact
            facts.append(fact)
        if submissions:
            recent: dict[str, list[tuple[float, bytes]]] = {}
            for _ in buckets:
                for name, value in zip(recent_fields, next(replies), strict=True):
                    if value is not None:
                        recent.setdefault(name, []).append(recent_entry(value))
            if recent:
                for event, fact, email_hash, ip_hash in zip(submissions, facts, email_hashes, ip_hashes, strict=True):
                    fact.last_at = last_other(recent.get(f"e:{email_hash}"), event.id)
                    fact.ip_last_at = last_other(recent.get(f"i:{ip_hash}"), event.id) if ip_hash else None
            for fact, banned in zip(facts, next(replies), strict=True):
                fact.banned_email = bool(banned)
            if any(h is not None for h in ip_hashes):
                ip_bans = iter(next(replies))
                for fact, ip_hash in zip(facts, ip_hashes, strict=True):
                    if ip_hash is not None:
                        fact.banned_ip = bool(next(ip_bans))
        self._load_surge({guid: next(replies) for guid in new_surge})
        return result

    def _recent_buckets(self, submissions: Sequence[CommentSubmitted]) -> list[int]:
        """The minutes whose activity can make any of these submissions a flood."""
        window = self.policy.flood_window.total_seconds()
        buckets: set[int] = set()
        for event in submissions:
            at = event.submitted_at.timestamp()
            buckets.update(range(int((at - window) // RECENT_BUCKET_SECONDS), int(at // RECENT_BUCKET_SECONDS) + 1))
        return sorted(buckets)

    def _load_surge(self, raws: dict[str, bytes | None]) -> None:
        states = {guid: json.loads(raw) for guid, raw in raws.items() if raw}
        self.surge_loaded.update(raws)
        if states:
            merged = self.surge.to_dict()
            merged["articles"].update(states)
            self.surge = SurgeDetector.from_dict(merged, self.thresholds)

    async def record(self, batch: BatchState, comment_id: str) -> CommentRecord | None:
        known, record = batch.known_record(comment_id)
        if not known:
            record = await self.store.record(comment_id)
            batch.prefetched.records[comment_id] = record
        return record

    async def article(self, batch: BatchState, guid: str) -> StoredArticle | None:
        if guid in batch.stale_articles or guid not in batch.prefetched.articles:
            batch.prefetched.articles[guid] = await self.articles.get(guid)
            batch.stale_articles.discard(guid)
        return batch.prefetched.articles[guid]

    # --- records ------------------------------------------------------------------------------------------

    async def on_record(self, record: ConsumerRecord[Any, Any], outbox: Outbox) -> str:
        event = self._parsed.pop((record.partition, record.offset), None)
        if event is None:
            try:
                event = SUBMISSION_EVENT.validate_json(record.value or b"")
            except ValidationError as exc:
                raise Reject(
                    "invalid_event", "event does not match its contract", exc.errors(include_url=False)
                ) from exc
        if isinstance(event, ModerationBan | ModerationBanLifted):
            return await self.banned(event)
        if isinstance(event, ModerationPremoderation):
            return await self.premoderation_switched(event, self.batch_of(outbox))
        batch = self.batch_of(outbox)
        if isinstance(event, CommentSubmitted):
            return await self.submitted(event, outbox, batch)
        if isinstance(event, CommentReported):
            return await self.reported(event, outbox, batch)
        return await self.moderated(event, outbox, batch)

    async def submitted(self, event: CommentSubmitted, outbox: Outbox, batch: BatchState) -> str:
        if await self.record(batch, event.id) is not None:
            return "duplicate"
        now = datetime.now(UTC)
        facts = batch.prefetched.facts.get(event.id)
        if facts is None:
            prefetched = await self.prefetch([event])
            facts = prefetched.facts[event.id]
            batch.prefetched.articles.setdefault(event.article_guid, prefetched.articles[event.article_guid])
            if batch.prefetched.sections_premoderated is None:
                batch.prefetched.sections_premoderated = prefetched.sections_premoderated
            if event.parent_id:
                batch.prefetched.records.setdefault(event.parent_id, prefetched.records[event.parent_id])
        email_hash, ip_hash, body_member = facts.email_hash, facts.ip_hash, facts.body_member
        parent = await self.record(batch, event.parent_id) if event.parent_id else None
        ctx = self._context(event, now, await self.article(batch, event.article_guid), batch, facts,
                            email_hash, ip_hash, body_member, parent)
        scored = self._spam_scores.get(event.id)  # the very body prepare scored, not another event with this id
        spam_score = scored[1] if scored is not None and scored[0] is event.body else None
        decision = moderate(event, ctx, self.policy, self.spam_model, spam_score=spam_score)

        at = now.isoformat()
        reasons = list(decision.reasons)
        body = without_overrides(event.body)
        record = CommentRecord(
            id=event.id,
            article_guid=event.article_guid,
            status=decision.status,
            revision=1,
            reasons=reasons,
            actor="pipeline",
            decided_at=at,
            author=without_overrides(event.author).strip(),
            author_url=(event.url or "").strip() if is_valid_author_url((event.url or "").strip()) else None,
            body=body,
            body_html=body_to_html(body),
            submitted_at=event.submitted_at.isoformat(),
            parent_id=event.parent_id,
            depth=parent.depth + 1 if parent is not None else 0,
            email_hash=email_hash,
            ip_hash=ip_hash,
            near_key=near_identical_key(event.body),
            spam_score=None if decision.spam_score is None else round(decision.spam_score, 4),
            history=[HistoryEntry(1, decision.status, "pipeline", at, list(reasons))],
        )
        await self._emit(outbox, record, now)
        batch.save(record, None)

        if not (decision.status == "rejected" and decision.http_status in EDGE_STYLE):
            latest = (event.submitted_at.timestamp(), event.id)
            if latest[0] > batch.author_last.get(email_hash, (0.0, ""))[0]:
                batch.author_last[email_hash] = latest
            if ip_hash is not None and latest[0] > batch.ip_last.get(ip_hash, (0.0, ""))[0]:
                batch.ip_last[ip_hash] = latest
            batch.bodies.setdefault((email_hash, body_member), event.id)
        await self._observe_surge(event.article_guid, decision, now, outbox, batch)
        return decision.status

    def _context(
        self,
        event: CommentSubmitted,
        now: datetime,
        stored: StoredArticle | None,
        batch: BatchState,
        facts: AuthorFacts,
        email_hash: str,
        ip_hash: str | None,
        body_member: str,
        parent: CommentRecord | None,
    ) -> ModerationContext:
        guid = event.article_guid
        if stored is None:
            article = ArticleState(known=False)
        else:
            premoderated = stored.premoderated or self.surge.is_on(guid)
            sections = batch.prefetched.sections_premoderated or set()
            article = ArticleState(
                known=True,
                killed=stored.status == "killed",
                published_at=stored.published_at,
                closed_at=None if stored.status == "published" else EPOCH,
                premoderated=premoderated,
                section_premoderated=stored.section in sections,
            )
        in_batch = batch.author_last.get(email_hash, (None, ""))[0]
        last_email = max(filter(None, (facts.last_at, in_batch)), default=None)
        last_ip = None
        if ip_hash is not None:
            in_batch = batch.ip_last.get(ip_hash, (None, ""))[0]
            last_ip = max(filter(None, (facts.ip_last_at, in_batch)), default=None)
        duplicate = facts.duplicate or (email_hash, body_member) in batch.bodies
        parent_state = None
        if parent is not None:
            parent_state = ParentState(cast(CommentStatus, parent.status), parent.depth, parent.article_guid)
        return ModerationContext(
            now=now,
            article=article,
            author_has_approved_comment=facts.approved or email_hash in batch.author_approved,
            author_previous_body_hashes=frozenset({normalized_body_hash(event.body)}) if duplicate else frozenset(),
            last_comment_at_by_email=datetime.fromtimestamp(last_email, UTC) if last_email else None,
            last_comment_at_by_ip=datetime.fromtimestamp(last_ip, UTC) if last_ip else None,
            banned_emails=frozenset({event.email}) if facts.banned_email else frozenset(),
            banned_ips=frozenset({event.ip.strip()}) if facts.banned_ip and event.ip else frozenset(),
            parent=parent_state,
        )

    async def reported(self, event: CommentReported, outbox: Outbox, batch: BatchState) -> str:
        record = await self.record(batch, event.id)
        if record is None:
            return "unknown"
        if event.article_guid is None:
            # Keyed by the comment id, this report is on another partition than the comment's other events, whose
            # consumer may be updating the record right now. Sent on, keyed by the article, it joins them in order.
            forwarded = event.model_copy(update={"article_guid": record.article_guid})
            await outbox.send(self.submissions_topic, record.article_guid, forwarded)
            return "forwarded"
        if event.article_guid != record.article_guid:
            raise Reject("wrong_article", f"comment {event.id} is not on article {event.article_guid}")
        if record.id in batch.clear_reporters:
            # Approved earlier in this batch: the reporters before it are cleared when the batch is written.
            fresh = batch.fresh_reporters.setdefault(record.id, set())
            fresh.add(event.reporter)
            count = len(fresh)
        else:
            count = await self.store.add_reporter(record.id, event.reporter)
        if record.status != "approved" or count < self.settings.comments_report_threshold:
            return "report_noted"
        now = datetime.now(UTC)
        updated = record.decided(
            "reported", record.revision + 1, "readers", now.isoformat(), ["reported_by_readers", f"reports={count}"]
        )
        updated.reports = count
        await self._emit(outbox, updated, now)
        batch.save(updated, record.revision)
        log.info("comment hidden after reports", comment=record.id, guid=record.article_guid, reports=count)
        return "reported"

    async def moderated(self, event: ModerationAction, outbox: Outbox, batch: BatchState) -> str:
        record = await self.record(batch, event.id)
        if record is None:
            raise Reject("unknown_comment", f"no comment {event.id} to {event.action}")
        if event.action_id in record.actions:
            return "duplicate"
        if event.expected_revision is not None and record.revision != event.expected_revision:
            log.info(
                "moderator action on a changed comment not applied", comment=record.id, action=event.action,
                moderator=event.moderator, expected_revision=event.expected_revision, revision=record.revision,
            )
            return "stale"
        status = ACTION_STATUS[event.action]
        note = (event.reason or "").strip()
        reasons = [ACTION_REASON[event.action], *([note] if note else [])]
        at = event.requested_at.astimezone(UTC)
        updated = record.decided(status, record.revision + 1, event.moderator, at.isoformat(), reasons)
        updated.actions = [*record.actions, event.action_id][-MAX_ACTIONS:]
        if status != "reported":
            updated.reports = 0 if event.action in ("approve", "restore") else record.reports
        await self._emit(outbox, updated, at)
        batch.save(updated, record.revision)
        if event.action == "approve":
            batch.author_approved.add(record.email_hash)
            batch.clear_reporters.add(record.id)
            batch.fresh_reporters.pop(record.id, None)
        log.info(
            "comment moderated", comment=record.id, guid=record.article_guid, action=event.action,
            moderator=event.moderator, revision=updated.revision,
        )
        return "moderated"

    async def banned(self, event: ModerationBan | ModerationBanLifted) -> str:
        """The moderation API has applied the ban (or lifted it) already, to take effect at once; this applies it on
        a replay. A ban and its lifting are keyed by the address's hash: a replay meets them in their order."""
        lifted = isinstance(event, ModerationBanLifted)
        if lifted:
            await self.store.lift_ban(event.kind, event.hash)
        else:
            await self.store.ban(event.kind, event.hash)
        log.info(
            "ban lifted" if lifted else "ban applied", kind=event.kind, moderator=event.moderator,
            reason=event.reason, comment=event.comment_id, ban=event.ban_id,
        )
        return "unbanned" if lifted else "banned"

    async def premoderation_switched(self, event: ModerationPremoderation, batch: BatchState) -> str:
        """Applied by the moderation API already, to take effect at once; this applies it on a replay, and to the
        comments after it in this batch."""
        if event.article_guid is not None:
            await self.store.set_article_premoderation(event.article_guid, event.on)
            batch.stale_articles.add(event.article_guid)
        elif event.section is not None:
            await self.store.set_section_premoderation(event.section, event.on)
            sections = batch.prefetched.sections_premoderated
            if sections is not None:
                (sections.add if event.on else sections.discard)(event.section)
        log.info(
            "pre-moderation switched", guid=event.article_guid, section=event.section, on=event.on,
            moderator=event.moderator, reason=event.reason,
        )
        return "premoderation"

    async def _emit(self, outbox: Outbox, record: CommentRecord, at: datetime) -> None:
        decided = CommentDecided(
            id=record.id,
            article_guid=record.article_guid,
            parent_id=record.parent_id,
            status=cast(CommentStatus, record.status),
            reasons=record.reasons,
            actor=record.actor,
            decided_at=at,
            revision=record.revision,
            author=record.author,
            author_url=record.author_url,
            body_html=record.body_html,
            submitted_at=datetime.fromisoformat(record.submitted_at),
            depth=record.depth,
        )
        await outbox.send(self.decisions_topic, record.article_guid, decided)

    # --- surge protection ---------------------------------------------------------------------------------

    async def _observe_surge(
        self, guid: str, decision: Decision, now: datetime, outbox: Outbox, batch: BatchState
    ) -> None:
        batch.surge_touched.add(guid)
        self.surge_loaded.add(guid)
        change = self.surge.observe(guid, surge_signal(decision), now)
        if change is not None:
            batch.surge_flags[guid] = change.state == "on"
            await outbox.send(self.alerts_topic, guid, self.alert(change))
            log.warning("comment surge", guid=guid, state=change.state, reason=change.reason)

    @staticmethod
    def alert(change: SurgeChange) -> SurgeAlert:
        return SurgeAlert(
            article_guid=change.article_guid,
            state=change.state,
            reason=change.reason,
            at=change.at,
            comments_last_minute=change.comments_last_minute,
            held_share=round(change.held_share, 4),
        )

    async def tick(
        self, outbox: Outbox, now: datetime | None = None, owns: Callable[[str], bool] | None = None
    ) -> list[SurgeChange]:
        """Re-evaluate quiet articles (a surge must be able to end without a new comment).

        `owns(guid)` says whether this process decides for the article now (its partition is assigned here). The
        others are forgotten, so a replica that lost an article neither ends its surge nor writes over the state
        of the replica that took it; and articles in a surge that this process owns but never met (their last
        owner stopped while they were quiet) are read from Redis, so their surge can end."""
        if owns is not None:
            for guid in self.surge.articles():
                if not owns(guid):
                    self.surge.forget(guid)
                    self.surge_loaded.discard(guid)
            surging = [m.decode() for m in cast(set[bytes], await self.redis.smembers(self.store.surging_key()))]
            orphans = [guid for guid in sorted(surging) if guid not in self.surge_loaded and owns(guid)]
            if orphans:
                raws = cast(list[bytes | None], await self.redis.mget([self.store.surge_key(g) for g in orphans]))
                self._load_surge(dict(zip(orphans, raws, strict=True)))
        changes = self.surge.tick(now or datetime.now(UTC))
        for change in changes:
            await outbox.send(self.alerts_topic, change.article_guid, self.alert(change))
            log.warning("comment surge", guid=change.article_guid, state=change.state, reason=change.reason)
        await outbox.flush()
        batch = CommandBatch()
        for change in changes:
            flag = "1" if change.state == "on" else "0"
            batch.command("HSET", self.store.article_key(change.article_guid), "surge", flag)
        self._save_surge(batch, self.surge_loaded | set(self.surge.articles()))
        await batch.execute(self.redis)
        return changes

    def _save_surge(self, batch: CommandBatch, guids: set[str]) -> None:
        states = self.surge.to_dict()["articles"]
        for guid in sorted(guids):
            state = states.get(guid)
            batch.command("SADD" if state is not None and state["on"] else "SREM", self.store.surging_key(), guid)
            if state is None:
                batch.command("DEL", self.store.surge_key(guid))
                self.surge_loaded.discard(guid)
            else:
                encoded = json.dumps(state, separators=(",", ":"))
                batch.command("SET", self.store.surge_key(guid), encoded, "EX", SURGE_TTL_SECONDS)

    # --- writes -------------------------------------------------------------------------------------------

    async def write_batch(self, batch: BatchState) -> None:
        """Apply what the batch decided, now that Kafka has acknowledged it: history and queues first, the
        records (the marks that a comment is done) last. Commands are grouped per key, so a batch costs a few
        commands per comment, not one per field."""
        store = self.store
        authors: dict[str, dict[str, str]] = {}
        for (email_hash, member), comment_id in batch.bodies.items():
            authors.setdefault(email_hash, {})[member] = comment_id
        for email_hash in batch.author_approved:
            authors.setdefault(email_hash, {})["approved"] = "1"
        recent: dict[int, dict[str, str]] = {}
        for prefix, times in (("e", batch.author_last), ("i", batch.ip_last)):
            for hashed, (last, comment_id) in times.items():
                entry = f"{last!r} {comment_id}"
                recent.setdefault(int(last // RECENT_BUCKET_SECONDS), {})[f"{prefix}:{hashed}"] = entry
        recent_ttl = int(self.policy.flood_window.total_seconds()) + 2 * RECENT_BUCKET_SECONDS
        records = [*batch.created.values(), *(record for _, record in batch.updated.values())]
        enqueue: dict[str, dict[str, float]] = {}
        for record in records:
            score = datetime.fromisoformat(record.submitted_at).timestamp()
            enqueue.setdefault(record.status, {})[record.id] = score
        moved = [record for _, record in batch.updated.values()]
        near: dict[str, list[str]] = {}
        for record in batch.created.values():
            near.setdefault(record.near_key, []).append(record.id)
        writes = CommandBatch()
        for email_hash, fields in authors.items():
            writes.command("HSET", store.author_key(email_hash), *(part for pair in fields.items() for part in pair))
        for bucket, fields in recent.items():
            writes.command("HSET", store.recent_key(bucket), *(part for pair in fields.items() for part in pair))
            writes.command("EXPIRE", store.recent_key(bucket), recent_ttl)
        for status in STATUSES:
            stale = [r.id for r in moved if r.status != status]
            if stale:
                writes.command("ZREM", store.queue_key(status), *stale)
        for status, members in enqueue.items():
            scored = (part for comment_id, score in members.items() for part in (score, comment_id))
            writes.command("ZADD", store.queue_key(status), *scored)
            if status in TRIMMED_QUEUES:
                writes.command("ZREMRANGEBYRANK", store.queue_key(status), 0, -QUEUE_KEEP - 1)
        for key, ids in near.items():
            writes.command("SADD", store.near_key(key), *ids)
        for comment_id in batch.clear_reporters:
            writes.command("DEL", store.reporters_key(comment_id))
            if batch.fresh_reporters.get(comment_id):
                writes.command("SADD", store.reporters_key(comment_id), *sorted(batch.fresh_reporters[comment_id]))
        for guid, on in batch.surge_flags.items():
            writes.command("HSET", store.article_key(guid), "surge", "1" if on else "0")
        self._save_surge(writes, batch.surge_touched)
        await writes.execute(self.redis)
        if records:
            marks = CommandBatch()
            for record in batch.created.values():
                marks.script(
                    store.create_script,
                    keys=[store.record_key(record.id)],
                    args=[record.revision, record.status, record.to_json()],
                )
            for expected, record in batch.updated.values():
                marks.script(
                    store.update_script,
                    keys=[store.record_key(record.id)],
                    args=[expected, record.revision, record.status, record.to_json()],
                )
            await marks.execute(self.redis)
