"""The comment form's edge on the publisher: synchronous checks, then one `CommentSubmitted` on the submissions
topic, acknowledged by Kafka before the reader gets an answer.

| route | body | success |
|---|---|---|
| `POST /comments` | form (urlencoded), WordPress field names | `303` to the article's `?pending={id}#comment-pending` |
| `POST /api/comments` | JSON, the same field names | `202 {"id", "status": "pending"}` |
| `POST /comments/{id}/report` | form or JSON, optional `comment_post_ID`, `reason` | `303` back / `202` |
| `GET /comments/{id}/reply?comment_post_ID=` | | the reply form for readers without JavaScript |
| `GET /api/comments/{id}?article_guid=` | | `200 {"id", "status"}`; `404` for an id it has no word of |

`status` is `received` (accepted here in the last two minutes, not decided yet), `awaiting_moderation`, `published`
or `not_published`: what the article page's script asks to keep its author's "Awaiting moderation" note truthful,
so the note goes once the comment is published or turned down.
It tells no more than the author sees anyway: a comment the spam model holds is awaiting moderation like any
other (the answer is no oracle for tuning spam), and no reason is given.

A post carrying another site's `Origin` is refused (`403`) on every route, and the JSON routes take only
`Content-Type: application/json` (`415` otherwise): a cross-site page can send `text/plain` without asking the
browser's CORS preflight, `application/json` it cannot. Readers of the form and of the Report button (HTML)
get HTML pages; JSON clients get JSON.

Checks, in order: the form token (form only: HMAC of the article guid, rendered into the page), the honeypot
`website_url` left empty, name, e-mail, comment of 1..5,000 characters and an http(s) website → `400` (the form
comes back filled with the reader's text); the article known and published → `404` / `410`, its comments still
open → `403` (these pages keep the reader's text but offer no form: posting again cannot help); a double submit of
the same comment → the same success again; the same text by the same author on the article before → `409`;
more than one comment per e-mail or per IP in 15 s → `429`; Kafka not acknowledging within 5 s → `503` (the
comment keeps its id, so sending it again cannot make two).

The comment id is assigned here and is the same for a double submit: it derives from the `idempotency_key`
field when a script filled it, else from the article, the e-mail and the normalized text. The consumer decides
each id once, so neither a double submit nor a redelivery makes two comments.

Redis keys (base namespace, so they do not move when the site is rebuilt into another namespace):
`{ns}:pub:edge:id:{id}` (a submission in flight or just accepted, 120 s), `{ns}:pub:edge:flood:{e|ip}:{hash}`
(15 s), `{ns}:pub:edge:dup:{hash}` (the author's text on the article, 30 days). Addresses appear only as keyed
hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from faststream.kafka import KafkaBroker
from jinja2 import Environment, StrictUndefined

from services.publisher.config import PublisherSettings
from services.publisher.render import Summary, as_utc, asset_path
from services.publisher.store import PublisherStore
from shared import topics
from shared.contracts.comments import CommentReported, CommentSubmitted
from shared.http import Request, Response, Router, json_response
from shared.kafka import json_bytes, publish_from_edge, topic_name
from shared.logging import get_logger
from shared.service import Runtime
from shared.validation import is_valid_author_url, is_valid_email

log = get_logger(__name__)

MAX_BODY_CHARS = 5_000
MAX_NAME_CHARS = 100
MAX_EMAIL_CHARS = 254
MAX_URL_CHARS = 200
MAX_KEY_CHARS = 128
REPLAY_SECONDS = 120
DUPLICATE_SECONDS = 30 * 24 * 3600
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
AUTHOR_STATUS = {"approved": "published", "pending": "awaiting_moderation", "spam": "awaiting_moderation"}
"""A decision as its author reads it; any other (rejected, or hidden after reports) is `not_published`."""
CSP = (
    b"default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
FIELDS = ("comment_post_ID", "comment_parent", "author", "email", "url", "comment", "website_url", "form_token",
          "idempotency_key")


def form_token(secret: str, guid: str) -> str:
    """The token the article page's form carries: deterministic per article, so rendering stays byte-stable."""
    return hmac.new(secret.encode(), f"comment-form:{guid}".encode(), hashlib.sha256).hexdigest()[:32]


def token_valid(secret: str, guid: str, token: str) -> bool:
    return hmac.compare_digest(form_token(secret, guid).encode(), token.strip().encode())


def normalized_text(body: str) -> str:
    """Case and spacing do not make a comment new."""
    return " ".join(body.split()).casefold()


def comment_id(guid: str, email: str, body: str, idempotency_key: str | None = None) -> str:
    """The comment's id: the same for a double submit of one form, different for different comments."""
    if idempotency_key:
        material = f"key\x00{guid}\x00{idempotency_key}"
    else:
        material = f"text\x00{guid}\x00{email.strip().casefold()}\x00{normalized_text(body)}"
    return "c" + hashlib.sha256(material.encode()).hexdigest()[:24]


def is_valid_url(url: str) -> bool:
    return len(url) <= MAX_URL_CHARS and is_valid_author_url(url)


def media_type(content_type: str) -> str:
    """The media type alone: parameters cannot make a body JSON (`text/plain;charset=json` is text)."""
    return content_type.split(";", 1)[0].strip().lower()


def comments_close_at(published: datetime, close_after_days: int) -> datetime | None:
    """The instant an article stops taking comments (None: never), by the comments service's rule, so the form
    refuses at once what moderation would. The article page carries the same two inputs for its script."""
    if close_after_days <= 0:
        return None
    return as_utc(published) + timedelta(days=close_after_days)


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str


@dataclass(frozen=True)
class CommentForm:
    guid: str
    parent_id: str | None
    author: str
    email: str
    url: str | None
    body: str
    honeypot: str
    token: str
    idempotency_key: str | None

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> CommentForm:
        def text(name: str) -> str:
            value = fields.get(name)
            if value is None:
                return ""
            return value if isinstance(value, str) else str(value)

        parent = text("comment_parent").strip()
        key = text("idempotency_key").strip()[:MAX_KEY_CHARS]
        return cls(
            guid=text("comment_post_ID").strip(),
            parent_id=None if parent in ("", "0") else parent,
            author=text("author").strip(),
            email=text("email").strip(),
            url=text("url").strip() or None,
            body=text("comment").replace("\r\n", "\n").strip(),
            honeypot=text("website_url"),
            token=text("form_token"),
            idempotency_key=key or None,
        )

    def refill(self) -> dict[str, str]:
        return {
            "comment_post_ID": self.guid,
            "comment_parent": self.parent_id or "0",
            "author": self.author,
            "email": self.email,
            "url": self.url or "",
            "comment": self.body,
            "form_token": self.token,
            "idempotency_key": self.idempotency_key or "",
        }


def validate(form: CommentForm, *, secret: str | None) -> list[FieldError]:
    """Everything that can be said about a submission without state. `secret=None` skips the form token."""
    errors: list[FieldError] = []
    if not form.guid:
        errors.append(FieldError("comment_post_ID", "missing_article", "The comment is not attached to an article."))
    if secret is not None and not (form.guid and token_valid(secret, form.guid, form.token)):
        errors.append(FieldError(
            "form_token", "invalid_token",
            "This form has expired or did not come from our site. Please reload the article and try again.",
        ))
    if form.honeypot.strip():
        errors.append(FieldError("website_url", "honeypot", "Your comment could not be accepted."))
    if not form.author:
        errors.append(FieldError("author", "missing_name", "Please enter your name."))
    elif len(form.author) > MAX_NAME_CHARS:
        errors.append(FieldError("author", "name_too_long", f"Your name must be at most {MAX_NAME_CHARS} characters."))
    if not form.email:
        errors.append(FieldError("email", "missing_email", "Please enter your email address."))
    elif not is_valid_email(form.email):
        errors.append(FieldError("email", "invalid_email", "Please enter a valid email address."))
    if not form.body:
        errors.append(FieldError("comment", "empty_body", "Please type your comment."))
    elif len(form.body) > MAX_BODY_CHARS:
        errors.append(FieldError(
            "comment", "body_too_long",
            f"Your comment is {len(form.body):,} characters long; the limit is {MAX_BODY_CHARS:,}.",
        ))
    if form.url and not is_valid_url(form.url):
        errors.append(FieldError("url", "invalid_url", "The website must be a link starting with http:// or https://."))
    if form.parent_id is not None and not _ID_RE.match(form.parent_id):
        errors.append(FieldError("comment_parent", "invalid_parent", "The comment you reply to does not exist."))
    return errors


FIELD_LIMITS = {"comment": MAX_BODY_CHARS, "author": MAX_NAME_CHARS, "email": MAX_EMAIL_CHARS, "url": MAX_URL_CHARS}
"""The form's maxlengths, on the article page and here: a browser never lets a reader type what is refused."""

_PAGES = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_PAGES.globals.update(asset_path=asset_path, limits=FIELD_LIMITS)
PAGE = _PAGES.from_string(
    """{% macro state(name) %}
{% if invalid is defined and name in invalid %} aria-invalid="true" aria-describedby="{{ invalid[name] }}"{% endif %}
{% endmacro %}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }} — {{ site_name }}</title>
<link rel="stylesheet" href="{{ asset_path('site.css') }}">
</head>
<body class="page comment-error-page">
<main class="site-main">
<h1>{{ title }}</h1>
{% if errors %}
<div role="alert">
<ul class="comment-errors">
{% for error in errors %}
<li id="error-{{ loop.index }}" data-field="{{ error.field }}" data-code="{{ error.code }}">{{ error.message }}</li>
{% endfor %}
</ul>
</div>
{% endif %}
{% if message %}
<p class="notice-text" role="status">{{ message }}</p>
{% endif %}
{% if back %}
<p><a href="{{ back }}">Back to the article</a></p>
{% endif %}
{% if form %}
<section id="respond">
<h2>{{ "Your reply" if form.comment_parent != "0" else "Your comment" }}</h2>
<form id="commentform" class="comment-form" method="post" action="/comments">
<p class="field"><label for="comment">Comment *</label>
<textarea id="comment" name="comment" rows="8" maxlength="{{ limits.comment }}" required{{ state("comment") }}>
{{- form.comment -}}
</textarea></p>
<p class="field"><label for="author">Name *</label>
<input id="author" name="author" type="text" value="{{ form.author }}" maxlength="{{ limits.author }}"
 autocomplete="name" required{{ state("author") }}></p>
<p class="field"><label for="email">Email *</label>
<input id="email" name="email" type="email" value="{{ form.email }}" maxlength="{{ limits.email }}"
 autocomplete="email" required{{ state("email") }}></p>
<p class="field"><label for="url">Website</label>
<input id="url" name="url" type="url" value="{{ form.url }}" maxlength="{{ limits.url }}"
 autocomplete="url"{{ state("url") }}></p>
<p class="hp"><label for="website_url">Leave this field empty</label>
<input id="website_url" name="website_url" type="text" value="" tabindex="-1" autocomplete="off"></p>
<input type="hidden" name="comment_post_ID" value="{{ form.comment_post_ID }}">
<input type="hidden" name="comment_parent" value="{{ form.comment_parent }}">
<input type="hidden" name="form_token" value="{{ form.form_token }}">
<input type="hidden" name="idempotency_key" value="{{ form.idempotency_key }}">
<p class="form-submit"><button type="submit" id="submit">Post Comment</button></p>
</form>
</section>
{% elif kept %}
<section id="kept-comment">
<h2 id="kept-comment-heading">What you wrote</h2>
<p id="kept-comment-hint">It was not posted. Copy it if you want to keep it.</p>
<textarea id="comment" rows="8" readonly aria-labelledby="kept-comment-heading" aria-describedby="kept-comment-hint">
{{- kept -}}
</textarea>
</section>
{% endif %}
</main>
</body>
</html>
"""
)

TITLES = {
    400: "Your comment needs a correction",
    404: "This article is not open for comments",
    403: "Comments on this article are closed",
    409: "You have already posted this comment",
    410: "This article has been removed",
    415: "Comments are sent as JSON",
    429: "You are commenting too quickly",
}
UNPOSTED = "Your comment could not be posted"
FINAL = frozenset({403, 404, 410})
"""Refusals that posting again cannot change: their page keeps the reader's text but offers no form."""
REPORT_TITLES = {
    400: "Your report could not be read",
    403: "Your report could not be sent",
    404: "This comment cannot be reported",
    415: "Your report could not be read",
    503: "Reports are briefly unavailable",
}
REPORTED = "Thank you for your report"


def sent_from_elsewhere(origin: str, host: str, site_base_url: str) -> bool:
    """A browser's post from another site's page (its `Origin` is neither this host nor the site's address).

    Such a post would make each visitor of that page comment or report from their own address, past the flood
    limits, bans and one-report-per-reader. Clients that send no Origin (scripts, old browsers) are not judged.
    """
    if not origin:
        return False
    if origin == "null":  # sandboxed frames and some redirects: no page of the site sends that
        return True
    sender = urlsplit(origin).netloc.lower()
    return sender not in (host.lower(), urlsplit(site_base_url).netloc.lower())


def reader_ip(peer: str | None, forwarded_for: str, *, trust_proxy: bool) -> str | None:
    """The reader's address, which flood limits, bans and report counting key on.

    Behind a trusted proxy (an ingress controller) every connection comes from the proxy, so the reader is the
    address the proxy appended to X-Forwarded-For: the last one. Addresses before it are whatever the client
    sent, so taking the first would let anyone pick the address they are limited and banned by.
    """
    if trust_proxy:
        appended = forwarded_for.rsplit(",", 1)[-1].strip()
        if appended:
            return appended
    return peer


def reporting_network(ip: str | None) -> str:
    """The network a reader's report counts for: the IPv4 /24 or the IPv6 /48 around the address.

    A single reader easily gets another address in the same network (a mobile reconnect, an IPv6 privacy
    address), rarely one in another network. An address that cannot be read counts as one unknown network.
    """
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class CommentEdge:
    def __init__(
        self,
        settings: PublisherSettings,
        broker: KafkaBroker,
        client: aioredis.Redis,
        store_of: Callable[[], PublisherStore],
    ) -> None:
        self.settings = settings
        self.secret = settings.comment_form_secret.get_secret_value()
        self.broker = broker
        self.redis = client
        self.store_of = store_of
        self.prefix = f"{settings.redis_namespace}:pub:edge"
        self.topic = topic_name(settings, topics.COMMENT_SUBMISSIONS)

    def install(self, router: Router) -> None:
        router.add(["POST"], "/comments", self.post_form, too_large=self.form_too_large)
        router.add(["POST"], "/api/comments", self.post_json)
        router.add(["POST"], "/comments/{id}/report", self.report)
        router.add(["GET"], "/comments/{id}/reply", self.reply_form)
        router.add(["GET"], "/api/comments/{id}", self.status)

    # --- helpers ------------------------------------------------------------------------------------------

    def _hash(self, kind: str, value: str) -> str:
        return hmac.new(self.secret.encode(), f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def client_ip(self, request: Request) -> str | None:
        trusted = self.settings.comment_trust_forwarded_for
        return reader_ip(request.client, request.header("x-forwarded-for"), trust_proxy=trusted)

    def page(
        self,
        status: int,
        errors: list[FieldError],
        form: CommentForm | None = None,
        back: str | None = None,
        title: str = "",
        *,
        kept: str = "",
        message: str = "",
    ) -> Response:
        # Each field in error points to its messages, so a screen reader says why when the reader lands on it.
        invalid: dict[str, str] = {}
        for number, error in enumerate(errors, 1):
            invalid[error.field] = f"{invalid.get(error.field, '')} error-{number}".strip()
        body = PAGE.render(
            invalid=invalid,
            title=title or TITLES.get(status, UNPOSTED),
            site_name=self.settings.site_name,
            errors=errors,
            form=form.refill() if form is not None else None,
            back=back,
            kept=kept,
            message=message,
        ).encode()
        headers = [(b"content-security-policy", CSP), (b"cache-control", b"no-store")]
        if status == 429:
            headers.append((b"retry-after", str(self.settings.comments_flood_seconds).encode()))
        return Response(body, status, headers, b"text/html; charset=utf-8")

    @staticmethod
    def problem(status: int, errors: list[FieldError], title: str = "") -> Response:
        payload = {
            "status": status,
            "error": title or TITLES.get(status, "error"),
            "errors": [{"field": e.field, "code": e.code, "message": e.message} for e in errors],
        }
        response = json_response(payload, status)
        response.headers.append((b"cache-control", b"no-store"))
        return response

    def form_too_large(self, request: Request) -> Response:
        """The router's answer when a form is over `max_form_bytes`: the body was not read, so the reader's
        text cannot come back, but the reader learns why in a page with a way back rather than in JSON.
        The article is where the form was, when the browser said so (same-site pages send the full address)."""
        referer = urlsplit(request.header("referer"))
        ours = bool(referer.netloc) and not sent_from_elsewhere(
            f"{referer.scheme}://{referer.netloc}", request.header("host"), self.settings.site_base_url
        )
        back = referer.path if ours and referer.path.startswith("/") and not referer.path.startswith("//") else None
        error = FieldError(
            "comment", "too_large",
            f"Your comment was too long to be read; the limit is {MAX_BODY_CHARS:,} characters. "
            "Go back, shorten it and post it again.",
        )
        return self.page(413, [error], back=back, title=UNPOSTED)

    # --- submission ---------------------------------------------------------------------------------------

    def _from_elsewhere(self, request: Request) -> bool:
        return sent_from_elsewhere(request.header("origin"), request.header("host"), self.settings.site_base_url)

    async def post_form(self, request: Request) -> Response:
        form = CommentForm.from_fields(request.form())
        if self._from_elsewhere(request):
            error = FieldError("form", "cross_site", "Comments are posted from this site's own pages.")
            return self.page(403, [error], form, None, title=UNPOSTED)
        outcome = await self.submit(form, request, secret=self.secret)
        if outcome.status == 303:
            # The id lets the page's script ask how moderation went (as WordPress's `?unapproved=` does).
            location = f"{outcome.url_path}?pending={outcome.comment_id}#comment-pending".encode()
            return Response(b"", 303, [(b"location", location), (b"cache-control", b"no-store")])
        if outcome.status in FINAL:
            return self.page(outcome.status, outcome.errors, None, outcome.url_path, kept=form.body)
        return self.page(outcome.status, outcome.errors, form, outcome.url_path)

    async def post_json(self, request: Request) -> Response:
        if self._from_elsewhere(request):
            error = FieldError("body", "cross_site", "Comments are posted from this site's own pages.")
            return self.problem(403, [error], title=UNPOSTED)
        if media_type(request.header("content-type")) != JSON_MEDIA_TYPE:
            message = "Send the comment with Content-Type: application/json."
            error = FieldError("body", "unsupported_media_type", message)
            return self.problem(415, [error])
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self.problem(400, [FieldError("body", "not_json", "The body must be a JSON object.")])
        if not data.get("idempotency_key") and request.header("idempotency-key"):
            data = {**data, "idempotency_key": request.header("idempotency-key")}
        form = CommentForm.from_fields(data)
        outcome = await self.submit(form, request, secret=None)
        if outcome.status == 303:
            return json_response({"id": outcome.comment_id, "status": "pending"}, 202)
        return self.problem(outcome.status, outcome.errors)

    async def _closed(self, store: PublisherStore, guid: str) -> bool:
        """Say so at once rather than promise moderation: the comments service would reject it as closed."""
        if self.settings.comments_close_after_days <= 0:
            return False
        raw = await store.redis.get(store.article_key(guid, "summary"))
        if raw is None:
            return False
        closes_at = comments_close_at(Summary.from_json(raw).date_published, self.settings.comments_close_after_days)
        return closes_at is not None and datetime.now(UTC) >= closes_at

    async def submit(self, form: CommentForm, request: Request, *, secret: str | None) -> Outcome:
        errors = validate(form, secret=secret)
        store = self.store_of()
        meta = await store.meta(form.guid) if form.guid else {}
        status = meta.get("status")
        url_path = meta.get("url_path") or None
        if errors:
            return Outcome(400, errors, url_path if status == "published" else None)
        if status == "killed":
            return Outcome(410, [FieldError("comment_post_ID", "article_killed", "This article has been removed.")])
        if status != "published" or url_path is None:
            error = FieldError("comment_post_ID", "article_unknown", "This article is not open for comments.")
            return Outcome(404, [error])
        if await self._closed(store, form.guid):
            error = FieldError("comment_post_ID", "comments_closed", "Comments on this article are closed.")
            return Outcome(403, [error], url_path)
        if form.parent_id is not None:
            parent_depth = await self._approved_depth(store, form.guid, form.parent_id)
            if parent_depth is None:
                message = "The comment you reply to is not on this article."
                return Outcome(400, [FieldError("comment_parent", "parent_unknown", message)], url_path)
            if parent_depth >= self.settings.comments_max_reply_depth:
                message = "This thread is as deep as replies go: reply to an earlier comment in it."
                return Outcome(400, [FieldError("comment_parent", "thread_too_deep", message)], url_path)

        cid = comment_id(form.guid, form.email, form.body, form.idempotency_key)
        id_key = f"{self.prefix}:id:{cid}"
        replay = not await self.redis.set(id_key, "1", nx=True, ex=REPLAY_SECONDS)
        ip = self.client_ip(request)
        email_key = f"{self.prefix}:flood:e:{self._hash('email', form.email.casefold())}"
        ip_key = f"{self.prefix}:flood:ip:{self._hash('ip', ip)}" if ip else None
        text_of_author = "\x00".join((form.guid, form.email.casefold(), normalized_text(form.body)))
        dup_key = f"{self.prefix}:dup:{self._hash('dup', text_of_author)}"
        taken: list[str] = []
        if not replay:
            if await self.redis.exists(dup_key):
                await self.redis.delete(id_key)
                error = FieldError("comment", "duplicate", "You have already posted this comment on this article.")
                return Outcome(409, [error], url_path)
            flood_keys = (email_key, ip_key) if self.settings.comments_flood_seconds > 0 else ()
            for key in filter(None, flood_keys):
                if await self.redis.set(key, cid, nx=True, ex=self.settings.comments_flood_seconds):
                    taken.append(key)
                    continue
                await self.redis.delete(id_key, *taken)
                error = FieldError(
                    "comment", "flood",
                    f"Please wait {self.settings.comments_flood_seconds} seconds between comments.",
                )
                return Outcome(429, [error], url_path)
        event = CommentSubmitted(
            id=cid,
            article_guid=form.guid,
            parent_id=form.parent_id,
            author=form.author,
            email=form.email,
            url=form.url,
            body=form.body,
            ip=ip,
            user_agent=request.header("user-agent")[:300] or None,
            submitted_at=datetime.now(UTC),
        )
        try:
            await publish_from_edge(
                self.broker, json_bytes(event), topic=self.topic, key=form.guid.encode(),
                headers={"content-type": "application/json"},
            )
        except Exception as exc:  # unreachable or slow broker (TimeoutError): the same comment id on a retry
            log.warning("comment not produced", comment=cid, guid=form.guid, error=repr(exc))
            if not replay:
                await self.redis.delete(id_key, *taken)
            error = FieldError("comment", "unavailable", "Comments are briefly unavailable. Please try again.")
            return Outcome(503, [error], url_path)
        await self.redis.set(dup_key, cid, ex=DUPLICATE_SECONDS)
        log.info("comment submitted", comment=cid, guid=form.guid, replay=replay)
        return Outcome(303, [], url_path, cid)

    async def _shown(self, store: PublisherStore, guid: str, cid: str) -> dict[str, Any] | None:
        """The comment's latest decision if it is shown on the article (the publisher's copy), else None."""
        raw = cast(bytes | None, await store.redis.hget(store.article_key(guid, "comments"), cid))
        if raw is None:
            return None
        try:
            decided = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(decided, dict) or decided.get("status") != "approved":
            return None
        return decided

    async def _approved_depth(self, store: PublisherStore, guid: str, cid: str) -> int | None:
        """The depth of the comment if it is shown on the article, else None. Known here, a reply too deep is
        refused with its reason instead of promised moderation."""
        decided = await self._shown(store, guid, cid)
        if decided is None:
            return None
        depth = decided.get("depth", 0)
        return depth if isinstance(depth, int) else 0

    async def status(self, request: Request) -> Response:
        """How moderation went, in the words its author may read (see the module docstring)."""
        cid = request.params["id"]
        guid = (request.query.get("article_guid") or request.query.get("comment_post_ID") or [""])[0].strip()
        unknown = FieldError("id", "unknown_comment", "No comment with this id on this article.")
        if not guid or not _ID_RE.match(cid):
            return self.problem(404, [unknown], title="unknown comment")
        store = self.store_of()
        raw = cast(bytes | None, await store.redis.hget(store.article_key(guid, "comments"), cid))
        try:
            decided = json.loads(raw) if raw is not None else None
        except ValueError:
            decided = None
        if isinstance(decided, dict):
            status = AUTHOR_STATUS.get(str(decided.get("status")), "not_published")
        elif await self.redis.exists(f"{self.prefix}:id:{cid}"):
            # Just accepted: the page asks right after the form's redirect, usually before the decision is made.
            status = "received"
        else:
            return self.problem(404, [unknown], title="unknown comment")
        response = json_response({"id": cid, "status": status}, 200)
        response.headers.append((b"cache-control", b"no-store"))
        return response

    # --- reports ------------------------------------------------------------------------------------------

    def reader(self, request: Request) -> str:
        """Who reports, for the rule that three readers' reports hide a comment: the reader's network.

        Everything else a request carries (a cookie, the browser's name) is the client's to choose, so one person
        could report three times as three readers and hide any comment alone. Readers sharing a network (an
        office, a campus) count as one; the comment then waits for other networks' reports or a moderator.
        """
        return self._hash("reader-network", reporting_network(self.client_ip(request)))

    async def report(self, request: Request) -> Response:
        kind = media_type(request.header("content-type"))
        is_json = kind == JSON_MEDIA_TYPE
        url_path: str | None = None

        def refused(status: int, error: FieldError) -> Response:
            """The Report button is a form: its reader gets a page with a way back; a script gets JSON."""
            if is_json:
                return self.problem(status, [error], title=REPORT_TITLES[status])
            return self.page(status, [error], back=url_path, title=REPORT_TITLES[status])

        if self._from_elsewhere(request):
            return refused(403, FieldError("form", "cross_site", "Reports are sent from this site's own pages."))
        if not is_json and kind not in ("", FORM_MEDIA_TYPE):
            message = "Reports are sent from the comment's Report button, or as JSON."
            return refused(415, FieldError("body", "unsupported_media_type", message))
        try:
            fields: Any = request.json() if is_json else request.form()
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return refused(400, FieldError("body", "not_json", "The body must be a JSON object."))
        cid = request.params["id"]
        if not _ID_RE.match(cid):
            return refused(404, FieldError("id", "unknown_comment", "This comment does not exist."))
        guid = str(fields.get("comment_post_ID") or fields.get("article_guid") or "").strip() or None
        reason = str(fields.get("reason") or "").strip()[:300] or None
        if guid is not None:
            store = self.store_of()
            meta = await store.meta(guid)
            published = meta.get("status") == "published"
            url_path = (meta.get("url_path") or None) if published else None
            if not published or await self._approved_depth(store, guid, cid) is None:
                message = "This comment is not shown on the article any more, so there is nothing to report."
                return refused(404, FieldError("id", "unknown_comment", message))
        event = CommentReported(
            id=cid, article_guid=guid, reporter=self.reader(request), reason=reason, reported_at=datetime.now(UTC)
        )
        try:
            await publish_from_edge(
                self.broker, json_bytes(event), topic=self.topic, key=(guid or cid).encode(),
                headers={"content-type": "application/json"},
            )
        except Exception as exc:  # a retry is harmless: a reader's report counts once
            log.warning("report not produced", comment=cid, guid=guid, error=repr(exc))
            return refused(503, FieldError("id", "unavailable", "Reports are briefly unavailable. Please try again."))
        if is_json:
            return json_response({"id": cid, "status": "reported"}, 202)
        if url_path:
            return Response(b"", 303, [(b"location", f"{url_path}#comments".encode()), (b"cache-control", b"no-store")])
        return self.page(200, [], title=REPORTED, message="The moderators will look at the comment.")

    # --- replies without JavaScript -----------------------------------------------------------------------

    async def reply_form(self, request: Request) -> Response:
        """The Reply link's page: the form with `comment_parent` filled in. The article page is pre-rendered
        and cannot answer `?replytocom=`; a reader without JavaScript would otherwise post a top-level comment
        believing it a reply. The same checks as a posted reply say at once what could not be posted."""
        cid = request.params["id"]
        guid = (request.query.get("comment_post_ID") or [""])[0].strip()
        store = self.store_of()
        meta = await store.meta(guid) if guid else {}
        url_path = meta.get("url_path") or None
        unknown = FieldError("comment_parent", "parent_unknown", "The comment you reply to is not on this article.")
        if meta.get("status") != "published" or url_path is None or not _ID_RE.match(cid):
            return self.page(404, [unknown], title="This comment cannot be answered")
        if await self._closed(store, guid):
            error = FieldError("comment_post_ID", "comments_closed", "Comments on this article are closed.")
            return self.page(403, [error], back=url_path)
        parent = await self._shown(store, guid, cid)
        if parent is None:
            return self.page(404, [unknown], back=url_path, title="This comment cannot be answered")
        back = f"{url_path}#comment-{cid}"
        depth = parent.get("depth", 0)
        if isinstance(depth, int) and depth >= self.settings.comments_max_reply_depth:
            message = "This thread is as deep as replies go: reply to an earlier comment in it."
            error = FieldError("comment_parent", "thread_too_deep", message)
            return self.page(400, [error], back=back, title="This comment cannot be answered")
        author = str(parent.get("author") or "a reader")
        form = CommentForm(
            guid=guid, parent_id=cid, author="", email="", url=None, body="", honeypot="",
            token=form_token(self.secret, guid), idempotency_key=None,
        )
        return self.page(200, [], form, back, title=f"Reply to {author}")


@dataclass(frozen=True)
class Outcome:
    status: int
    errors: list[FieldError]
    url_path: str | None = None
    comment_id: str | None = None


def install_comment_edge(
    runtime: Runtime, settings: PublisherSettings, store_of: Callable[[], PublisherStore]
) -> CommentEdge:
    """Put the comment routes on the publisher's router; `store_of` gives the store readers are served from."""
    edge = CommentEdge(settings, runtime.broker, runtime.redis, store_of)
    edge.install(runtime.router)
    return edge

