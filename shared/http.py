"""A small ASGI layer shared by the services: a regex router, request/response types, the health, readiness
and metrics endpoints, and the process entry point (uvicorn).

It is deliberately thin: the publisher's read path answers from memory and every microsecond of framework
overhead shows in its requests per second; the other services need only a handful of routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from shared.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS, labelled, render_metrics

HANDLER_DEADLINE_SECONDS = 10.0
"""Longest a route may take: past it the client gets a 503 with Retry-After, not a connection held for as long as
Redis's socket timeouts and retries add up to (a minute and more when Redis hangs)."""
READINESS_CHECK_SECONDS = 2.0
GC_THRESHOLD = 20_000
"""Allocations between two young-generation collections (CPython's default is 700)."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
)


class BodyTooLarge(Exception):
    pass


@dataclass
class Request:
    method: str
    path: str
    query_string: bytes
    headers: dict[str, str]
    client: str | None
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string.decode("latin-1"))

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body as JSON. Whatever the reader refuses raises ValueError, which handlers answer with a 400:
        bad syntax, an integer over Python's 4,300-digit limit, and nesting deeper than the interpreter's stack
        (a RecursionError, which would otherwise be a 500)."""
        try:
            return json.loads(self.body)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply to read") from exc

    def form(self) -> dict[str, str]:
        parsed = parse_qs(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"text/plain; charset=utf-8"

    async def send_to(self, send: Send, *, head: bool = False) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", str(len(self.body)).encode()),
            *SECURITY_HEADERS,
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else self.body})


def json_response(payload: Any, status: int = 200, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, default=str).encode(),
        status,
        list(headers),
        b"application/json",
    )


def problem(status: int, reason: str, headers: Iterable[tuple[bytes, bytes]] = (), **extra: Any) -> Response:
    """Client errors say what was wrong; they never carry a traceback."""
    return json_response({"status": status, "error": reason, **extra}, status, headers)


def method_not_allowed(allowed: Iterable[str]) -> Response:
    """A 405 names the methods the resource does take (RFC 9110 §15.5.6); GET implies HEAD."""
    methods = set(allowed)
    if "GET" in methods:
        methods.add("HEAD")
    return problem(405, "method not allowed", [(b"allow", ", ".join(sorted(methods)).encode())])


RouteHandler = Callable[[Request], Awaitable[Response]]


@dataclass
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: RouteHandler
    name: str
    too_large: Callable[[Request], Response] | None = None
    """The answer to a body over the router's limit, when JSON is not what its clients read (an HTML form)."""


class Router:
    """Routes by method and a path pattern with `{name}` placeholders (one path segment each)."""

    def __init__(
        self, service: str, *, max_body_bytes: int = 1024 * 1024, deadline_seconds: float = HANDLER_DEADLINE_SECONDS
    ) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.deadline_seconds = deadline_seconds
        self.routes: list[Route] = []
        self.fallback: RouteHandler | None = None

    def add(
        self,
        methods: Iterable[str],
        path: str,
        handler: RouteHandler,
        name: str | None = None,
        *,
        too_large: Callable[[Request], Response] | None = None,
    ) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"
        self.routes.append(Route(frozenset(methods), re.compile(regex), handler, name or path, too_large))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], frozenset[str]]:
        """The route for `method` on `path` with its parameters, and every method some route takes on `path` (for
        a 405's `Allow`; empty when no route has the path)."""
        allowed: set[str] = set()
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            allowed |= route.methods
            if method in route.methods or (method == "HEAD" and "GET" in route.methods):
                return route, m.groupdict(), frozenset(allowed)
        return None, {}, frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        route, params, allowed = self.match(method, path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        client = scope.get("client")
        request = Request(method, path, scope.get("query_string", b""), headers, client[0] if client else None)
        request.params = params
        try:
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                request.body = await read_body(receive, self.max_body_bytes, headers)
            async with asyncio.timeout(self.deadline_seconds):
                if route is not None:
                    response = await route.handler(request)
                elif allowed:
                    response = method_not_allowed(allowed)
                elif self.fallback is not None:
                    response = await self.fallback(request)
                else:
                    response = problem(404, "not found")
        except TimeoutError:
            from shared.logging import get_logger

            get_logger(__name__).warning("request timed out", path=path, method=method, seconds=self.deadline_seconds)
            response = problem(
                503, f"not answered within {self.deadline_seconds:g} s; try again", [(b"retry-after", b"5")],
            )
        except BodyTooLarge:
            if route is not None and route.too_large is not None:
                response = route.too_large(request)
            else:
                response = problem(413, f"request body over {self.max_body_bytes} bytes")
        except Exception:
            from shared.logging import get_logger

            get_logger(__name__).exception("request failed", path=path, method=method)
            response = problem(500, "internal error")
        route_name = route.name if route else "other"
        labelled(HTTP_REQUESTS, self.service, route_name, str(response.status)).inc()
        await response.send_to(send, head=method == "HEAD")
        labelled(HTTP_REQUEST_SECONDS, self.service, route_name).observe(time.perf_counter() - started)


async def read_body(receive: Receive, limit: int, headers: Mapping[str, str]) -> bytes:
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass
class Health:
    """`/healthz` says the process is up; `/readyz` runs every check (Kafka, Redis, caught up)."""

    started_at: float = field(default_factory=time.time)
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)

    async def healthz(self, _: Request) -> Response:
        return json_response({"status": "ok", "uptime_s": round(time.time() - self.started_at, 1)})

    async def readyz(self, _: Request) -> Response:
        return await self._answer(self.checks)

    def readiness(self, *names: str) -> Callable[[Request], Awaitable[Response]]:
        """A readiness endpoint that runs only the named checks (the publisher's `/readyz/readers`)."""

        async def answer(_: Request) -> Response:
            return await self._answer({name: self.checks[name] for name in names})

        return answer

    @staticmethod
    async def _answer(checks: Mapping[str, ReadinessCheck]) -> Response:
        """The checks run together, each bounded: a probe must answer (a Redis that hangs is not ready) well
        within the orchestrator's probe timeout."""

        async def run(check: ReadinessCheck) -> tuple[bool, str]:
            try:
                async with asyncio.timeout(READINESS_CHECK_SECONDS):
                    return await check()
            except TimeoutError:
                return False, f"no answer within {READINESS_CHECK_SECONDS:g} s"
            except Exception as exc:
                return False, repr(exc)[:200]

        outcomes = await asyncio.gather(*(run(check) for check in checks.values()))
        results = {
            name: detail if ok else f"not ready: {detail}" for name, (ok, detail) in zip(checks, outcomes, strict=True)
        }
        ready = all(ok for ok, _ in outcomes)
        return json_response({"ready": ready, "checks": results}, 200 if ready else 503)

    async def metrics(self, _: Request) -> Response:
        body, content_type = render_metrics()
        return Response(body, 200, [], content_type.encode())

    def install(self, router: Router) -> None:
        router.add(["GET"], "/healthz", self.healthz)
        router.add(["GET"], "/readyz", self.readyz)
        router.add(["GET"], "/metrics", self.metrics)


class ServiceApp:
    """The process's ASGI app: lifespan goes to the FastStream application (brokers, background tasks), HTTP
    to the router; a `reader` takes every GET/HEAD the router has no route for (the publisher's pages), and the
    other methods on paths the router does not know."""

    def __init__(self, lifespan_app: ASGIApp, router: Router, reader: ASGIApp | None = None) -> None:
        self.lifespan_app = lifespan_app
        self.router = router
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.reader is not None:
                # GET and HEAD the router has no route for are pages; another method goes to the reader only on a
                # path no route has, where it answers 405 for a page and 404 for nothing.
                route, _, allowed = self.router.match(scope["method"], scope["path"])
                if route is None and (scope["method"] in ("GET", "HEAD") or not allowed):
                    await self.reader(scope, receive, send)
                    return
            await self.router(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan_app(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after a graceful shutdown, so the process would end "killed by signal 15"
    (exit 143) even when it drained cleanly; orchestrators and tests read that as a crash. Here a signal only
    asks the server to stop, and a clean drain exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(_signum: int, _frame: object) -> None:
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 25) -> None:
    """Run one process. SIGTERM stops accepting requests, drains handlers and commits within the grace period.

    The objects built at start-up (models, tables, settings, imported modules) are moved out of the cyclic
    garbage collector's reach, and its first generation is collected less often: a consumer allocates
    many short-lived objects per record, and the default threshold made the collector rescan the long-lived
    heap hundreds of times a second.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=graceful_seconds,
        server_header=False,
        date_header=False,
    )
    _Server(config).run()
