"""The moderation web UI: one static page and its script and style sheet, served by the comments service.

The page holds no data and no secret: it asks for the moderation token, keeps it in the tab's sessionStorage
and calls the moderation API. The content security policy allows only this origin's script and style (no
inline script), and the script builds the page with `textContent` only, since comments are untrusted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.http import Request, Response, Router

HERE = Path(__file__).parent
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
ASSETS = {
    "moderation.js": b"text/javascript; charset=utf-8",
    "moderation.css": b"text/css; charset=utf-8",
    "favicon.svg": b"image/svg+xml",
}


def _headers(body: bytes, cache: bytes) -> list[tuple[bytes, bytes]]:
    etag = ('"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"').encode()
    return [(b"content-security-policy", CSP), (b"cache-control", cache), (b"etag", etag)]


class ModerationUi:
    def __init__(self) -> None:
        self.page = (HERE / "templates" / "moderation.html").read_bytes()
        self.assets = {name: (HERE / "static" / name).read_bytes() for name in ASSETS}

    def install(self, router: Router) -> None:
        router.add(["GET"], "/moderation", self.redirect)
        router.add(["GET"], "/moderation/", self.index)
        router.add(["GET"], "/moderation/static/{name}", self.asset)

    async def redirect(self, _: Request) -> Response:
        return Response(b"", 308, [(b"location", b"/moderation/")])

    async def index(self, _: Request) -> Response:
        return Response(self.page, 200, _headers(self.page, b"no-store"), b"text/html; charset=utf-8")

    async def asset(self, request: Request) -> Response:
        name = request.params["name"]
        body = self.assets.get(name)
        if body is None:
            return Response(b"not found", 404)
        return Response(body, 200, _headers(body, b"no-cache"), ASSETS[name])
