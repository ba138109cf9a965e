"""The reader's HTTP answers as bytes on the wire: Date, 304s, `If-None-Match: *`, and versioned assets."""

from __future__ import annotations

import asyncio
import gzip
import re
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from services.publisher.render import asset_path
from services.publisher.server import HttpProtocol, PublisherServer
from services.publisher.site import SiteConfig
from services.publisher.web import ASSET_CACHE_CONTROL, PreparedPage, ReaderApp
from shared.http import Request, Response, Router, ServiceApp, json_response

BODY = b"<!doctype html><p>" + b"story " * 200 + b"</p>"
ARTICLE = "/world/2024/03/20/story"


class StubCache:
    """The page cache as the reader uses it: `peek` without waiting, `get` from Redis."""

    def __init__(self, pages: dict[str, PreparedPage]) -> None:
        self.pages = pages

    def peek(self, path: str) -> PreparedPage | None:
        return self.pages.get(path)

    async def get(self, path: str) -> PreparedPage | None:
        return self.pages.get(path)


class Transport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000)


def reader() -> ReaderApp:
    page = PreparedPage(200, BODY, gz=gzip.compress(BODY, mtime=0), etag=b'"abc123"', last_modified=b"x")
    return ReaderApp(StubCache({ARTICLE: page}), SiteConfig())  # type: ignore[arg-type]


async def exchange(request: bytes, app: Any = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request through the publisher's protocol (the fast path, or the ASGI app when not cached)."""
    pages = reader()
    server = PublisherServer(app or pages, pages, "127.0.0.1", 0)
    protocol = HttpProtocol(server)
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request)
    while server.tasks:
        await asyncio.gather(*server.tasks)
    head, _, body = bytes(transport.data).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(name.lower(), value) for name, _, value in (line.partition(": ") for line in lines)]
    return int(status_line.split()[1]), headers, body


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key == name]


@pytest.mark.parametrize("query", ["", "?from=home"])  # the fast path, and the ASGI app
async def test_every_answer_carries_one_date(query: str) -> None:
    status, headers, _ = await exchange(f"GET {ARTICLE}{query} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    assert status == 200
    dates = values(headers, "date")
    assert len(dates) == 1 and re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", dates[0])
    assert parsedate_to_datetime(dates[0]).tzinfo is not None


async def test_a_closing_answer_ends_its_head_after_date_and_connection() -> None:
    status, headers, body = await exchange(f"GET {ARTICLE} HTTP/1.1\r\nconnection: close\r\n\r\n".encode())
    assert status == 200 and values(headers, "connection") == ["close"] and len(values(headers, "date")) == 1
    assert body == BODY


@pytest.mark.parametrize("query", ["", "?from=home"])
@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_a_304_has_no_content_length(query: str, encoding: str) -> None:
    tag = '"abc123-gz"' if encoding == "gzip" else '"abc123"'
    request = f"GET {ARTICLE}{query} HTTP/1.1\r\naccept-encoding: {encoding}\r\nif-none-match: {tag}\r\n\r\n"
    status, headers, body = await exchange(request.encode())
    assert status == 304 and body == b""
    assert values(headers, "content-length") == []
    assert values(headers, "etag") == [tag]


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_if_none_match_star_matches_an_existing_page(encoding: str) -> None:
    request = f"GET {ARTICLE} HTTP/1.1\r\naccept-encoding: {encoding}\r\nif-none-match: *\r\n\r\n"
    status, _, _ = await exchange(request.encode())
    assert status == 304
    status, _, _ = await exchange(b"GET /no/such/page HTTP/1.1\r\nif-none-match: *\r\n\r\n")
    assert status == 404


@pytest.mark.parametrize("name", ["site.css", "site.js"])
async def test_only_the_assets_own_hash_is_cached_for_a_year(name: str) -> None:
    version = asset_path(name).partition("?v=")[2]
    status, headers, _ = await exchange(f"GET {asset_path(name)} HTTP/1.1\r\n\r\n".encode())
    assert status == 200 and values(headers, "cache-control") == [ASSET_CACHE_CONTROL.decode()]
    for other in (f"/static/{name}?v=000000000000", f"/static/{name}", f"/static/{name}?v={version}x",
                  f"/static/{name}?v=000000000000&v={version}"):
        status, headers, _ = await exchange(f"GET {other} HTTP/1.1\r\n\r\n".encode())
        assert status == 200, other
        cache_control = values(headers, "cache-control")
        assert cache_control and "immutable" not in cache_control[0] and "max-age=31536000" not in cache_control[0]


async def test_the_asgi_app_answers_assets_by_version_too() -> None:
    app = reader()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for query, immutable in ((asset_path("site.css").partition("?")[2], True), ("v=000000000000", False)):
        sent.clear()
        scope = {"type": "http", "method": "GET", "path": "/static/site.css", "query_string": query.encode(),
                 "headers": []}
        await app(scope, receive, send)  # type: ignore[arg-type]
        cache_control = dict(sent[0]["headers"])[b"cache-control"]
        assert (b"immutable" in cache_control) is immutable, query


async def test_a_request_head_past_its_bound_is_refused_and_the_connection_closed() -> None:
    """A client sending megabytes of header or URL grew the server's memory by as much, and got no answer."""
    status, _, _ = await exchange(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
    assert status == 431
    status, _, _ = await exchange(b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 414


async def test_a_connection_that_never_finishes_its_request_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.publisher import server as server_module

    monkeypatch.setattr(server_module, "IDLE_SECONDS", 0.05)
    app = reader()
    server = PublisherServer(app, app, "127.0.0.1", 0)
    slow, idle = HttpProtocol(server), HttpProtocol(server)
    slow_transport, idle_transport = Transport(), Transport()
    slow.connection_made(slow_transport)  # type: ignore[arg-type]
    idle.connection_made(idle_transport)  # type: ignore[arg-type]
    slow.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")  # and nothing more
    idle.data_received(f"GET {ARTICLE} HTTP/1.1\r\nHost: a\r\n\r\n".encode())  # answered, then nothing
    assert idle_transport.data.startswith(b"HTTP/1.1 200") and not idle_transport.closed
    server.sweep()
    assert not slow_transport.closed and not idle_transport.closed
    await asyncio.sleep(0.1)
    server.sweep()
    assert slow_transport.closed and idle_transport.closed


async def test_a_method_a_page_does_not_take_is_405_with_allow_not_404() -> None:
    """Pages and assets are only read; the router's own routes name the methods they take."""

    async def lifespan(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("no lifespan here")

    async def posted(request: Request) -> Response:
        return json_response({"posted": True}, 202)

    router = Router("publisher")
    router.add(["POST"], "/comments", posted)
    app = ServiceApp(lifespan, router, reader())
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in (ARTICLE, asset_path("site.css")):
            status, headers, _ = await exchange(f"{method} {path} HTTP/1.1\r\ncontent-length: 0\r\n\r\n".encode(), app)
            assert (status, values(headers, "allow")) == (405, ["GET, HEAD"]), (method, path)
        status, _, _ = await exchange(f"{method} /no/such/page HTTP/1.1\r\ncontent-length: 0\r\n\r\n".encode(), app)
        assert status == 404, method
    status, headers, _ = await exchange(b"PUT /comments HTTP/1.1\r\ncontent-length: 0\r\n\r\n", app)
    assert (status, values(headers, "allow")) == (405, ["POST"])
    status, _, body = await exchange(b"POST /comments HTTP/1.1\r\ncontent-length: 0\r\n\r\n", app)
    assert status == 202 and b"posted" in body
    status, _, _ = await exchange(f"GET {ARTICLE} HTTP/1.1\r\n\r\n".encode(), app)
    assert status == 200
