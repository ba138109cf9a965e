"""The comment form's edge without Kafka or Redis: token, honeypot, id derivation and validation messages."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.comments.handlers import body_to_html, without_overrides
from services.comments.moderation import ModerationPolicy
from services.publisher.comment_edge import (
    FIELD_LIMITS,
    MAX_BODY_CHARS,
    MAX_EMAIL_CHARS,
    MAX_NAME_CHARS,
    PAGE,
    CommentForm,
    comment_id,
    comments_close_at,
    form_token,
    is_valid_email,
    is_valid_url,
    media_type,
    reader_ip,
    sent_from_elsewhere,
    token_valid,
    validate,
)
from services.publisher.render import render_article
from services.publisher.site import SiteConfig
from tests.unit.test_render import SITE, make_article, make_comment

SECRET = "unit-secret"
GUID = "urn:newsml:example.org:20240320:harbour"


def fields(**changes: Any) -> dict[str, Any]:
    base = {
        "comment_post_ID": GUID,
        "comment_parent": "0",
        "author": "Alice",
        "email": "alice@example.org",
        "url": "",
        "comment": "Fair pay for the night shift.",
        "website_url": "",
        "form_token": form_token(SECRET, GUID),
    }
    base.update(changes)
    return base


def codes(**changes: Any) -> set[str]:
    return {e.code for e in validate(CommentForm.from_fields(fields(**changes)), secret=SECRET)}


def test_form_token_is_deterministic_per_article_and_secret() -> None:
    token = form_token(SECRET, GUID)
    assert token == form_token(SECRET, GUID)
    assert len(token) == 32
    assert token != form_token(SECRET, GUID + "x")
    assert token != form_token("other-secret", GUID)
    assert token_valid(SECRET, GUID, token)
    assert token_valid(SECRET, GUID, f" {token} ")
    assert not token_valid(SECRET, GUID, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not token_valid(SECRET, GUID, "")


def test_a_valid_form_passes() -> None:
    assert codes() == set()
    assert codes(url="https://alice.example.org/blog") == set()


def test_the_token_is_checked_for_forms_only() -> None:
    assert codes(form_token="forged") == {"invalid_token"}
    assert codes(form_token=form_token(SECRET, "another-article")) == {"invalid_token"}
    form = CommentForm.from_fields(fields(form_token=""))
    assert validate(form, secret=None) == []


def test_a_filled_honeypot_is_refused() -> None:
    assert codes(website_url="http://spam.example") == {"honeypot"}
    assert codes(website_url="   ") == set()


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"author": "  "}, "missing_name", "Please enter your name."),
        ({"author": "n" * 101}, "name_too_long", "Your name must be at most 100 characters."),
        ({"email": ""}, "missing_email", "Please enter your email address."),
        ({"email": "alice.example.org"}, "invalid_email", "Please enter a valid email address."),
        ({"comment": " \n "}, "empty_body", "Please type your comment."),
        ({"comment": "x" * 5001}, "body_too_long", "Your comment is 5,001 characters long; the limit is 5,000."),
        ({"url": "javascript:alert(1)"}, "invalid_url", "The website must be a link starting with http:// or https://."),
        ({"comment_parent": "../../x"}, "invalid_parent", "The comment you reply to does not exist."),
        ({"comment_post_ID": ""}, "missing_article", "The comment is not attached to an article."),
    ],
)
def test_validation_messages(changes: dict[str, Any], code: str, message: str) -> None:
    errors = validate(CommentForm.from_fields(fields(**changes)), secret=None)
    assert [(e.code, e.message) for e in errors] == [(code, message)]


def test_all_problems_are_reported_together() -> None:
    assert codes(author="", email="nope", comment="", form_token="x") == {
        "invalid_token", "missing_name", "invalid_email", "empty_body",
    }


def test_body_limit_counts_the_text_after_trimming() -> None:
    assert codes(comment="y" * MAX_BODY_CHARS) == set()
    assert codes(comment="  " + "y" * MAX_BODY_CHARS + "\n\n") == set()


def test_email_and_url_syntax() -> None:
    assert is_valid_email("a.b+tag@mail.example.co.uk")
    assert is_valid_email("user@xn--bcher-kva.example")
    for bad in ("a@b", "a@@b.org", "a b@c.org", "@c.org", "a@-c.org", "a@c.o_rg", "a@c.123"):
        assert not is_valid_email(bad), bad
    assert is_valid_url("http://example.org")
    for bad in ("ftp://example.org", "javascript:alert(1)", "data:text/html,x", "https://", "http://a b.org"):
        assert not is_valid_url(bad), bad


def test_comment_id_is_stable_for_a_double_submit_and_distinct_otherwise() -> None:
    first = comment_id(GUID, "Alice@Example.org", "Fair pay  for the\nnight shift.")
    assert first == comment_id(GUID, " alice@example.org ", "fair pay for the night shift.")
    assert first.startswith("c") and len(first) == 25
    assert first != comment_id(GUID, "alice@example.org", "Fair pay for the day shift.")
    assert first != comment_id(GUID + "-2", "alice@example.org", "Fair pay for the night shift.")
    assert first != comment_id(GUID, "bob@example.org", "Fair pay for the night shift.")


def test_an_idempotency_key_decides_the_id() -> None:
    keyed = comment_id(GUID, "alice@example.org", "Text", "form-1")
    assert keyed == comment_id(GUID, "alice@example.org", "Other text", "form-1")
    assert keyed != comment_id(GUID, "alice@example.org", "Text", "form-2")
    assert keyed != comment_id(GUID, "alice@example.org", "Text")


def test_form_parsing_maps_wordpress_fields() -> None:
    form = CommentForm.from_fields(fields(comment_parent="c123", url=" https://a.example ", comment="a\r\nb "))
    assert form.parent_id == "c123"
    assert form.url == "https://a.example"
    assert form.body == "a\nb"
    assert CommentForm.from_fields(fields(comment_parent="0")).parent_id is None
    assert CommentForm.from_fields(fields(comment_parent="")).parent_id is None


def test_the_error_page_escapes_and_keeps_the_readers_text() -> None:
    form = CommentForm.from_fields(fields(comment='<script>alert("x")</script>\nSecond line', email="bad"))
    errors = validate(form, secret=SECRET)
    html = PAGE.render(
        title="t", site_name="Broadsheet", errors=errors, form=form.refill(), back="/a", kept="", message=""
    )
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\nSecond line</textarea>" in html
    assert 'value="bad"' in html
    assert "Please enter a valid email address." in html


def test_comment_bodies_are_escaped_and_paragraphed_for_display() -> None:
    text = "First <b>line</b>\nsame paragraph http://spam.example\n\n\nSecond & last"
    assert body_to_html(text) == (
        "<p>First &lt;b&gt;line&lt;/b&gt;<br>same paragraph http://spam.example</p><p>Second &amp; last</p>"
    )
    assert "<a" not in body_to_html("see www.example.org and https://example.org")


@example("  one line & <b>bold</b>  ")
@example(" \r\n ")
@example("a\rb")
@given(st.lists(st.sampled_from([*"ab <>&\"'", "\n", "\r", "\r\n", "\t", "\u2028", "\xa0"]), max_size=30).map("".join))
def test_a_comment_of_one_line_is_one_escaped_paragraph(text: str) -> None:
    """Most comments are one line: their shortcut gives what splitting into paragraphs and lines gives."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n+", normalized) if p.strip()]
    expected = "".join(
        "<p>" + "<br>".join(html.escape(line.strip(), quote=True) for line in p.split("\n")) + "</p>"
        for p in paragraphs
    )
    assert body_to_html(text) == expected


def test_names_and_words_cannot_be_turned_around() -> None:
    assert without_overrides("\u202eevil\u202c") == "evil"
    assert without_overrides("a\u202ab\u202bc\u202dd") == "abcd"
    # Right-to-left text keeps its marks and isolates.
    hebrew = "\u05e9\u05dc\u05d5\u05dd \u200f\u2067x\u2069"
    assert without_overrides(hebrew) == hebrew


def test_behind_a_trusted_proxy_the_reader_is_the_address_it_appended() -> None:
    # ingress-nginx appends the address it saw to whatever X-Forwarded-For the client sent.
    assert reader_ip("10.0.0.7", "203.0.113.9", trust_proxy=True) == "203.0.113.9"
    assert reader_ip("10.0.0.7", "198.51.100.1, 203.0.113.9", trust_proxy=True) == "203.0.113.9"
    assert reader_ip("10.0.0.7", "", trust_proxy=True) == "10.0.0.7"
    # Without a trusted proxy the header is the client's own word, and the connection's address counts.
    assert reader_ip("203.0.113.9", "198.51.100.1", trust_proxy=False) == "203.0.113.9"


@pytest.mark.parametrize(
    ("origin", "host", "elsewhere"),
    [
        ("", "news.example", False),  # scripts and old browsers send no Origin
        ("https://news.example", "news.example", False),
        ("https://NEWS.example", "news.example", False),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", False),
        ("https://news.example", "publisher:8080", False),  # a proxy that rewrote Host: the site's own address
        ("https://elsewhere.example", "news.example", True),
        ("https://news.example.evil.example", "news.example", True),
        ("null", "news.example", True),
    ],
)
def test_a_form_post_from_another_sites_page_is_told_apart(origin: str, host: str, elsewhere: bool) -> None:
    assert sent_from_elsewhere(origin, host, "https://news.example") is elsewhere


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", "application/json"),
        ("Application/JSON; charset=utf-8", "application/json"),
        ("text/plain;charset=json", "text/plain"),
        ("application/json-seq", "application/json-seq"),
        ("", ""),
    ],
)
def test_only_the_media_type_says_what_a_body_is(content_type: str, kind: str) -> None:
    assert media_type(content_type) == kind


def test_comments_close_when_moderation_closes_them() -> None:
    published = datetime(2024, 3, 20, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    assert comments_close_at(published, 14) == datetime(2024, 4, 3, 7, 30, tzinfo=UTC)
    assert comments_close_at(published.replace(tzinfo=None), 1) == datetime(2024, 3, 21, 9, 30, tzinfo=UTC)
    assert comments_close_at(published, 0) is None
    assert comments_close_at(published, 14) == published + ModerationPolicy().comments_close_after


def test_the_limits_are_the_ones_validation_and_moderation_apply() -> None:
    policy = ModerationPolicy()
    assert FIELD_LIMITS["comment"] == MAX_BODY_CHARS == policy.max_body_chars
    assert FIELD_LIMITS["author"] == MAX_NAME_CHARS == policy.max_name_chars
    assert FIELD_LIMITS["email"] == MAX_EMAIL_CHARS
    assert codes(author="n" * FIELD_LIMITS["author"]) == set()
    assert codes(email="a" * 60 + "@" + "b" * (FIELD_LIMITS["email"] - 65) + ".org") == set()
    assert codes(url="https://a.example/" + "p" * (FIELD_LIMITS["url"] - 18)) == set()
    assert codes(url="https://a.example/" + "p" * (FIELD_LIMITS["url"] - 17)) == {"invalid_url"}


def form_controls(page: str) -> dict[str, str]:
    """name → the control's start tag, in the article page's comment form."""
    form = page[page.index('<form id="commentform"'):page.index("</form>", page.index('<form id="commentform"'))]
    return {m.group(2): m.group(0) for m in re.finditer(r'<(input|textarea)\b[^>]*\bname="([^"]+)"[^>]*>', form)}


def test_the_article_forms_maxlengths_are_the_servers_limits() -> None:
    controls = form_controls(render_article(make_article(), [], [], SITE).decode())
    for name, limit in FIELD_LIMITS.items():
        assert f'maxlength="{limit}"' in controls[name], controls[name]


def test_without_javascript_the_reply_link_opens_the_reply_form() -> None:
    page = render_article(make_article(), [], [make_comment("c1", 1)], SITE).decode()
    link = re.search(r'<a class="comment-reply-link" href="([^"]+)"', page)
    assert link is not None
    assert link.group(1) == "/comments/c1/reply?comment_post_ID=urn%3Anewsml%3Abroadsheet%3A2024%3Aputin-losses"
    assert "replytocom" not in page


def test_the_article_page_tells_its_script_when_comments_close() -> None:
    page = render_article(make_article(), [], [], SiteConfig(base_url=SITE.base_url)).decode()
    respond = re.search(r'<section id="respond"([^>]*)>', page)
    assert respond is not None
    assert respond.group(1) == ' data-published="2024-03-20T09:30:00+00:00" data-close-after-days="14"'
    assert '<p class="comments-closed" id="comments-closed" hidden>Comments are closed.</p>' in page
    never = render_article(make_article(), [], [], SiteConfig(comments_close_after_days=0)).decode()
    assert '<section id="respond">' in never


def test_the_flood_window_has_one_name_in_both_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set once, the publisher's form and the comments pipeline refuse the same second comment."""
    from services.comments.config import CommentsSettings
    from services.publisher.config import PublisherSettings

    monkeypatch.setenv("COMMENTS_FLOOD_SECONDS", "7")
    assert PublisherSettings().comments_flood_seconds == CommentsSettings().comments_flood_seconds == 7
    monkeypatch.setenv("COMMENTS_FLOOD_SECONDS", "0")  # no limit: the publisher must start and take comments
    assert PublisherSettings().comments_flood_seconds == 0
    monkeypatch.delenv("COMMENTS_FLOOD_SECONDS")
    monkeypatch.setenv("COMMENT_FLOOD_SECONDS", "9")  # the publisher's older name still works
    assert PublisherSettings().comments_flood_seconds == 9
