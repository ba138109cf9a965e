"""The comment moderation pipeline: pure decisions from a submission, the service's state and the policy.

Checks run in a fixed order and the first decisive one wins, so a decision is always explainable by the
reason codes it carries:

1. the form: name, e-mail, body, link                       -> rejected, HTTP 400
2. the article: known, not killed, open; the parent comment -> rejected
3. duplicate of the author's earlier comment                 -> rejected, HTTP 409
   more than one comment per author or IP in the flood window -> rejected, HTTP 429
4. banned e-mail or IP                                      -> rejected
5. banned words -> rejected; suspect words -> pending
6. too many links                                           -> pending
7. the spam model                                           -> spam (held for review, never deleted)
8. pre-moderation and first-time commenters -> pending; otherwise approved

Nothing here does I/O: the service reads its state into a `ModerationContext`, calls `moderate`, and
acts on the `Decision`. The helpers for duplicate keys, reply threading, bulk moderation and surge
detection are pure as well; `SurgeDetector` serializes to a plain dict so its state can live in Redis.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.comments.spam import SpamModel, shipped_model
from services.comments.textnorm import PhraseMatcher, canonical_text, plain_words
from shared.contracts.comments import CommentStatus, CommentSubmitted
from shared.validation import is_valid_author_url, is_valid_email

DecisionStatus = Literal["approved", "pending", "spam", "rejected"]

_LINK_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the pipeline decided and why.

    `http_status` is a hint for an edge that checks synchronously: 400 invalid, 404 unknown article, 409
    duplicate, 410 killed article, 403 closed comments, 429 flood. Decisions an edge should not reveal (a
    banned address, spam) carry none. `spam_score` is set whenever the model ran, so approved comments
    carry it too and moderators can audit the model.
    """

    status: DecisionStatus
    reasons: tuple[str, ...]
    http_status: int | None = None
    spam_score: float | None = None
    matched_terms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ArticleState:
    """What the comments service knows about the article a comment is posted under."""

    known: bool = True
    killed: bool = False
    published_at: datetime | None = None
    closed_at: datetime | None = None
    premoderated: bool = False
    section_premoderated: bool = False


@dataclass(frozen=True, slots=True)
class ParentState:
    """The comment a reply answers."""

    status: CommentStatus
    depth: int
    article_guid: str


@dataclass(frozen=True, slots=True)
class ModerationContext:
    """The service's state that bears on one submission, read before calling `moderate`.

    `author_previous_body_hashes` holds `normalized_body_hash` of the author's earlier comments; the last
    comment times are when the author's e-mail and the IP last submitted (their `submitted_at`). For a reply
    the service fills `parent`; `None` for a reply means the parent is unknown.
    """

    now: datetime
    article: ArticleState
    author_has_approved_comment: bool = False
    author_previous_body_hashes: frozenset[str] = frozenset()
    last_comment_at_by_email: datetime | None = None
    last_comment_at_by_ip: datetime | None = None
    banned_emails: frozenset[str] = frozenset()
    banned_ips: frozenset[str] = frozenset()
    parent: ParentState | None = None


@dataclass(frozen=True)
class ModerationPolicy:
    """Moderation configuration. Word lists are matched as whole words after folding (see textnorm)."""

    banned_words: tuple[str, ...] = ()
    suspect_words: tuple[str, ...] = ()
    comments_close_after: timedelta | None = timedelta(days=14)
    """None: comments never close by age (`COMMENTS_CLOSE_AFTER_DAYS=0`, as the publisher reads it too)."""
    flood_window: timedelta = timedelta(seconds=15)
    max_links: int = 2
    hold_first_time_commenters: bool = True
    premoderation_holds_trusted_authors: bool = True
    max_body_chars: int = 5_000
    max_name_chars: int = 100
    max_reply_depth: int = 5
    spam_threshold: float | None = None
    leetspeak: bool = True
    banned_matcher: PhraseMatcher = field(init=False, repr=False, compare=False)
    suspect_matcher: PhraseMatcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The word lists are compiled once per policy, not once per comment.
        object.__setattr__(self, "banned_matcher", PhraseMatcher(self.banned_words, leetspeak=self.leetspeak))
        object.__setattr__(self, "suspect_matcher", PhraseMatcher(self.suspect_words, leetspeak=self.leetspeak))


def _aware(moment: datetime) -> datetime:
    """Timestamps without a zone are taken as UTC, so comparisons never mix naive and aware times."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def count_links(text: str) -> int:
    """Links written with a scheme or a leading "www."."""
    return len(_LINK_RE.findall(text)) if _may_hold_link(text) else 0


def _may_hold_link(text: str) -> bool:
    """False when `_LINK_RE` cannot match: each of its links holds "://" or a "www." in some case, two substring
    searches where the case-blind pattern tries at every character (1 µs a comment against 2; most have no link)."""
    return "://" in text or "www." in text.lower()


def normalized_body_hash(text: str) -> str:
    """A key equal for resubmissions of the same comment, whatever the case, spacing or look-alike letters.

    Punctuation is kept: "Yes." and "Yes!" are different comments; near-identical ones are grouped by
    `near_identical_key` instead.
    """
    return hashlib.sha256(canonical_text(text).encode("utf-8")).hexdigest()


def reply_allowed(parent_status: CommentStatus | None, parent_depth: int, max_depth: int = 5) -> bool:
    """Replies go only under approved comments, and threads stop at `max_depth`.

    Top-level comments have depth 0 and a reply is one deeper than its parent, so with the default a
    thread shows at most six levels: the comment and five levels of replies.
    """
    return parent_status == "approved" and 0 <= parent_depth < max_depth


_SHINGLE_WORDS = 3
_NUMBER_RE = re.compile(r"\d+")
NEAR_KEY_PREFIX = "nd2:"
_SHINGLE_HASH = hashlib.blake2b(digest_size=16)


def near_identical_key(text: str) -> str:
    """A grouping key shared by near-identical comments, so a moderator can act on a whole wave at once.

    The text is folded, links and numbers are replaced by placeholders (spam waves vary them), and the
    key is a two-hash MinHash signature over three-word shingles. Two comments get the same key with a
    probability of about J² for word-shingle Jaccard similarity J: certain for identical templates, likely
    for light edits, negligible for unrelated comments. Comments shorter than a shingle are keyed whole.
    The two hash functions are the two halves of one 128-bit BLAKE2b digest per shingle (independent
    halves of a cryptographic hash), so each shingle is hashed once.
    """
    without_links = _LINK_RE.sub(" linkplaceholder ", text) if _may_hold_link(text) else text
    # A run of digits never spans two words (digits are word characters), so numbers are replaced in the words
    # joined by spaces: the same words as replacing them word by word. The words are those the other checks
    # read from the body (the same text when it holds no link).
    words = _NUMBER_RE.sub("0", " ".join(plain_words(without_links)))
    if words.count(" ") < _SHINGLE_WORDS - 1:
        return NEAR_KEY_PREFIX + hashlib.blake2b(words.encode("utf-8"), digest_size=12).hexdigest()
    # Words hold no space, and no byte of a UTF-8 character is a space: the words are encoded once, together.
    encoded = words.encode("utf-8").split(b" ")
    shingles = set(map(b" ".join, zip(encoded, encoded[1:], encoded[2:], strict=False)))
    digests = bytearray()
    fresh = _SHINGLE_HASH.copy  # copying a configured hasher is cheaper than configuring one (0.18 µs against 0.27)
    for shingle in shingles:
        hasher = fresh()
        hasher.update(shingle)
        digests += hasher.digest()
    # Each digest as a little-endian 128-bit number: its low half is the first 8 bytes, its high half the last 8.
    halves = struct.unpack(f"<{2 * len(shingles)}Q", digests)
    return f"{NEAR_KEY_PREFIX}{min(halves[0::2]):016x}{min(halves[1::2]):016x}"


def _validate_form(submission: CommentSubmitted, policy: ModerationPolicy) -> tuple[str, ...]:
    problems: list[str] = []
    author = submission.author.strip()
    if not author:
        problems.append("missing_name")
    elif len(author) > policy.max_name_chars:
        problems.append("name_too_long")
    if not is_valid_email(submission.email.strip()):
        problems.append("invalid_email")
    body = submission.body.strip()
    if not body or not canonical_text(body):
        problems.append("empty_body")
    elif len(body) > policy.max_body_chars:
        problems.append("body_too_long")
    url = (submission.url or "").strip()
    if url and not is_valid_author_url(url):
        problems.append("invalid_url")
    return tuple(problems)


def _article_problem(
    submission: CommentSubmitted, ctx: ModerationContext, policy: ModerationPolicy, at: datetime
) -> Decision | None:
    article = ctx.article
    if not article.known:
        return Decision("rejected", ("article_unknown",), 404)
    if article.killed:
        return Decision("rejected", ("article_killed",), 410)
    closes_at = [_aware(article.closed_at)] if article.closed_at is not None else []
    if article.published_at is not None and policy.comments_close_after is not None:
        closes_at.append(_aware(article.published_at) + policy.comments_close_after)
    if closes_at and at >= min(closes_at):
        return Decision("rejected", ("comments_closed",), 403)
    if submission.parent_id is not None:
        parent = ctx.parent
        if parent is None or parent.article_guid != submission.article_guid:
            return Decision("rejected", ("parent_unknown",), 400)
        if parent.status != "approved":
            return Decision("rejected", ("parent_not_approved",), 400)
        if not reply_allowed(parent.status, parent.depth, policy.max_reply_depth):
            return Decision("rejected", ("thread_too_deep",), 400)
    return None


EDGE_REFUSAL_REASONS = frozenset({
    "missing_name", "name_too_long", "invalid_email", "empty_body", "body_too_long", "invalid_url",
    "article_unknown", "article_killed", "comments_closed", "parent_unknown", "parent_not_approved",
    "thread_too_deep", "duplicate", "flood",
})
"""First reasons of the rejections that carry an `http_status` (what an edge would have refused at once)."""


def is_edge_refusal(status: str, reasons: Sequence[str]) -> bool:
    """Whether a decision, as its event tells it, is one an edge would have refused: such a comment leaves no
    trace in its author's history."""
    return status == "rejected" and bool(reasons) and reasons[0] in EDGE_REFUSAL_REASONS


def _within(window: timedelta, earlier: datetime | None, at: datetime) -> bool:
    return earlier is not None and at - _aware(earlier) < window


def moderate(
    submission: CommentSubmitted,
    ctx: ModerationContext,
    policy: ModerationPolicy,
    spam_model: SpamModel | None = None,
    *,
    spam_score: float | None = None,
) -> Decision:
    """Decide one submission. The first decisive check wins (see the module docstring for the order).

    Time-based checks use the submission's edge-assigned `submitted_at`, capped at `ctx.now`, so a
    replayed or lagging submission is judged as it was when the reader sent it, and a clock running ahead
    cannot reopen closed comments. Without `spam_model` the model shipped with the package is used;
    `spam_score` is that model's score of this body when the caller has it already (a batch scores its texts
    together).
    """
    at = min(_aware(submission.submitted_at), _aware(ctx.now))

    problems = _validate_form(submission, policy)
    if problems:
        return Decision("rejected", problems, 400)

    article_problem = _article_problem(submission, ctx, policy, at)
    if article_problem is not None:
        return article_problem

    if ctx.author_previous_body_hashes and normalized_body_hash(submission.body) in ctx.author_previous_body_hashes:
        return Decision("rejected", ("duplicate",), 409)
    flooding = [
        reason
        for reason, earlier in (("flood_email", ctx.last_comment_at_by_email), ("flood_ip", ctx.last_comment_at_by_ip))
        if _within(policy.flood_window, earlier, at)
    ]
    if flooding:
        return Decision("rejected", ("flood", *flooding), 429)

    email = submission.email.strip().casefold()
    if email in {banned.casefold() for banned in ctx.banned_emails}:
        return Decision("rejected", ("banned_email",))
    if submission.ip is not None and submission.ip.strip() in ctx.banned_ips:
        return Decision("rejected", ("banned_ip",))

    banned = _matched(policy.banned_matcher, submission)
    if banned:
        return Decision("rejected", ("banned_word",), matched_terms=banned)
    suspect = _matched(policy.suspect_matcher, submission)
    if suspect:
        return Decision("pending", ("suspect_word",), matched_terms=suspect)

    if count_links(submission.body) >= policy.max_links:
        return Decision("pending", ("too_many_links",))

    model = spam_model if spam_model is not None else shipped_model()
    score = spam_score if spam_score is not None else model.score(submission.body)
    threshold = policy.spam_threshold if policy.spam_threshold is not None else model.threshold
    if score >= threshold:
        return Decision("spam", ("spam_model", f"spam_score={score:.3f}"), spam_score=score)

    return _routine_decision(ctx, policy, score)


def _matched(matcher: PhraseMatcher, submission: CommentSubmitted) -> tuple[str, ...]:
    """List entries found in the body or the display name (an offensive name is as public as the body)."""
    if not matcher:
        return ()
    found = matcher.matched_entries(submission.body) + matcher.matched_entries(submission.author)
    return tuple(dict.fromkeys(found)) if found else ()


def _routine_decision(ctx: ModerationContext, policy: ModerationPolicy, score: float) -> Decision:
    """Step 8: holds that say nothing against the comment itself.

    A pre-moderated article holds everyone, trusted authors included, unless the policy exempts them:
    pre-moderation is switched on when an article draws a crowd, and crowds include regulars.
    """
    premoderated = ctx.article.premoderated or ctx.article.section_premoderated
    trusted = ctx.author_has_approved_comment
    holds: list[str] = []
    if not trusted and policy.hold_first_time_commenters:
        holds.append("first_time_commenter")
    if premoderated and (not trusted or policy.premoderation_holds_trusted_authors):
        holds.append("premoderation")
    if holds:
        return Decision("pending", tuple(holds), spam_score=score)
    return Decision("approved", ("trusted_author",) if trusted else ("passed_checks",), spam_score=score)


ROUTINE_HOLD_REASONS = frozenset({"first_time_commenter", "premoderation"})


def surge_signal(decision: Decision) -> CommentStatus:
    """The status to feed `SurgeDetector.observe` for a decision.

    Routine holds (first-time commenter, pre-moderation) say nothing bad about a comment; counting them as
    held would keep a pre-moderated article pre-moderated for ever. Such decisions count as approved.
    """
    if decision.status == "pending" and set(decision.reasons) <= ROUTINE_HOLD_REASONS:
        return "approved"
    return decision.status


# --- surge detection ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SurgeThresholds:
    """When an article switches to pre-moderation and when it switches back.

    On: more than `rate_on_per_minute` comments in the last minute, or, over at least `min_comments`
    comments in the last `window`, a held share above `held_share_on`. Off: for `calm_period` without
    interruption, the rate stayed at or below `rate_off_per_minute` and the held share at or below
    `held_share_off` (or too few comments to judge). The gap between the on and off levels, and the
    calm period, are the hysteresis that stops an article flapping.
    """

    rate_on_per_minute: int = 20
    rate_off_per_minute: int = 10
    held_share_on: float = 0.5
    held_share_off: float = 0.3
    min_comments: int = 10
    window: timedelta = timedelta(minutes=5)
    calm_period: timedelta = timedelta(minutes=10)
    bucket: timedelta = timedelta(seconds=5)
    held_statuses: frozenset[str] = frozenset({"pending", "spam", "rejected"})


@dataclass(frozen=True, slots=True)
class SurgeChange:
    """An article switching pre-moderation on or off, with the figures that triggered it."""

    article_guid: str
    state: Literal["on", "off"]
    at: datetime
    reason: Literal["rate", "held_share", "calm"]
    comments_last_minute: int
    held_share: float


@dataclass(slots=True)
class _ArticleSurge:
    """Per-article counts in fixed time buckets (bounded memory whatever the traffic)."""

    buckets: dict[int, tuple[int, int]] = field(default_factory=dict)  # bucket start (s) -> (total, held)
    on: bool = False
    calm_since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "buckets": [[start, total, held] for start, (total, held) in sorted(self.buckets.items())],
            "on": self.on,
            "calm_since": self.calm_since,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _ArticleSurge:
        return cls(
            buckets={int(start): (int(total), int(held)) for start, total, held in data.get("buckets", [])},
            on=bool(data.get("on", False)),
            calm_since=None if data.get("calm_since") is None else float(data["calm_since"]),
        )


class SurgeDetector:
    """Watches the comment flow per article and says when to switch pre-moderation on or off.

    Pure: time comes in with each observation, nothing is read or written outside. `observe` records one
    decided comment; `tick` re-evaluates every article without a new comment (an article that went quiet
    must still be able to calm down) and forgets idle ones. `to_dict`/`from_dict` round-trip the whole
    state through JSON-compatible values.
    """

    def __init__(self, thresholds: SurgeThresholds | None = None) -> None:
        self.thresholds = thresholds or SurgeThresholds()
        self._articles: dict[str, _ArticleSurge] = {}

    def is_on(self, article_guid: str) -> bool:
        state = self._articles.get(article_guid)
        return state is not None and state.on

    def articles(self) -> list[str]:
        return list(self._articles)

    def forget(self, article_guid: str) -> None:
        """Drop an article this process no longer decides for (its partition moved to another replica)."""
        self._articles.pop(article_guid, None)

    def observe(self, article_guid: str, status: CommentStatus, at: datetime) -> SurgeChange | None:
        """Record one decided comment and return the switch it causes, if any.

        Feed it `surge_signal(decision)`, not the raw status, so routine holds do not count as held.
        """
        seconds = _aware(at).timestamp()
        state = self._articles.setdefault(article_guid, _ArticleSurge())
        bucket_seconds = self.thresholds.bucket.total_seconds()
        start = int(seconds // bucket_seconds * bucket_seconds)
        total, held = state.buckets.get(start, (0, 0))
        state.buckets[start] = (total + 1, held + (status in self.thresholds.held_statuses))
        return self._evaluate(article_guid, state, seconds)

    def tick(self, at: datetime) -> list[SurgeChange]:
        """Re-evaluate all articles at `at`; call it periodically. Forgets articles that are off and idle."""
        seconds = _aware(at).timestamp()
        changes: list[SurgeChange] = []
        for article_guid, state in list(self._articles.items()):
            change = self._evaluate(article_guid, state, seconds)
            if change is not None:
                changes.append(change)
            if not state.on and not state.buckets:
                del self._articles[article_guid]
        return changes

    def _evaluate(self, article_guid: str, state: _ArticleSurge, seconds: float) -> SurgeChange | None:
        limits = self.thresholds
        window_start = seconds - limits.window.total_seconds()
        minute_start = seconds - 60.0
        bucket_seconds = limits.bucket.total_seconds()
        # One pass over the buckets (a comment re-evaluates its article): drop the expired, count the rest.
        expired: list[int] = []
        last_minute = total = held = 0
        for start, (bucket_total, bucket_held) in state.buckets.items():
            if start + bucket_seconds <= window_start:
                expired.append(start)
            elif start <= seconds:
                total += bucket_total
                held += bucket_held
                if start + bucket_seconds > minute_start:
                    last_minute += bucket_total
        for start in expired:
            del state.buckets[start]
        share = held / total if total else 0.0
        judged = total >= limits.min_comments

        if not state.on:
            reason: Literal["rate", "held_share"] | None = None
            if last_minute > limits.rate_on_per_minute:
                reason = "rate"
            elif judged and share > limits.held_share_on:
                reason = "held_share"
            if reason is None:
                return None
            state.on = True
            state.calm_since = None
            return SurgeChange(article_guid, "on", datetime.fromtimestamp(seconds, UTC), reason, last_minute, share)

        calm = last_minute <= limits.rate_off_per_minute and (not judged or share <= limits.held_share_off)
        if not calm:
            state.calm_since = None
            return None
        if state.calm_since is None:
            state.calm_since = seconds
        if seconds - state.calm_since < limits.calm_period.total_seconds():
            return None
        state.on = False
        state.calm_since = None
        return SurgeChange(article_guid, "off", datetime.fromtimestamp(seconds, UTC), "calm", last_minute, share)

    def to_dict(self) -> dict[str, Any]:
        return {"articles": {guid: state.to_dict() for guid, state in sorted(self._articles.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], thresholds: SurgeThresholds | None = None) -> SurgeDetector:
        detector = cls(thresholds)
        for guid, state in data.get("articles", {}).items():
            detector._articles[str(guid)] = _ArticleSurge.from_dict(state)
        return detector


__all__ = [
    "ROUTINE_HOLD_REASONS",
    "ArticleState",
    "Decision",
    "DecisionStatus",
    "ModerationContext",
    "ModerationPolicy",
    "ParentState",
    "SurgeChange",
    "SurgeDetector",
    "SurgeThresholds",
    "count_links",
    "is_valid_author_url",
    "is_valid_email",
    "moderate",
    "near_identical_key",
    "normalized_body_hash",
    "reply_allowed",
    "surge_signal",
]
