"""The moderation pipeline, rule by rule, and its helpers: threading, duplicate keys, surge detection."""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import example, given
from hypothesis import strategies as st

from services.comments.articles import ArticleStates
from services.comments.config import CommentsSettings
from services.comments.handlers import CommentPipeline, policy_from
from services.comments.moderation import (
    _LINK_RE,
    NEAR_KEY_PREFIX,
    ArticleState,
    Decision,
    ModerationContext,
    ModerationPolicy,
    ParentState,
    SurgeDetector,
    SurgeThresholds,
    count_links,
    is_edge_refusal,
    is_valid_email,
    moderate,
    near_identical_key,
    normalized_body_hash,
    reply_allowed,
    surge_signal,
)
from services.comments.spam import (
    _BARE_DOMAIN_RE,
    _CUE_FEATURE,
    SpamModel,
    _shouting,
    plain_text,
    shipped_model,
    spam_features,
)
from services.comments.spam import _LINK_RE as SPAM_LINK_RE
from services.comments.store import CommentStore
from services.comments.textnorm import canonical_text, tokens
from shared.contracts.comments import CommentReported, CommentSubmitted

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ARTICLE = "urn:broadsheet:article:1"
POLICY = ModerationPolicy(banned_words=("ass", "cunt", "go die"), suspect_words=("idiot", "lying press"))
ORDINARY = "I read the council report and the figures on school funding do not add up."


def submission(**changes: Any) -> CommentSubmitted:
    fields: dict[str, Any] = {
        "id": "c-1",
        "article_guid": ARTICLE,
        "author": "Ann Reader",
        "email": "ann@example.org",
        "body": ORDINARY,
        "ip": "198.51.100.7",
        "submitted_at": NOW,
    }
    fields.update(changes)
    return CommentSubmitted(**fields)


def context(**changes: Any) -> ModerationContext:
    base = ModerationContext(
        now=NOW,
        article=ArticleState(published_at=NOW - timedelta(days=1)),
        author_has_approved_comment=True,
    )
    return replace(base, **changes)


def decide(sub: CommentSubmitted | None = None, ctx: ModerationContext | None = None, **policy: Any) -> Decision:
    return moderate(sub or submission(), ctx or context(), replace(POLICY, **policy) if policy else POLICY)


# --- 1. the form -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"author": "   "}, "missing_name"),
        ({"author": "x" * 101}, "name_too_long"),
        ({"email": "not-an-address"}, "invalid_email"),
        ({"email": "ann@localhost"}, "invalid_email"),
        ({"email": "ann@@example.org"}, "invalid_email"),
        ({"body": "  \n "}, "empty_body"),
        ({"body": "\u200b\ufeff"}, "empty_body"),
        ({"body": "a" * 5_001}, "body_too_long"),
        ({"url": "javascript:alert(1)"}, "invalid_url"),
        ({"url": "ftp://example.org/"}, "invalid_url"),
    ],
)
def test_invalid_form_is_rejected_with_400(changes: dict[str, Any], reason: str) -> None:
    decision = decide(submission(**changes))
    assert decision == Decision("rejected", (reason,), 400)


def test_all_form_problems_are_reported_together() -> None:
    decision = decide(submission(author="", email="nope", body=""))
    assert decision.reasons == ("missing_name", "invalid_email", "empty_body")


def test_body_of_exactly_the_limit_and_an_https_homepage_are_fine() -> None:
    decision = decide(submission(body="word " * 999 + "done.", url="https://ann.example.org/"))
    assert decision.status != "rejected"


def test_email_syntax() -> None:
    assert is_valid_email("ann.reader+news@mail.example.co.uk")
    assert not is_valid_email("ann reader@example.org")
    assert not is_valid_email("ann@-example.org")
    assert not is_valid_email("a" * 65 + "@example.org")


# --- 2. the article ---------------------------------------------------------------------------------------


def test_unknown_article_is_rejected() -> None:
    assert decide(ctx=context(article=ArticleState(known=False))) == Decision("rejected", ("article_unknown",), 404)


def test_killed_article_is_rejected() -> None:
    assert decide(ctx=context(article=ArticleState(killed=True))).reasons == ("article_killed",)


def test_comments_close_after_fourteen_days() -> None:
    old = context(article=ArticleState(published_at=NOW - timedelta(days=14)))
    assert decide(ctx=old) == Decision("rejected", ("comments_closed",), 403)
    still_open = context(article=ArticleState(published_at=NOW - timedelta(days=13, hours=23)))
    assert decide(ctx=still_open).status == "approved"


def test_zero_days_means_comments_never_close_by_age() -> None:
    """COMMENTS_CLOSE_AFTER_DAYS=0 is "never" in both services: the publisher shows the form, so the pipeline
    must not then reject every comment as closed."""
    never = policy_from(CommentsSettings(comments_close_after_days=0)).comments_close_after
    old = context(article=ArticleState(published_at=NOW - timedelta(days=3650)))
    assert decide(ctx=old, comments_close_after=never).status == "approved"


def test_explicitly_closed_article_is_rejected() -> None:
    closed = context(article=ArticleState(published_at=NOW - timedelta(hours=1), closed_at=NOW - timedelta(minutes=1)))
    assert decide(ctx=closed).reasons == ("comments_closed",)


def test_closure_is_judged_at_submission_time() -> None:
    """A comment sent while comments were open is not refused because the service processed it late."""
    article = ArticleState(published_at=NOW - timedelta(days=14))
    sent_in_time = submission(submitted_at=NOW - timedelta(minutes=5))
    assert decide(sent_in_time, context(article=article)).status == "approved"


@pytest.mark.parametrize(
    ("parent", "reason"),
    [
        (None, "parent_unknown"),
        (ParentState("pending", 0, ARTICLE), "parent_not_approved"),
        (ParentState("approved", 0, "urn:other"), "parent_unknown"),
        (ParentState("approved", 5, ARTICLE), "thread_too_deep"),
    ],
)
def test_replies_need_an_approved_parent_within_depth(parent: ParentState | None, reason: str) -> None:
    decision = decide(submission(parent_id="c-0"), context(parent=parent))
    assert decision == Decision("rejected", (reason,), 400)


def test_reply_to_approved_parent_is_accepted() -> None:
    assert decide(submission(parent_id="c-0"), context(parent=ParentState("approved", 4, ARTICLE))).status == "approved"


def test_reply_allowed() -> None:
    assert reply_allowed("approved", 0)
    assert reply_allowed("approved", 4)
    assert not reply_allowed("approved", 5)
    assert not reply_allowed("pending", 0)
    assert not reply_allowed("removed", 1)
    assert not reply_allowed(None, 0)
    assert reply_allowed("approved", 5, max_depth=6)


# --- 3. duplicates and floods ------------------------------------------------------------------------------


def test_duplicate_is_rejected_with_409() -> None:
    earlier = frozenset(
        {normalized_body_hash("  i READ the council report and the figures on school funding do not add up.")}
    )
    assert decide(ctx=context(author_previous_body_hashes=earlier)) == Decision("rejected", ("duplicate",), 409)


def test_normalized_body_hash_ignores_case_spacing_and_look_alikes() -> None:
    assert normalized_body_hash("Great  point") == normalized_body_hash("great point\n")
    assert normalized_body_hash("Great point") == normalized_body_hash("Grе\u0430t point")  # Cyrillic е, а
    assert normalized_body_hash("Yes.") != normalized_body_hash("Yes!")


def test_second_comment_from_the_same_email_within_15_seconds_is_flood() -> None:
    decision = decide(ctx=context(last_comment_at_by_email=NOW - timedelta(seconds=14)))
    assert decision == Decision("rejected", ("flood", "flood_email"), 429)


def test_second_comment_from_the_same_ip_within_15_seconds_is_flood() -> None:
    decision = decide(ctx=context(last_comment_at_by_ip=NOW - timedelta(seconds=3)))
    assert decision.reasons == ("flood", "flood_ip")


def test_comment_after_the_flood_window_is_fine() -> None:
    assert decide(ctx=context(last_comment_at_by_email=NOW - timedelta(seconds=15))).status == "approved"


# --- 4. bans ---------------------------------------------------------------------------------------------


def test_banned_email_is_rejected_whatever_its_case() -> None:
    decision = decide(submission(email="Ann@Example.org"), context(banned_emails=frozenset({"ann@example.org"})))
    assert decision == Decision("rejected", ("banned_email",))


def test_banned_ip_is_rejected() -> None:
    assert decide(ctx=context(banned_ips=frozenset({"198.51.100.7"}))).reasons == ("banned_ip",)


# --- 5. word lists ---------------------------------------------------------------------------------------


def test_banned_word_is_rejected() -> None:
    decision = decide(submission(body="The minister is an ass."))
    assert (decision.status, decision.reasons, decision.matched_terms) == ("rejected", ("banned_word",), ("ass",))


def test_scunthorpe_and_assessment_pass_a_list_with_cunt_and_ass() -> None:
    body = "Scunthorpe's assessment of the bypass was published in the class notes."
    assert decide(submission(body=body)).status == "approved"


def test_banned_word_with_a_cyrillic_homoglyph_is_caught() -> None:
    decision = decide(submission(body="What an \u0430ss this minister is"))
    assert decision.reasons == ("banned_word",)


def test_banned_phrase_is_caught_across_punctuation() -> None:
    assert decide(submission(body="Just... GO, die!")).reasons == ("banned_word",)


def test_banned_word_in_the_display_name_is_caught() -> None:
    assert decide(submission(author="Big Ass")).reasons == ("banned_word",)


def test_suspect_word_holds_the_comment() -> None:
    decision = decide(submission(body="Only an idiot would believe this budget."))
    assert (decision.status, decision.reasons, decision.matched_terms) == ("pending", ("suspect_word",), ("idiot",))


# --- 6. links ------------------------------------------------------------------------------------------


def test_two_links_hold_the_comment() -> None:
    body = "Sources: https://example.org/report and www.example.net/figures for the numbers."
    assert decide(submission(body=body)) == Decision("pending", ("too_many_links",))


def test_one_link_does_not_trip_the_link_rule() -> None:
    # The spam model is taken out of play (threshold above 1) to test this rule alone.
    body = "The full report is at https://example.org/report, page 12."
    assert decide(submission(body=body), spam_threshold=1.01).status == "approved"


def test_count_links() -> None:
    assert count_links("see http://a.example/x and https://www.b.example/ and www.c.example") == 3
    assert count_links("no links here, only example.org") == 0


@given(st.lists(st.sampled_from([*"wW.:/hHtTpPsS \u017f\u0130x", "http", "://", "WwW."]), max_size=30).map("".join))
@example("see WwW.example.org")
@example("httpſ://example.org")  # a long s is an "s" to the case-blind pattern
def test_count_links_finds_what_the_link_pattern_finds(text: str) -> None:
    """`count_links` and the near-identical key skip the pattern for text that cannot hold a link."""
    assert count_links(text) == len(_LINK_RE.findall(text))


# --- 7. the spam model -----------------------------------------------------------------------------------


def test_spam_model_holds_obvious_spam() -> None:
    decision = decide(submission(body="Check out my channel http://bit.ly/xyz subscribe!!!"))
    assert decision.status == "spam"
    assert decision.reasons[0] == "spam_model"
    assert decision.reasons[1].startswith("spam_score=")
    assert decision.spam_score is not None
    assert decision.spam_score >= shipped_model().threshold


def test_a_score_worked_out_beforehand_decides_at_the_spam_step() -> None:
    """A batch scores its texts before deciding them: the score given is the one judged, at step 7 and only there."""
    spam = submission(body="Check out my channel http://bit.ly/xyz subscribe!!!")
    ordinary_scored_high = moderate(submission(), context(), POLICY, spam_score=0.97)
    assert ordinary_scored_high == Decision("spam", ("spam_model", "spam_score=0.970"), spam_score=0.97)
    spam_scored_low = moderate(spam, context(), POLICY, spam_score=0.02)
    assert spam_scored_low == Decision("approved", ("trusted_author",), spam_score=0.02)
    banned = moderate(submission(body="you ass"), context(), POLICY, spam_score=0.97)
    assert banned.reasons == ("banned_word",), "checks before the model still come first"


def unconnected_pipeline(spam_model: SpamModel | None = None) -> CommentPipeline:
    """A pipeline whose Redis client never connects: scoring a batch reads nothing."""
    client = aioredis.Redis()
    return CommentPipeline(
        CommentsSettings(), client, ArticleStates(client, "ns"), CommentStore(client, "ns"),
        submissions_topic="s", decisions_topic="d", alerts_topic="a", spam_model=spam_model,
    )


def test_a_batch_scores_each_submission_with_the_model() -> None:
    pipeline = unconnected_pipeline()
    spam = submission(id="c-spam", body="Check out my channel http://bit.ly/xyz subscribe!!!")
    ordinary = submission(id="c-ordinary")
    report = CommentReported(id="c-ordinary", article_guid=ARTICLE, reporter="r-1", reported_at=NOW)
    scores = pipeline.score_spam([spam, report, ordinary])
    assert scores == {
        "c-spam": (spam.body, shipped_model().score(spam.body)),
        "c-ordinary": (ordinary.body, shipped_model().score(ordinary.body)),
    }
    assert scores["c-spam"][1] >= shipped_model().threshold > scores["c-ordinary"][1]


class FailsOnPoison(SpamModel):
    def score(self, text: str) -> float:
        if "poison" in text:
            raise ValueError("the model cannot read this text")
        return super().score(text)


def test_a_text_the_model_fails_on_is_left_to_its_own_record() -> None:
    """Scored with the batch, a failure would fail every comment of it, again and again; left out, it fails only its
    own record when that is decided (retried, then dead-lettered)."""
    shipped = shipped_model()
    pipeline = unconnected_pipeline(
        FailsOnPoison(shipped.scaled_weights, shipped.squared_idf, shipped.bias, shipped.threshold)
    )
    poison, ordinary = submission(id="c-poison", body="poison pill"), submission(id="c-ordinary")
    assert pipeline.score_spam([poison, ordinary]) == {"c-ordinary": (ordinary.body, shipped.score(ordinary.body))}


def test_shipped_model_loads_flags_spam_and_passes_an_ordinary_comment() -> None:
    model = shipped_model()
    assert 0.0 < model.threshold < 1.0
    assert model.is_spam("Check out my channel http://bit.ly/xyz subscribe!!!")
    assert not model.is_spam(ORDINARY)
    assert not model.is_spam("Great article, thanks!")
    assert 0.0 <= model.score("") <= 1.0


SPAM_PIECES = st.sampled_from([
    "check", "out", "my", "channel", "give", "it", "a", "like", "thumbs", "up", "if", "work", "from", "home",
    "pay pal", "Sub", "ME", "free!!!", "$5", "http://x.example/y", "www.", "x . com", "é", "\n", "word", "&amp;",
])  # fmt: skip


def _decision_value_by_definition(model: SpamModel, text: str) -> float:
    features = spam_features(text)
    norm = sum(model.squared_idf.get(name, 0.0) for name in features)
    if norm == 0.0:
        return model.bias
    return model.bias + sum(model.scaled_weights.get(name, 0.0) for name in features) / math.sqrt(norm)


@given(st.lists(SPAM_PIECES, max_size=30).map(" ".join))
@example("Check out my channel http://bit.ly/xyz subscribe!!! give it a like")
@example("")
def test_the_spam_model_weighs_exactly_the_features_spam_features_names(text: str) -> None:
    model = shipped_model()
    assert model.decision_value(text) == pytest.approx(_decision_value_by_definition(model, text), rel=1e-12, abs=1e-12)


def test_a_spam_score_is_the_same_to_the_last_bit_in_every_process() -> None:
    """Replicas hash strings with different seeds: the features, and so the sum that scores them, keep one order."""
    text = "FREE gift cards!!! check out my channel, subscribe and like this comment, click here www.x.com"
    program = (
        "from services.comments.spam import shipped_model, spam_features\n"
        f"print(spam_features({text!r}), repr(shipped_model().decision_value({text!r})))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"}, cwd=Path(__file__).resolve().parents[2],
        ).stdout
        for seed in range(6)
    }
    assert len(outputs) == 1, outputs


@given(st.lists(SPAM_PIECES, max_size=30).map(" ".join))
@example("please give it a like and give it a try")
@example("give &amp; it a")
def test_a_cue_is_found_wherever_its_words_follow_each_other(text: str) -> None:
    words = tokens(plain_text(text), leetspeak=False)  # the model reads the text as a reader sees it
    found = set(spam_features(text))
    for phrase, feature in _CUE_FEATURE.items():
        cue = tokens(phrase, leetspeak=False)
        present = any(words[start : start + len(cue)] == cue for start in range(len(words)))
        assert (feature in found) == present, phrase


def _shouting_by_definition(text: str) -> bool:
    letters = sum(map(str.isalpha, text))
    return letters >= 8 and sum(map(str.isupper, text)) > 0.6 * letters


SHOUTING_PIECES = st.sampled_from([*"aZ Q9!xYé", "ÉCRIT", "\u00aa", "ǅ", "\ufeff", "\u200b\u00ad", "\u202e"])


@given(st.lists(SHOUTING_PIECES, max_size=40).map("".join))
@example("BUY NOW CHEAP PILLS!!!")
@example("BUY NOW CHEAP PILLS!!!\ufeff")
@example("Buy now, cheap pills")
@example("ABCDEFGh")
def test_shouting_counts_letters_and_capitals_as_the_characters_say(text: str) -> None:
    assert _shouting(text) == _shouting_by_definition(text)
    assert _shouting(text.encode("ascii", "ignore").decode()) == _shouting_by_definition(
        text.encode("ascii", "ignore").decode()
    )


def test_spam_threshold_comes_from_the_policy_when_set() -> None:
    assert decide(spam_threshold=0.0).status == "spam"
    assert (
        decide(submission(body="Check out my channel http://bit.ly/xyz subscribe!!!"), spam_threshold=1.01).status
        == "approved"
    )


# --- 8. routine holds ------------------------------------------------------------------------------------


def test_first_time_commenter_is_held() -> None:
    decision = decide(ctx=context(author_has_approved_comment=False))
    assert (decision.status, decision.reasons) == ("pending", ("first_time_commenter",))


def test_first_time_hold_can_be_switched_off() -> None:
    decision = decide(ctx=context(author_has_approved_comment=False), hold_first_time_commenters=False)
    assert (decision.status, decision.reasons) == ("approved", ("passed_checks",))


def test_trusted_author_is_approved() -> None:
    decision = decide()
    assert (decision.status, decision.reasons, decision.http_status) == ("approved", ("trusted_author",), None)
    assert decision.spam_score is not None


def test_article_premoderation_holds_everyone() -> None:
    ctx = context(article=ArticleState(published_at=NOW, premoderated=True))
    assert decide(ctx=ctx).reasons == ("premoderation",)
    first_timer = replace(ctx, author_has_approved_comment=False)
    assert decide(ctx=first_timer).reasons == ("first_time_commenter", "premoderation")


def test_section_premoderation_holds() -> None:
    ctx = context(article=ArticleState(published_at=NOW, section_premoderated=True))
    assert decide(ctx=ctx) == Decision("pending", ("premoderation",), spam_score=decide().spam_score)


def test_premoderation_can_exempt_trusted_authors() -> None:
    ctx = context(article=ArticleState(published_at=NOW, premoderated=True))
    assert decide(ctx=ctx, premoderation_holds_trusted_authors=False).reasons == ("trusted_author",)


def test_first_decisive_check_wins() -> None:
    """An invalid, flooding, banned, spammy comment on a killed article: the form is judged first."""
    spammy = submission(email="bad", body="ass http://a.example http://b.example subscribe")
    ctx = context(article=ArticleState(killed=True), last_comment_at_by_ip=NOW, banned_ips=frozenset({"198.51.100.7"}))
    assert decide(spammy, ctx).reasons == ("invalid_email",)
    assert decide(submission(body=spammy.body), ctx).reasons == ("article_killed",)


def test_naive_timestamps_are_taken_as_utc() -> None:
    naive = submission(submitted_at=NOW.replace(tzinfo=None))
    assert decide(naive, context(last_comment_at_by_ip=(NOW - timedelta(seconds=5)).replace(tzinfo=None))).reasons == (
        "flood",
        "flood_ip",
    )


# --- near-identical keys ---------------------------------------------------------------------------------


def test_near_identical_key_groups_template_spam() -> None:
    first = near_identical_key("Earn $500 a day from home! Visit http://a.example/ref=1 now")
    second = near_identical_key("EARN $730 a day from home!! visit https://b.example/x now")
    assert first == second


def test_near_identical_key_separates_different_comments() -> None:
    assert near_identical_key(ORDINARY) != near_identical_key("The mayor's plan for the bus lanes is overdue.")


def test_near_identical_key_for_short_comments() -> None:
    assert near_identical_key("Agreed!") == near_identical_key("agreed")
    assert near_identical_key("Agreed!").startswith("nd2:")


# --- surge detection -------------------------------------------------------------------------------------


def test_surge_signal_does_not_count_routine_holds() -> None:
    assert surge_signal(Decision("pending", ("premoderation",))) == "approved"
    assert surge_signal(Decision("pending", ("first_time_commenter", "premoderation"))) == "approved"
    assert surge_signal(Decision("pending", ("suspect_word",))) == "pending"
    assert surge_signal(Decision("spam", ("spam_model", "spam_score=0.9"))) == "spam"


def test_surge_switches_on_when_the_rate_exceeds_twenty_per_minute() -> None:
    detector = SurgeDetector()
    changes = [detector.observe(ARTICLE, "approved", NOW + timedelta(seconds=2 * i)) for i in range(21)]
    assert changes[:20] == [None] * 20
    change = changes[20]
    assert change is not None
    assert (change.state, change.reason, change.comments_last_minute) == ("on", "rate", 21)
    assert detector.is_on(ARTICLE)


def test_surge_switches_on_when_most_comments_are_held() -> None:
    detector = SurgeDetector()
    statuses = ["spam", "approved"] * 4 + ["pending", "spam"]
    changes = [detector.observe(ARTICLE, status, NOW + timedelta(seconds=20 * i)) for i, status in enumerate(statuses)]
    assert changes[:9] == [None] * 9  # fewer than ten comments: no judgement on the share yet
    assert changes[9] is not None
    assert (changes[9].state, changes[9].reason) == ("on", "held_share")
    assert changes[9].held_share == pytest.approx(0.6)


def test_surge_ignores_a_slow_trickle() -> None:
    detector = SurgeDetector()
    changes = [detector.observe(ARTICLE, "approved", NOW + timedelta(seconds=10 * i)) for i in range(100)]
    assert changes == [None] * 100


def test_surge_switches_off_only_after_a_sustained_calm() -> None:
    thresholds = SurgeThresholds()
    detector = SurgeDetector(thresholds)
    for i in range(25):
        detector.observe(ARTICLE, "approved", NOW + timedelta(seconds=i))
    assert detector.is_on(ARTICLE)
    # Still busy a minute later: stays on.
    assert detector.observe(ARTICLE, "approved", NOW + timedelta(seconds=40)) is None
    # Quiet: calm starts once the last minute drops to the off level, and must last the calm period.
    calm_start = NOW + timedelta(minutes=2)
    assert detector.tick(calm_start) == []
    assert detector.tick(calm_start + thresholds.calm_period - timedelta(seconds=1)) == []
    changes = detector.tick(calm_start + thresholds.calm_period)
    assert [(c.article_guid, c.state, c.reason) for c in changes] == [(ARTICLE, "off", "calm")]
    assert not detector.is_on(ARTICLE)


def test_surge_calm_is_interrupted_by_a_new_burst() -> None:
    thresholds = SurgeThresholds()
    detector = SurgeDetector(thresholds)
    for i in range(25):
        detector.observe(ARTICLE, "approved", NOW + timedelta(seconds=i))
    calm_start = NOW + timedelta(minutes=2)
    detector.tick(calm_start)
    burst = calm_start + timedelta(minutes=5)
    for i in range(15):
        detector.observe(ARTICLE, "approved", burst + timedelta(seconds=i))  # 15/min: above the off level
    assert detector.tick(calm_start + thresholds.calm_period) == []
    assert detector.is_on(ARTICLE)


def test_surge_state_round_trips_through_json() -> None:
    detector = SurgeDetector()
    for i in range(21):
        detector.observe(ARTICLE, "spam" if i % 2 else "approved", NOW + timedelta(seconds=i))
    detector.observe("urn:other", "approved", NOW)
    restored = SurgeDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    assert restored.to_dict() == detector.to_dict()
    assert restored.is_on(ARTICLE)
    assert not restored.is_on("urn:other")
    later = NOW + timedelta(minutes=30)
    assert [c.state for c in restored.tick(later)] == [c.state for c in detector.tick(later)]


def test_idle_articles_are_forgotten() -> None:
    detector = SurgeDetector()
    detector.observe(ARTICLE, "approved", NOW)
    detector.tick(NOW + timedelta(minutes=6))
    assert detector.to_dict() == {"articles": {}}


def _near_key_by_definition(text: str) -> str:
    """`near_identical_key` as its docstring defines it, one shingle and one number at a time."""
    words = [re.sub(r"\d+", "0", word) for word in tokens(_LINK_RE.sub(" linkplaceholder ", text), leetspeak=False)]
    if len(words) < 3:
        return NEAR_KEY_PREFIX + hashlib.blake2b(" ".join(words).encode(), digest_size=12).hexdigest()
    shingles = {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}
    digests = [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=16).digest(), "little") for s in shingles]
    low = min(d & ((1 << 64) - 1) for d in digests)
    high = min(d >> 64 for d in digests)
    return f"{NEAR_KEY_PREFIX}{low:016x}{high:016x}"


NEAR_KEY_PIECES = st.sampled_from([*"ab Zé1 2x.!ß\u200b", " http://x.example/1 ", "www.", "١٢"])


@given(st.lists(NEAR_KEY_PIECES, max_size=40).map("".join))
@example("Earn $500 a day from home! Visit http://a.example/ref=1 now")
@example("one two")
@example("")
def test_near_identical_key_is_its_definition(text: str) -> None:
    assert near_identical_key(text) == _near_key_by_definition(text)


UNBOUNDED_BARE_DOMAIN = re.compile(
    r"\b[a-z0-9-]+ ?\. ?(?:com|net|org|info|biz|ly|co|me|tv|io|us|uk|de|pl|ru|xyz|online|site)\b"
)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("visit example.com now", True),
        ("kidsmediausa . com", True),
        ("bit.ly/x", True),
        ("my-site.net!", True),
        ("a" * 63 + ".com", True),
        ("a" * 64 + ".com", False),  # longer than a DNS label may be
        ("a-" * 2_500 + "com", False),
        ("the end. comment follows", False),
    ],
)
def test_bare_domains_are_labels_of_at_most_63_characters(text: str, found: bool) -> None:
    assert bool(_BARE_DOMAIN_RE.search(text)) is found


@given(st.text(alphabet=st.sampled_from("ab-. _cmo"), max_size=60))
def test_bounding_the_label_finds_what_the_unbounded_pattern_found_in_short_text(text: str) -> None:
    """Below 63 characters a run cannot reach the bound: the spam model's `domain` feature is unchanged there."""
    assert bool(_BARE_DOMAIN_RE.search(text)) == bool(UNBOUNDED_BARE_DOMAIN.search(text))


@given(st.text(alphabet=st.sampled_from("ab-. _cmoBOM\ufeff.,!"), max_size=80))
@example("visit example . com")
@example("example.comma")
@example("the end. com")
def test_the_domain_feature_is_the_bare_domain_pattern_on_the_canonical_text(text: str) -> None:
    """`spam_features` looks for a domain's ending first, and runs the full pattern only where one is."""
    found = bool(_BARE_DOMAIN_RE.search(canonical_text(plain_text(text))))
    assert ("domain" in spam_features(text)) is found


@given(st.lists(st.sampled_from([*"wW.:/hHtTpPsS x", "http", "://", "WwW.", "\uff37"]), max_size=30).map("".join))
def test_the_link_feature_counts_what_the_spam_link_pattern_finds(text: str) -> None:
    links = len(SPAM_LINK_RE.findall(canonical_text(plain_text(text))))
    assert f"link:{min(links, 2)}" in spam_features(text)


# --- what a decision event says of itself (the log rebuild reads it) -------------------------------------


@pytest.mark.parametrize(
    ("sub", "ctx"),
    [
        (submission(author=" "), context()),
        (submission(email="nope"), context()),
        (submission(body="a" * 5_001), context()),
        (submission(url="ftp://example.org/"), context()),
        (submission(), context(article=ArticleState(known=False))),
        (submission(), context(article=ArticleState(killed=True))),
        (submission(), context(article=ArticleState(published_at=NOW - timedelta(days=30)))),
        (submission(parent_id="c-0"), context(parent=None)),
        (submission(parent_id="c-0"), context(parent=ParentState("pending", 0, ARTICLE))),
        (submission(parent_id="c-0"), context(parent=ParentState("approved", 5, ARTICLE))),
        (submission(), context(author_previous_body_hashes=frozenset({normalized_body_hash(ORDINARY)}))),
        (submission(), context(last_comment_at_by_ip=NOW - timedelta(seconds=1))),
    ],
)
def test_every_refusal_an_edge_would_make_is_known_by_its_first_reason(
    sub: CommentSubmitted, ctx: ModerationContext
) -> None:
    decision = decide(sub, ctx)
    assert decision.http_status is not None
    assert is_edge_refusal(decision.status, decision.reasons)


def test_decisions_without_an_edge_answer_are_not_edge_refusals() -> None:
    for decision in (
        decide(ctx=context(banned_emails=frozenset({"ann@example.org"}))),
        decide(submission(body="you are an ass")),
        decide(submission(body="you idiot")),
        decide(),
    ):
        assert decision.http_status is None
        assert not is_edge_refusal(decision.status, decision.reasons)
