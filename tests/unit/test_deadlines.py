"""When Redis hangs, answers still come promptly: routes and probes are bounded, and readers get a 503 page.

No servers: the slow dependency is a coroutine that sleeps longer than the bound.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from services.publisher.pagecache import PageCache
from services.publisher.site import SiteConfig
from services.publisher.web import PreparedPage, ReaderApp
from shared.http import Health, Request, Response, Router, json_response


async def forever(*_: Any) -> Any:
    await asyncio.sleep(3600)


async def call(app: Any, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b"", "client": None}
    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


async def test_a_route_waiting_on_a_hung_dependency_answers_503_at_its_deadline() -> None:
    router = Router("test", deadline_seconds=0.2)

    async def quick(_: Request) -> Response:
        return json_response({"ok": True})

    router.add(["GET"], "/hangs", forever)
    router.add(["GET"], "/quick", quick)
    started = time.monotonic()
    status, headers, body = await call(router, "GET", "/hangs")
    assert status == 503 and headers[b"retry-after"] == b"5"
    assert "not answered within 0.2 s" in json.loads(body)["error"]
    assert time.monotonic() - started < 1.0
    assert (await call(router, "GET", "/quick"))[0] == 200


async def test_readiness_checks_run_together_and_a_hung_one_is_not_ready_in_two_seconds() -> None:
    async def fine() -> tuple[bool, str]:
        return True, "kafka ok"

    health = Health(checks={"redis": forever, "kafka": fine, "other": forever})
    started = time.monotonic()
    answer = await health.readyz(Request("GET", "/readyz", b"", {}, None))
    elapsed = time.monotonic() - started
    assert answer.status == 503
    assert json.loads(answer.body)["checks"] == {
        "redis": "not ready: no answer within 2 s", "kafka": "kafka ok", "other": "not ready: no answer within 2 s",
    }
    assert 1.9 < elapsed < 3.0  # one bound for all, not one per check


async def test_readers_get_a_503_page_when_redis_does_not_answer_in_time() -> None:
    pages: PageCache[PreparedPage] = PageCache(
        None, "bs:pub:{", forever, PreparedPage.from_fields, fetch_timeout=0.1  # type: ignore[arg-type]
    )
    app = ReaderApp(pages, SiteConfig())
    started = time.monotonic()
    waiting = [call(app, "GET", "/world/2024/03/20/story") for _ in range(3)]  # one fetch, three readers
    for status, headers, body in await asyncio.gather(*waiting):
        assert status == 503
        assert headers[b"retry-after"] == b"5" and headers[b"cache-control"] == b"no-store"
        assert b"Temporarily unavailable" in body
    assert time.monotonic() - started < 1.0
    assert not pages.fetching
