"""The publisher's HTTP/1.1 server: cached pages straight from memory, everything else through ASGI.

An ASGI server spends most of a cached request building and passing dictionaries; for a page that is already
prepared in memory the answer is one dictionary lookup and one `transport.write`. So reads of cached pages are
answered inside the protocol (httptools parser, uvloop), and any other request — a page not yet in memory,
a comment post, health and metrics — is handed to the service's ASGI app, in order, on the same connection.
The ASGI lifespan (Kafka consumers, Redis) is driven here too, and SIGTERM drains in-flight requests.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any, cast
from urllib.parse import unquote

import httptools
import uvloop

from services.publisher.web import DateLine, ReaderApp, Variant, request_preferences
from shared.http import ASGIApp
from shared.logging import get_logger
from shared.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS, labelled

log = get_logger(__name__)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
URI_TOO_LONG = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
HEADERS_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
MAX_BODY = 1024 * 1024
MAX_URL = 8 * 1024
MAX_HEAD = 32 * 1024
"""Bytes of request line and headers a request may have (browsers send 1-2 KB): a client sending more was made to
hold the server's memory (a 64 MB header grew it by 60 MB)."""
IDLE_SECONDS = 30.0
"""How long a connection may take to send a whole request, or wait idle between two: past it, it is closed. Without
it one client could hold every connection the process can open with requests it never finishes."""
DATE = DateLine()


class Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "url")

    def __init__(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class HttpProtocol(asyncio.Protocol):
    def __init__(self, server: PublisherServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request] = deque()
        self.busy = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._head = 0
        self.waiting_since: float | None = None
        """When this connection started waiting for a whole request (None while one is being answered)."""

    # connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCP transport is not a subclass
        self.server.connections.add(self)
        self.waiting_since = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def expire(self, now: float) -> None:
        """Close the connection when it has waited for a whole request for longer than `IDLE_SECONDS` (checked by
        the server's sweep, so that answering a request costs no timer)."""
        if self.waiting_since is not None and now - self.waiting_since > IDLE_SECONDS and self.transport is not None:
            self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        if self.transport is not None:
            self.transport.write(answer)
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._refuse(BAD_REQUEST)

    # parser callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size, self._head = b"", [], [], 0, 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL:
            self._refuse(URI_TOO_LONG)
            raise httptools.HttpParserError("request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + 4
        if self._head > MAX_HEAD:
            self._refuse(HEADERS_TOO_LARGE)
            raise httptools.HttpParserError("request head too large")
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= MAX_BODY + 1:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self.waiting_since = None  # a whole request: what it takes to answer is not the client's doing
        request = Request(
            self.parser.get_method(), self._url, self._headers, b"".join(self._body), self.parser.should_keep_alive()
        )
        if self.busy:
            self.queue.append(request)
        else:
            self.handle(request)

    # answering
    def handle(self, request: Request) -> None:
        started = time.perf_counter()
        if request.method in (b"GET", b"HEAD") and self.server.accepting:
            path, _, query = request.url.partition(b"?")
            page = self.server.reader.cached(unquote(path.decode("latin-1")), query)
            if page is not None:
                accepts_gzip, if_none_match = request_preferences(request.headers)
                variant = page.answer(head=request.method == b"HEAD", accepts_gzip=accepts_gzip,
                                      if_none_match=if_none_match)
                labelled(HTTP_REQUESTS, "publisher", page.route, str(variant.status)).inc()
                self.write(variant.raw_lines, variant.body, request.keep_alive)
                labelled(HTTP_REQUEST_SECONDS, "publisher", page.route).observe(time.perf_counter() - started)
                self.waiting_since = time.monotonic()
                return
        self.busy = True
        if self.transport:
            self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self.run_asgi(request))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    def write(self, lines: bytes, body: bytes, keep_alive: bool) -> None:
        """`lines`: status line and headers without the blank line; the `Date` of this second goes after them."""
        if self.transport is None:
            return
        end = DATE.current() + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        if len(body) < 65536:
            self.transport.write(b"".join((lines, end, body)))
        else:
            self.transport.write(lines + end)
            self.transport.write(body)
        if not keep_alive:
            self.transport.close()

    async def run_asgi(self, request: Request) -> None:
        path_bytes, _, query = request.url.partition(b"?")
        peer = self.transport.get_extra_info("peername") if self.transport else None
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method.decode(), "scheme": "http",
            "path": unquote(path_bytes.decode("latin-1")), "raw_path": path_bytes, "query_string": query,
            "root_path": "", "headers": request.headers,
            "client": (peer[0], peer[1]) if peer else None, "server": self.server.address,
        }
        started: dict[str, Any] = {}
        chunks: list[bytes] = []
        body_sent = False

        async def receive() -> MutableMapping[str, Any]:
            nonlocal body_sent
            if body_sent:
                await asyncio.Event().wait()
            body_sent = True
            if len(request.body) > MAX_BODY:
                return {"type": "http.request", "body": request.body[: MAX_BODY + 1], "more_body": False}
            return {"type": "http.request", "body": request.body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.server.app(scope, receive, send)
            status = int(started.get("status", 500))
            headers = list(started.get("headers", []))
        except Exception:
            log.exception("request failed", path=scope["path"])
            status, headers, chunks = 500, [(b"content-type", b"text/plain")], [b"internal error"]
        body = b"".join(chunks)
        declared = {k.lower(): v for k, v in headers}.get(b"content-length", str(len(body)).encode())
        # The server's own Date and Content-Length (none on a 304): the app's would be doubled.
        kept = [h for h in headers if h[0].lower() not in (b"content-length", b"date")]
        raw = Variant.of(status, kept, b"", length=int(declared)).raw_lines
        self.write(raw, b"" if request.method == b"HEAD" else body, request.keep_alive and self.server.accepting)
        self.busy = False
        while self.queue and not self.busy and self.transport is not None:
            self.handle(self.queue.popleft())
        if self.transport is not None and not self.busy:
            self.transport.resume_reading()
            self.waiting_since = time.monotonic()


class Lifespan:
    """Drives the ASGI lifespan protocol of an app: start-up before serving, shutdown after draining."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.messages: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()
        self.task: asyncio.Future[None] | None = None

    async def receive(self) -> MutableMapping[str, Any]:
        return await self.messages.get()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        target = self.started if kind.startswith("lifespan.startup") else self.stopped
        if target.done():
            return
        if kind.endswith(".complete"):
            target.set_result(None)
        elif kind.endswith(".failed"):
            target.set_exception(RuntimeError(message.get("message") or kind))

    async def startup(self) -> None:
        self.task = asyncio.ensure_future(self.app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                                   self.receive, self.send))
        await self.messages.put({"type": "lifespan.startup"})
        await asyncio.wait({self.started, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not self.started.done():
            raise RuntimeError("the app's lifespan ended during start-up") from self.task.exception()
        self.started.result()

    async def shutdown(self, grace_seconds: float) -> None:
        await self.messages.put({"type": "lifespan.shutdown"})
        assert self.task is not None
        done, _ = await asyncio.wait(
            {self.stopped, self.task}, timeout=grace_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            log.warning("shutdown grace period over; still running", tasks=running_tasks())


def running_tasks() -> list[str]:
    """Each unfinished task with where it waits: what an operator needs when a stop takes too long."""
    described = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        chain: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(chain) < 12:  # the await chain, outermost first
            frame = (
                getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
                or getattr(awaited, "ag_frame", None)
            )
            if frame is not None:
                chain.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
            following = (
                getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
                or getattr(awaited, "ag_await", None)
            )
            generator = getattr(frame.f_locals.get("self"), "gen", None) if frame is not None else None
            if getattr(generator, "ag_frame", None) is not None:  # `async with` over an async generator
                following = generator
            awaited = following
        described.append(f"{task.get_name()}: {' -> '.join(chain)}")
    return described


class PublisherServer:
    def __init__(self, app: ASGIApp, reader: ReaderApp, host: str, port: int) -> None:
        self.app = app
        self.reader = reader
        self.address = (host, port)
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepting = True

    async def serve(self, graceful_seconds: float = 25.0) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        lifespan = Lifespan(self.app)
        await lifespan.startup()
        server = await loop.create_server(lambda: HttpProtocol(self), *self.address, backlog=2048,
                                          reuse_address=True)
        log.info("publisher serving", host=self.address[0], port=self.address[1])
        sweeper = asyncio.create_task(self.sweep_forever(), name="idle-connections")
        await stop.wait()
        sweeper.cancel()
        log.info("stopping: no new connections, draining requests")
        self.accepting = False
        server.close()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=graceful_seconds)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        await lifespan.shutdown(graceful_seconds)


    def sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.expire(now)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(IDLE_SECONDS / 6)
            self.sweep()


def run(app: ASGIApp, reader: ReaderApp, host: str, port: int) -> None:
    uvloop.install()
    asyncio.run(PublisherServer(app, reader, host, port).serve())
