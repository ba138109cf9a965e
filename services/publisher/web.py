"""The reader's HTTP side: answers every GET from pages already in Redis (through the in-memory `PageCache`).

Nothing here renders or reaches Kafka. Each page is turned once into a `PreparedPage` holding the complete
HTTP responses (status line, headers and body; plain and gzip; GET and HEAD; 304), so a cached request costs a
dictionary lookup and one write. Conditional requests (ETag, If-None-Match → 304), precompressed gzip bodies,
and cache and security headers are part of those prepared bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass
from http import HTTPStatus

from services.publisher.pagecache import PageCache
from services.publisher.render import asset_bytes, render_error
from services.publisher.site import SiteConfig
from services.publisher.store import page_body
from shared.http import Receive, Scope, Send
from shared.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS, labelled

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


def normalize_path(path: str) -> str:
    """`/world/2024/03/20/slug/` and `/world/2024/03/20/slug` are one page."""
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


@dataclass(frozen=True)
class Variant:
    """One ready answer: the ASGI status and headers, and the same as raw HTTP/1.1 bytes."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    raw_head: bytes  # status line + headers + blank line

    @classmethod
    def of(cls, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, length: int | None = None) -> Variant:
        headers = [*headers, (b"content-length", str(len(body) if length is None else length).encode())]
        raw = _status_line(status) + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"
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
    ) -> None:
        if cache_control is None:
            cache_control = PAGE_CACHE_CONTROL if status in (200, 301) else ERROR_CACHE_CONTROL
        headers = [(b"cache-control", cache_control), *COMMON_HEADERS]
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
        self.not_modified = Variant.of(304, plain_headers, b"", length=0) if revalidates else None
        self.gzip_not_modified = Variant.of(304, gzip_headers, b"", length=0) if revalidates and gz else None
        self.size = len(body) + len(gz) + 6 * len(self.plain.raw_head)
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
        if accepts_gzip and self.gzip is not None:
            if self.gzip_not_modified is not None and if_none_match and self.gzip_etag in if_none_match:
                return self.gzip_not_modified
            return self.gzip_head if head and self.gzip_head is not None else self.gzip
        if self.not_modified is not None and if_none_match and self.etag in if_none_match:
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


def static_pages() -> dict[str, PreparedPage]:
    pages = {}
    for name in ("site.css", "site.js"):
        body, content_type = asset_bytes(name)
        etag = ('"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"').encode()
        pages[f"/static/{name}"] = PreparedPage(
            200, body, gz=gzip.compress(body, mtime=0), content_type=content_type.encode(), etag=etag,
            cache_control=ASSET_CACHE_CONTROL, route="static",
        )
    return pages


class ReaderApp:
    """GET/HEAD of public pages, as an ASGI app; `fast_answer` is the same without ASGI, for cached pages."""

    def __init__(self, cache: PageCache[PreparedPage], site: SiteConfig) -> None:
        self.cache = cache
        self.not_found = PreparedPage(404, render_error(404, site), route="missing")
        self.static = static_pages()

    def cached(self, path: str) -> PreparedPage | None:
        """A page available without waiting (static asset or in-memory page), else None."""
        path = normalize_path(path)
        return self.static.get(path) or self.cache.peek(path)

    async def page(self, path: str) -> PreparedPage:
        path = normalize_path(path)
        return self.static.get(path) or await self.cache.get(path) or self.not_found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        page = await self.page(scope["path"])
        accepts_gzip, if_none_match = request_preferences(scope["headers"])
        variant = page.answer(head=scope["method"] == "HEAD", accepts_gzip=accepts_gzip, if_none_match=if_none_match)
        labelled(HTTP_REQUESTS, "publisher", page.route, str(variant.status)).inc()
        await send({"type": "http.response.start", "status": variant.status, "headers": list(variant.headers)})
        await send({"type": "http.response.body", "body": variant.body})
        labelled(HTTP_REQUEST_SECONDS, "publisher", page.route).observe(time.perf_counter() - started)
