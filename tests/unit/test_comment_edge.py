"""The comment form's edge without Kafka or Redis: token, honeypot, id derivation and validation messages."""

from __future__ import annotations

from typing import Any

import pytest

from services.comments.handlers import body_to_html
from services.publisher.comment_edge import (
    MAX_BODY_CHARS,
    PAGE,
    CommentForm,
    comment_id,
    form_token,
    is_valid_email,
    is_valid_url,
    reader_ip,
    sent_from_elsewhere,
    token_valid,
    validate,
)

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
    html = PAGE.render(title="t", site_name="Broadsheet", errors=errors, form=form.refill(), back="/a")
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
