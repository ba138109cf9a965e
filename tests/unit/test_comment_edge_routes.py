"""The comment edge's routes as a browser or a script meets them, on an in-memory Redis and broker: who may post,
what each refusal looks like, and the reply page for readers without JavaScript."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote, urlencode

import pytest

from services.publisher.comment_edge import FIELD_LIMITS, CommentEdge, form_token, reporting_network
from services.publisher.config import PublisherSettings
from services.publisher.render import Summary, asset_path
from shared.contracts.articles import Term
from shared.http import Request, Response, Router

SECRET = "unit-secret"
SITE = "https://news.example"
GUID = "urn:newsml:example.org:20240320:harbour"
URL_PATH = "/business/2024/03/20/harbour-strike"
APPROVED = "c" + "a" * 24
EVIL = "https://evil.example"


class FakeRedis:
    """The few commands the edge sends, over dictionaries."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.hashes: dict[str, dict[str, bytes]] = {}

    async def get(self, key: str) -> Any:
        return self.values.get(key)

    async def set(self, key: str, value: Any, nx: bool = False, ex: int | None = None) -> bool | None:
        if nx and key in self.values:
            return None
        self.values[key] = value
        return True

    async def exists(self, key: str) -> int:
        return int(key in self.values)

    async def delete(self, *keys: str) -> int:
        return sum(self.values.pop(key, None) is not None for key in keys)

    async def hget(self, key: str, name: str) -> bytes | None:
        return self.hashes.get(key, {}).get(name)


@dataclass
class FakeStore:
    redis: FakeRedis
    metas: dict[str, dict[str, str]] = field(default_factory=dict)

    def article_key(self, guid: str, part: str) -> str:
        return f"art:{guid}:{part}"

    async def meta(self, guid: str) -> dict[str, str]:
        return self.metas.get(guid, {})


@dataclass
class FakeBroker:
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    async def publish(self, value: bytes, *, topic: str, key: bytes, headers: dict[str, str]) -> None:
        self.sent.append((topic, value))


@dataclass
class Site:
    edge: CommentEdge
    store: FakeStore
    broker: FakeBroker


def publish(store: FakeStore, guid: str, *, days_ago: float, comments: dict[str, dict[str, Any]]) -> None:
    published = datetime.now(UTC) - timedelta(days=days_ago)
    summary = Summary(
        guid=guid, version=1, url_path=URL_PATH, headline="Harbour strike", excerpt="Dockers walk out.",
        section=Term(code="business", name="Business"), authors=(), tags=(), date_published=published,
        date_modified=published, picture=None, language="en",
    )
    store.metas[guid] = {"status": "published", "url_path": URL_PATH}
    store.redis.values[store.article_key(guid, "summary")] = summary.to_json().encode()
    store.redis.hashes[store.article_key(guid, "comments")] = {
        cid: json.dumps({"status": "approved", "author": "Anna <b>", **decided}).encode()
        for cid, decided in comments.items()
    }


@pytest.fixture
def site() -> Site:
    redis = FakeRedis()
    store = FakeStore(redis)
    broker = FakeBroker()
    publish(store, GUID, days_ago=1, comments={APPROVED: {"depth": 0}, "deep": {"depth": 5}})
    settings = PublisherSettings(comment_form_secret=SECRET, site_base_url=SITE)  # type: ignore[arg-type]
    edge = CommentEdge(settings, cast(Any, broker), cast(Any, redis), lambda: cast(Any, store))
    return Site(edge, store, broker)


def request(
    method: str, path: str, body: bytes = b"", *, query: str = "", params: dict[str, str] | None = None,
    **headers: str,
) -> Request:
    named = {name.replace("_", "-"): value for name, value in {"host": "news.example", **headers}.items()}
    return Request(method, path, query.encode(), named, "203.0.113.9", body, params or {})


def comment_fields(**changes: str) -> dict[str, str]:
    return {
        "comment_post_ID": GUID, "comment_parent": "0", "author": "Vera", "email": "vera@example.org", "url": "",
        "comment": "Hello from the harbour.", "website_url": "", "form_token": form_token(SECRET, GUID), **changes,
    }


def form_post(**changes: str) -> Request:
    body = urlencode(comment_fields(**changes)).encode()
    return request("POST", "/comments", body, content_type="application/x-www-form-urlencoded")


def html(response: Response) -> str:
    assert response.content_type.startswith(b"text/html"), response.body[:200]
    return response.body.decode()


def back_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]*)">Back to the article</a>', page)
    return found.group(1) if found else None


# --- 1: another site cannot post through its visitors' browsers ---------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/x-www-form-urlencoded"])
async def test_the_json_api_refuses_posts_from_another_sites_page(site: Site, content_type: str) -> None:
    body = json.dumps(comment_fields(form_token="")).encode()
    answer = await site.edge.post_json(request("POST", "/api/comments", body, origin=EVIL, content_type=content_type))
    assert answer.status == 403
    assert json.loads(answer.body)["errors"][0]["code"] == "cross_site"
    assert site.broker.sent == []


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=json", "", "application/jsonx"])
async def test_the_json_api_takes_only_json_so_cross_site_browsers_must_preflight(
    site: Site, content_type: str
) -> None:
    body = json.dumps(comment_fields(form_token="")).encode()
    answer = await site.edge.post_json(request("POST", "/api/comments", body, content_type=content_type))
    assert answer.status == 415
    assert site.broker.sent == []


async def test_the_json_api_accepts_json_with_parameters_and_its_own_origin(site: Site) -> None:
    body = json.dumps(comment_fields(form_token="")).encode()
    answer = await site.edge.post_json(request(
        "POST", "/api/comments", body, origin=SITE, content_type="Application/JSON; charset=utf-8"
    ))
    assert answer.status == 202, answer.body
    assert len(site.broker.sent) == 1


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain;charset=json", b'{"comment_post_ID": "%s"}' % GUID.encode()),
        ("text/plain", b'{"comment_post_ID": "%s"}' % GUID.encode()),
        ("application/json", b'{"comment_post_ID": "%s"}' % GUID.encode()),
        ("application/x-www-form-urlencoded", b"comment_post_ID=" + quote(GUID).encode()),
    ],
)
async def test_reports_from_another_sites_page_are_refused_whatever_the_body(
    site: Site, content_type: str, body: bytes
) -> None:
    answer = await site.edge.report(request(
        "POST", f"/comments/{APPROVED}/report", body, params={"id": APPROVED}, origin=EVIL, content_type=content_type
    ))
    assert answer.status == 403
    assert site.broker.sent == []


async def test_a_report_that_is_neither_a_form_nor_json_is_refused(site: Site) -> None:
    body = b"comment_post_ID=" + quote(GUID).encode()
    answer = await site.edge.report(request(
        "POST", f"/comments/{APPROVED}/report", body, params={"id": APPROVED}, content_type="text/plain"
    ))
    assert answer.status == 415
    assert site.broker.sent == []


async def test_reports_from_the_sites_own_pages_and_scripts_still_count(site: Site) -> None:
    form = b"comment_post_ID=" + quote(GUID).encode()
    button = await site.edge.report(request(
        "POST", f"/comments/{APPROVED}/report", form, params={"id": APPROVED}, origin=SITE,
        content_type="application/x-www-form-urlencoded",
    ))
    assert (button.status, dict(button.headers)[b"location"]) == (303, f"{URL_PATH}#comments".encode())
    script = await site.edge.report(request(
        "POST", f"/comments/{APPROVED}/report", json.dumps({"comment_post_ID": GUID}).encode(),
        params={"id": APPROVED}, content_type="application/json",
    ))
    assert script.status == 202
    assert len(site.broker.sent) == 2


def report_from(ip: str, **headers: str) -> Request:
    body = json.dumps({"comment_post_ID": GUID}).encode()
    named = {"host": "news.example", "content-type": "application/json", **headers}
    return Request("POST", f"/comments/{APPROVED}/report", b"", named, ip, body, {"id": APPROVED})


async def test_one_person_cannot_report_as_three_readers(site: Site) -> None:
    """A reader is their network: another browser name, cookie or address next door is the same reader."""
    same_person = [
        report_from("203.0.113.9", user_agent="Firefox"),
        report_from("203.0.113.9", user_agent="Chrome", cookie="bs_reader=forgedreader0001"),
        report_from("203.0.113.200", user_agent="Safari"),
    ]
    others = [report_from("198.51.100.7"), report_from("2001:db8:1:2::1"), report_from("::ffff:192.0.2.1")]
    for answer in [await site.edge.report(r) for r in [*same_person, *others]]:
        assert answer.status == 202
    reporters = [json.loads(value)["reporter"] for _, value in site.broker.sent]
    assert len(set(reporters[:3])) == 1
    assert len(set(reporters)) == 4


def test_reporting_networks() -> None:
    assert reporting_network("203.0.113.9") == reporting_network("203.0.113.250") == "203.0.113.0/24"
    assert reporting_network("203.0.114.9") != reporting_network("203.0.113.9")
    assert reporting_network("2001:db8:1:2::1") == reporting_network("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    assert reporting_network("::ffff:192.0.2.1") == "192.0.2.0/24"
    assert reporting_network(None) == reporting_network("not an address") == "unknown"


# --- 2: closed articles --------------------------------------------------------------------------------------


async def test_a_comment_on_a_closed_article_gets_no_form_again_but_keeps_its_text(site: Site) -> None:
    publish(site.store, GUID, days_ago=15, comments={})
    answer = await site.edge.post_form(form_post(comment="Too late, but <kept>."))
    page = html(answer)
    assert answer.status == 403
    assert "Comments on this article are closed." in page
    assert "<form" not in page and 'name="comment"' not in page
    assert "Too late, but &lt;kept&gt;." in page
    assert back_link(page) == URL_PATH


async def test_comments_close_at_the_instant_moderation_closes_them(site: Site) -> None:
    publish(site.store, GUID, days_ago=14 - 1 / 24, comments={})
    assert (await site.edge.post_form(form_post())).status == 303
    publish(site.store, GUID, days_ago=14, comments={})
    assert (await site.edge.post_form(form_post(comment="A second one."))).status == 403


# --- 3: an oversized form ------------------------------------------------------------------------------------


def test_an_oversized_form_is_told_in_a_page_with_a_way_back(site: Site) -> None:
    same_site = site.edge.form_too_large(request("POST", "/comments", referer=f"{SITE}{URL_PATH}?x=1"))
    page = html(same_site)
    assert same_site.status == 413
    assert "the limit is 5,000 characters" in page
    assert back_link(page) == URL_PATH
    for referer in (f"{EVIL}{URL_PATH}", "", f"{SITE}//evil.example/x"):
        assert back_link(html(site.edge.form_too_large(request("POST", "/comments", referer=referer)))) is None


async def test_the_router_answers_an_oversized_form_with_that_page(site: Site) -> None:
    """Through the router, which refuses the body before any handler reads it: still the page, not JSON."""
    router = Router("publisher", max_body_bytes=1024)
    site.edge.install(router)
    sent: list[dict[str, Any]] = []
    body = b"comment=" + b"x" * 4096
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/comments", "query_string": b"",
        "headers": [
            (b"content-type", b"application/x-www-form-urlencoded"), (b"referer", f"{SITE}{URL_PATH}".encode()),
        ],
    }
    await router(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    page = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    assert start["status"] == 413
    assert dict(start["headers"])[b"content-type"].startswith(b"text/html")
    assert "the limit is 5,000 characters" in page
    api = Router("publisher", max_body_bytes=1024)
    site.edge.install(api)
    assert api.routes[1].too_large is None  # the JSON API keeps its JSON answer


# --- 4: the Report button without JavaScript -----------------------------------------------------------------


async def test_a_failed_report_button_answers_a_page_in_report_words(site: Site) -> None:
    form = b"comment_post_ID=" + quote(GUID).encode()
    unknown = await site.edge.report(request(
        "POST", "/comments/c0000/report", form, params={"id": "c0000"},
        content_type="application/x-www-form-urlencoded",
    ))
    page = html(unknown)
    assert unknown.status == 404
    assert "This comment cannot be reported" in page
    assert "comments" not in page.split("<title>")[1].split("</title>")[0].lower()
    assert "open for comments" not in page
    assert back_link(page) == URL_PATH

    forged = await site.edge.report(request(
        "POST", f"/comments/{APPROVED}/report", form, params={"id": APPROVED}, origin=EVIL,
        content_type="application/x-www-form-urlencoded",
    ))
    assert forged.status == 403 and "Your report could not be sent" in html(forged)


async def test_a_failed_json_report_stays_json_in_report_words(site: Site) -> None:
    answer = await site.edge.report(request(
        "POST", "/comments/c0000/report", json.dumps({"comment_post_ID": GUID}).encode(), params={"id": "c0000"},
        content_type="application/json",
    ))
    assert answer.status == 404
    assert json.loads(answer.body)["error"] == "This comment cannot be reported"


# --- 5 and 6: the correction page -----------------------------------------------------------------------------


async def test_a_form_to_correct_links_back_to_its_article_and_the_versioned_stylesheet(site: Site) -> None:
    answer = await site.edge.post_form(form_post(author=""))
    page = html(answer)
    assert answer.status == 400
    assert "Please enter your name." in page
    assert back_link(page) == URL_PATH
    assert f'<link rel="stylesheet" href="{asset_path("site.css")}">' in page
    assert 'href="/static/site.css"' not in page
    for name, limit in FIELD_LIMITS.items():
        assert re.search(rf'name="{name}"[^>]*maxlength="{limit}"', page), name


async def test_each_field_to_correct_points_to_its_messages(site: Site) -> None:
    """A screen reader landing on a field in error says why; fields without one are not marked."""
    page = html(await site.edge.post_form(form_post(author="", email="not-an-address")))
    messages = dict(re.findall(r'<li id="(error-\d+)" data-field="[^"]*" data-code="[^"]*">([^<]*)</li>', page))
    for name in ("author", "email"):
        tag = re.search(rf'<input id="{name}"[^>]*>', page)
        assert tag and 'aria-invalid="true"' in tag.group(), name
        described = re.search(r'aria-describedby="([^"]*)"', tag.group())
        assert described and all(ref in messages for ref in described.group(1).split()), name
    assert "name" in " ".join(messages.values()).lower()
    for unmarked in (re.search(r'<input id="url"[^>]*>', page), re.search(r"<textarea[^>]*>", page)):
        assert unmarked and "aria-invalid" not in unmarked.group()


async def test_a_form_to_correct_for_an_unknown_article_has_no_way_back(site: Site) -> None:
    answer = await site.edge.post_form(form_post(comment_post_ID="urn:unknown", author=""))
    assert answer.status == 400 and back_link(html(answer)) is None


# --- 7: replying without JavaScript --------------------------------------------------------------------------


def reply_request(cid: str, guid: str = GUID) -> Request:
    return request("GET", f"/comments/{cid}/reply", query=urlencode({"comment_post_ID": guid}), params={"id": cid})


async def test_the_reply_link_opens_a_form_that_answers_the_comment(site: Site) -> None:
    answer = await site.edge.reply_form(reply_request(APPROVED))
    page = html(answer)
    assert answer.status == 200
    assert "Reply to Anna &lt;b&gt;" in page
    assert f'<input type="hidden" name="comment_parent" value="{APPROVED}">' in page
    assert f'<input type="hidden" name="comment_post_ID" value="{GUID}">' in page
    assert f'<input type="hidden" name="form_token" value="{form_token(SECRET, GUID)}">' in page
    assert back_link(page) == f"{URL_PATH}#comment-{APPROVED}"
    assert dict(answer.headers)[b"cache-control"] == b"no-store"

    posted = await site.edge.post_form(form_post(comment_parent=APPROVED))
    assert posted.status == 303
    assert json.loads(site.broker.sent[0][1])["parent_id"] == APPROVED


async def test_the_reply_page_says_at_once_what_could_not_be_posted(site: Site) -> None:
    too_deep = await site.edge.reply_form(reply_request("deep"))
    assert too_deep.status == 400 and "as deep as replies go" in html(too_deep)
    assert "<form" not in html(too_deep)
    for unknown in (reply_request("c-none"), reply_request(APPROVED, "urn:unknown"), reply_request("../x")):
        answer = await site.edge.reply_form(unknown)
        assert answer.status == 404 and "<form" not in html(answer)
    publish(site.store, GUID, days_ago=20, comments={APPROVED: {"depth": 0}})
    closed = await site.edge.reply_form(reply_request(APPROVED))
    assert closed.status == 403 and "<form" not in html(closed)


# --- the author's view of moderation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "told"),
    [("approved", "published"), ("pending", "awaiting_moderation"), ("spam", "awaiting_moderation"),
     ("rejected", "not_published"), ("reported", "not_published")],
)
async def test_the_author_learns_how_moderation_went_and_nothing_more(site: Site, decision: str, told: str) -> None:
    comments = site.store.redis.hashes[site.store.article_key(GUID, "comments")]
    comments["c" + "b" * 24] = json.dumps({"status": decision, "reasons": ["spam_model", "banned_word"]}).encode()
    for query in (f"article_guid={quote(GUID)}", f"comment_post_ID={quote(GUID)}"):
        answer = await site.edge.status(request("GET", "/api/comments/x", query=query, params={"id": "c" + "b" * 24}))
        assert answer.status == 200
        assert json.loads(answer.body) == {"id": "c" + "b" * 24, "status": told}
        assert (b"cache-control", b"no-store") in answer.headers


@pytest.mark.parametrize(
    ("cid", "query"),
    [("c" + "d" * 24, f"article_guid={quote(GUID)}"), (APPROVED, "article_guid=urn%3Aother"), (APPROVED, ""),
     ("../x", f"article_guid={quote(GUID)}")],
)
async def test_a_comment_without_a_decision_on_that_article_is_unknown(site: Site, cid: str, query: str) -> None:
    answer = await site.edge.status(request("GET", "/api/comments/x", query=query, params={"id": cid}))
    assert answer.status == 404
    assert json.loads(answer.body)["errors"][0]["code"] == "unknown_comment"


async def test_the_form_sends_its_author_back_with_the_comment_id_which_reads_as_received(site: Site) -> None:
    answer = await site.edge.post_form(form_post())
    location = dict(answer.headers)[b"location"].decode()
    assert answer.status == 303
    assert location.startswith(f"{URL_PATH}?pending=c") and location.endswith("#comment-pending")
    [(_, value)] = site.broker.sent
    cid = location.partition("=")[2].partition("#")[0]
    assert json.loads(value)["id"] == cid
    # Asked before the decision arrives (what the page does at once), the comment is received, not unknown.
    asked = await site.edge.status(request("GET", "/api/comments/x", query=f"article_guid={quote(GUID)}",
                                           params={"id": cid}))
    assert (asked.status, json.loads(asked.body)) == (200, {"id": cid, "status": "received"})
