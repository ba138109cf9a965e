"""The reader's HTTP side: answers every GET from pages already in Redis (through the in-memory `PageCache`).

Nothing here renders or reaches Kafka. Each page is turned once into a `PreparedPage` holding the complete
HTTP responses (status line, headers and body; plain and gzip; GET and HEAD; 304), so a cached request costs a
dictionary lookup and one write. Conditional requests (ETag, If-None-Match → 304), precompressed gzip bodies,
and cache and security headers are part of those prepared bytes; only the `Date` header changes by the second,
and the server splices it in (`DateLine`).
"""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs

from redis.exceptions import RedisError

from services.publisher.pagecache import PageCache
from services.publisher.render import ASSET_CONTENT_TYPES, asset_bytes, asset_version, render_error
from services.publisher.site import SiteConfig
from services.publisher.store import page_body
from shared.http import Receive, Scope, Send, method_not_allowed
from shared.logging import get_logger
from shared.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS, labelled

log = get_logger(__name__)

CSP = (
    b"default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
)
PAGE_CACHE_CONTROL = b"public, max-age=30, stale-while-revalidate=300"
ERROR_CACHE_CONTROL = b"public, max-age=10"
ASSET_CACHE_CONTROL = b"public, max-age=31536000, immutable"
UNVERSIONED_ASSET_CACHE_CONTROL = b"public, no-cache"
"""An asset asked for without its own content hash (none, or another one: a page of the next or the last deploy
reaching this replica mid-rollout) is revalidated on every use, never kept a year under a name it does not own."""
NO_BODY_STATUSES = frozenset({204, 304})
"""Answers that carry no Content-Length (RFC 9110 §8.6): a 304 would otherwise claim the body it has not."""


def normalize_path(path: str) -> str:
    """`/world/2024/03/20/slug/` and `/world/2024/03/20/slug` are one page."""
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


class DateLine:
    """The `Date` header line (RFC 9110 §6.6.1) for the current second, formatted once per second: the prepared
    answers stay the same bytes, and the server adds this line to each as it writes it."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def current(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._line = b"date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
            self._second = second
        return self._line


@dataclass(frozen=True)
class Variant:
    """One ready answer: the ASGI status and headers, and the same as raw HTTP/1.1 bytes."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    raw_lines: bytes
    """Status line and headers, each ending in CRLF, without the blank line that ends the head: the server
    adds the `Date` (and `Connection: close`) before it."""

    @classmethod
    def of(cls, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, length: int | None = None) -> Variant:
        if status not in NO_BODY_STATUSES:
            headers = [*headers, (b"content-length", str(len(body) if length is None else length).encode())]
        raw = _status_line(status) + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
        return cls(status, tuple(headers), body, raw)


class PreparedPage:
    """Every answer a page can give, computed once when the page enters the cache."""

    __slots__ = (
        "etag", "gzip", "gzip_etag", "gzip_head", "gzip_not_modified", "head", "not_modified", "plain", "route",
        "size", "status",
    )

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        gz: bytes = b"",
        content_type: bytes = b"text/html; charset=utf-8",
        etag: bytes = b"",
        last_modified: bytes = b"",
        location: bytes = b"",
        cache_control: bytes | None = None,
        route: str = "page",
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        if cache_control is None:
            cache_control = PAGE_CACHE_CONTROL if status in (200, 301) else ERROR_CACHE_CONTROL
        headers = [(b"cache-control", cache_control), *COMMON_HEADERS, *extra_headers]
        if last_modified:
            headers.append((b"last-modified", last_modified))
        if location:
            headers.append((b"location", location))
        if gz:
            headers.append((b"vary", b"Accept-Encoding"))
        # The gzip bytes are another representation, so they get their own strong tag: a cache revalidating its
        # gzip copy must not be told that it is still what a client refusing gzip should get.
        gzip_etag = etag[:-1] + b'-gz"' if etag.endswith(b'"') else etag
        self.status = status
        self.etag = etag
        self.gzip_etag = gzip_etag
        self.route = route
        plain_headers = [*headers, (b"etag", etag)] if etag else headers
        gzip_headers = [*headers, (b"etag", gzip_etag)] if etag else headers
        typed = [*plain_headers, (b"content-type", content_type)]
        self.plain = Variant.of(status, typed, body)
        self.head = Variant.of(status, typed, b"", length=len(body))
        zipped = [*gzip_headers, (b"content-type", content_type), (b"content-encoding", b"gzip")]
        self.gzip = Variant.of(status, zipped, gz) if gz else None
        self.gzip_head = Variant.of(status, zipped, b"", length=len(gz)) if gz else None
        revalidates = status == 200 and bool(etag)
        self.not_modified = Variant.of(304, plain_headers, b"") if revalidates else None
        self.gzip_not_modified = Variant.of(304, gzip_headers, b"") if revalidates and gz else None
        self.size = len(body) + len(gz) + 6 * len(self.plain.raw_lines)
        """Bytes this page holds in memory, near enough: both bodies and the six answers' heads."""

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> PreparedPage:
        return cls(
            int(fields[b"status"]),
            page_body(fields),
            gz=fields.get(b"gz", b""),
            content_type=fields.get(b"ct", b"text/html; charset=utf-8"),
            etag=fields.get(b"etag", b""),
            last_modified=fields.get(b"lm", b""),
            location=fields.get(b"loc", b""),
        )

    def answer(self, *, head: bool, accepts_gzip: bool, if_none_match: bytes) -> Variant:
        """`If-None-Match: *` matches any current representation (RFC 9110 §13.1.2): a page that has one."""
        if accepts_gzip and self.gzip is not None:
            if self.gzip_not_modified is not None and if_none_match and (
                self.gzip_etag in if_none_match or if_none_match.strip() == b"*"
            ):
                return self.gzip_not_modified
            return self.gzip_head if head and self.gzip_head is not None else self.gzip
        if self.not_modified is not None and if_none_match and (
            self.etag in if_none_match or if_none_match.strip() == b"*"
        ):
            return self.not_modified
        return self.head if head else self.plain


def accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether gzip is acceptable (RFC 9110 §12.5.3): named, as `gzip` or `x-gzip`, with a q-value above 0.

    Browsers send a plain list ("gzip, deflate, br"), answered without parsing; "gzip;q=0" refuses it.
    """
    value = accept_encoding.lower()
    if b"gzip" not in value:
        return False
    if b"q=" not in value:
        return True
    for member in value.split(b","):
        coding, _, parameters = member.partition(b";")
        if coding.strip() not in (b"gzip", b"x-gzip"):
            continue
        name, _, weight = parameters.partition(b"=")
        if name.strip() != b"q":
            return True
        try:
            return float(weight.partition(b";")[0].strip()) > 0
        except ValueError:
            return False
    return False


def request_preferences(headers: list[tuple[bytes, bytes]]) -> tuple[bool, bytes]:
    gzip_ok = False
    if_none_match = b""
    for name, value in headers:
        if name == b"accept-encoding":
            gzip_ok = accepts_gzip(value)
        elif name == b"if-none-match":
            if_none_match = value
    return gzip_ok, if_none_match


@dataclass(frozen=True)
class StaticAsset:
    """One asset's two answers: cached for a year when asked for by its own content hash (`?v=`), revalidated
    otherwise. Only the hash of these very bytes may be immutable: during a rolling deploy a page naming the
    new version can reach a replica that still has the old file."""

    version: str
    versioned: PreparedPage
    unversioned: PreparedPage

    def page(self, query: bytes) -> PreparedPage:
        if query == b"v=" + self.version.encode():
            return self.versioned
        asked = parse_qs(query.decode("latin-1")).get("v", []) if query else []
        return self.versioned if asked == [self.version] else self.unversioned


def static_assets() -> dict[str, StaticAsset]:
    assets = {}
    for name in sorted(ASSET_CONTENT_TYPES):
        body, content_type = asset_bytes(name)
        etag = ('"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"').encode()
        gz = gzip.compress(body, mtime=0)
        versioned, unversioned = (
            PreparedPage(200, body, gz=gz, content_type=content_type.encode(), etag=etag, cache_control=cache,
                         route="static")
            for cache in (ASSET_CACHE_CONTROL, UNVERSIONED_ASSET_CACHE_CONTROL)
        )
        assets[f"/static/{name}"] = StaticAsset(asset_version(name), versioned, unversioned)
    return assets


class ReaderApp:
    """GET/HEAD of public pages, as an ASGI app; `fast_answer` is the same without ASGI, for cached pages."""

    def __init__(self, cache: PageCache[PreparedPage], site: SiteConfig) -> None:
        self.cache = cache
        self.not_found = PreparedPage(404, render_error(404, site), route="missing")
        self.unavailable = PreparedPage(
            503, render_error(503, site), cache_control=b"no-store", route="unavailable",
            extra_headers=((b"retry-after", b"5"),),
        )
        self.static = static_assets()
        self._warned_at = 0.0

    def cached(self, path: str, query: bytes = b"") -> PreparedPage | None:
        """A page available without waiting (static asset or in-memory page), else None. A query string is
        only read for assets (`?v=`); a page asked for with one is left to the ASGI app."""
        path = normalize_path(path)
        asset = self.static.get(path)
        if asset is not None:
            return asset.page(query)
        return None if query else self.cache.peek(path)

    async def page(self, path: str, query: bytes = b"") -> PreparedPage:
        path = normalize_path(path)
        asset = self.static.get(path)
        if asset is not None:
            return asset.page(query)
        try:
            return await self.cache.get(path) or self.not_found
        except (TimeoutError, RedisError, OSError) as exc:
            # Redis is slow or gone: a prompt 503 with Retry-After, not a reader waiting out socket timeouts and
            # retries. Pages kept in memory are not served meanwhile: without Redis's invalidations, a page taken
            # down since could be among them.
            if time.monotonic() - self._warned_at > 5:
                self._warned_at = time.monotonic()
                log.warning("pages cannot be read from Redis; answering 503", error=repr(exc))
            return self.unavailable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        page = await self.page(scope["path"], scope.get("query_string", b""))
        if scope["method"] not in ("GET", "HEAD") and page.status == 200:
            # A page or an asset is only read: the method is wrong, not the address (RFC 9110 §15.5.6).
            labelled(HTTP_REQUESTS, "publisher", page.route, "405").inc()
            await method_not_allowed(["GET"]).send_to(send, head=False)
            return
        accepts_gzip, if_none_match = request_preferences(scope["headers"])
        variant = page.answer(head=scope["method"] == "HEAD", accepts_gzip=accepts_gzip, if_none_match=if_none_match)
        labelled(HTTP_REQUESTS, "publisher", page.route, str(variant.status)).inc()
        await send({"type": "http.response.start", "status": variant.status, "headers": list(variant.headers)})
        await send({"type": "http.response.body", "body": variant.body})
        labelled(HTTP_REQUEST_SECONDS, "publisher", page.route).observe(time.perf_counter() - started)
