"""The reader's HTTP side: answers every GET from pages already in Redis (through the in-memory `PageCache`).

Nothing here renders or reaches Kafka. Conditional requests (ETag, If-None-Match → 304), precompressed gzip
bodies, and cache and security headers are applied to the stored bytes as they are.
"""

from __future__ import annotations

import gzip
import hashlib

from services.publisher.pagecache import PageCache, PageFields
from services.publisher.render import asset_bytes, render_error
from services.publisher.site import SiteConfig
from shared.http import Receive, Scope, Send
from shared.metrics import HTTP_REQUESTS

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


class StaticAssets:
    def __init__(self) -> None:
        self.assets: dict[str, tuple[bytes, bytes, bytes, bytes]] = {}
        for name in ("site.css", "site.js"):
            body, content_type = asset_bytes(name)
            etag = ('"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"').encode()
            self.assets[f"/static/{name}"] = (body, gzip.compress(body, mtime=0), content_type.encode(), etag)


class ReaderApp:
    """ASGI handler for GET/HEAD of public pages; anything it does not own goes to `other`."""

    def __init__(self, cache: PageCache, site: SiteConfig) -> None:
        self.cache = cache
        self.not_found = render_error(404, site)
        self.static = StaticAssets()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = normalize_path(scope["path"])
        head = scope["method"] == "HEAD"
        request_headers = scope["headers"]
        asset = self.static.assets.get(path)
        if asset is not None:
            body, gz, content_type, etag = asset
            await self._send(send, 200, body, gz, content_type, etag, b"", ASSET_CACHE_CONTROL, b"",
                             request_headers, head, "static")
            return
        fields = await self.cache.get(path)
        if not fields:
            await self._send(send, 404, self.not_found, b"", b"text/html; charset=utf-8", b"", b"",
                             ERROR_CACHE_CONTROL, b"", request_headers, head, "page")
            return
        await self.send_page(send, fields, request_headers, head)

    async def send_page(
        self, send: Send, fields: PageFields, request_headers: list[tuple[bytes, bytes]], head: bool
    ) -> None:
        status = int(fields[b"status"])
        cache_control = PAGE_CACHE_CONTROL if status in (200, 301) else ERROR_CACHE_CONTROL
        await self._send(
            send, status, fields.get(b"body", b""), fields.get(b"gz", b""), fields.get(b"ct", b"text/html"),
            fields.get(b"etag", b""), fields.get(b"lm", b""), cache_control, fields.get(b"loc", b""),
            request_headers, head, "page",
        )

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, gz: bytes, content_type: bytes, etag: bytes,
        last_modified: bytes, cache_control: bytes, location: bytes,
        request_headers: list[tuple[bytes, bytes]], head: bool, route: str,
    ) -> None:
        accepts_gzip = False
        if_none_match = b""
        for name, value in request_headers:
            if name == b"accept-encoding":
                accepts_gzip = b"gzip" in value
            elif name == b"if-none-match":
                if_none_match = value
        headers = [(b"cache-control", cache_control), *COMMON_HEADERS]
        if etag:
            headers.append((b"etag", etag))
        if last_modified:
            headers.append((b"last-modified", last_modified))
        if location:
            headers.append((b"location", location))
        if gz:
            headers.append((b"vary", b"Accept-Encoding"))
        if status == 200 and etag and if_none_match and etag in if_none_match:
            HTTP_REQUESTS.labels("publisher", route, "304").inc()
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if gz and accepts_gzip:
            body = gz
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-type", content_type))
        headers.append((b"content-length", str(len(body)).encode()))
        HTTP_REQUESTS.labels("publisher", route, str(status)).inc()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})
