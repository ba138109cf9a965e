"""HTTP fuzzing of every write endpoint: the ingest gateway, the publisher's comment edge and the moderation API.

Random JSON, random bytes, random headers, huge bodies, odd methods and paths, with and without the right
credentials: the answer is never a 5xx and never shows a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chaos.harness import reader_ip
from tests.chaos.infra import Secrets
from tests.chaos.strategies import JSON_VALUES
from tests.support.stack import ServiceStack

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND", "TRACE")
SEGMENT = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="/?#%\x7f"),
                  min_size=1, max_size=20)
TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
HEADER_NAMES = st.sampled_from((
    "content-type", "x-superdesk-signature", "authorization", "idempotency-key", "x-forwarded-for", "cookie",
    "accept", "accept-encoding", "if-none-match", "user-agent", "x-random",
))
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.strip)
"""Printable ASCII; surrounding spaces are not representable in a header value (clients strip them)."""
CONTENT_TYPES = st.sampled_from((
    "application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
    "application/json; charset=latin-1", "", "application/xml",
))

ROUTES: dict[str, tuple[str, ...]] = {
    "ingest": ("/drafts", "/push", "/healthz", "/readyz", "/metrics", "/drafts/{x}", "/{x}"),
    "publisher": ("/comments", "/api/comments", "/comments/{x}/report", "/a/{x}", "/section/{x}", "/tag/{x}",
                  "/author/{x}", "/{x}", "/feed.xml", "/sitemaps/{x}.xml", "/static/{x}"),
    "comments": ("/moderation/comments", "/moderation/comments/{x}", "/moderation/comments/{x}/{x}",
                 "/moderation/comments/bulk", "/moderation/bans", "/moderation/premoderation",
                 "/moderation/articles/{x}", "/moderation/", "/moderation/static/{x}", "/{x}"),
}
FORM_FIELDS = ("comment_post_ID", "comment_parent", "author", "email", "url", "comment", "website_url",
               "form_token", "idempotency_key", "reason", "article_guid")


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(("json", "object", "bytes", "form", "empty", "huge", "draftish")))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "object":
        keys = st.sampled_from(FORM_FIELDS) | st.text(max_size=10)
        return json.dumps(draw(st.dictionaries(keys, JSON_VALUES, max_size=8))).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=500))
    if kind == "form":
        pairs = draw(st.lists(st.tuples(st.sampled_from(FORM_FIELDS), st.text(max_size=40)), max_size=9))
        return httpx.QueryParams(pairs).__str__().encode()
    if kind == "huge":
        return b"{" + b'"a":' * 3 + b"[" * 10 + b"x" * draw(st.sampled_from((1024 * 1024 + 10, 2 * 1024 * 1024 + 10)))
    if kind == "draftish":
        draft = {"guid": draw(SEGMENT), "version": draw(JSON_VALUES), "headline": draw(JSON_VALUES),
                 "body_html": draw(JSON_VALUES), "pubstatus": draw(st.sampled_from(("usable", "canceled", "x")))}
        return json.dumps(draft).encode()
    return b""


@st.composite
def requests(draw: st.DrawFn, service: str, token: str | None) -> dict[str, Any]:
    template = draw(st.sampled_from(ROUTES[service]))
    path = template
    while "{x}" in path:
        path = path.replace("{x}", httpx.URL("/" + draw(SEGMENT)).raw_path.decode().lstrip("/"), 1)
    if draw(st.booleans()):
        path += "?" + str(httpx.QueryParams(draw(st.dictionaries(
            st.sampled_from(("status", "limit", "before", "near_key", "page", "x")), st.text(max_size=20), max_size=3
        ))))
    method = draw(st.sampled_from(METHODS)) if draw(st.integers(0, 3)) == 0 else "POST"
    headers = dict(draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4)))
    headers["content-type"] = draw(CONTENT_TYPES)
    if token is not None and draw(st.integers(0, 3)) > 0:
        headers["authorization"] = f"Bearer {token}"
    return {"method": method, "path": path, "headers": headers, "body": draw(bodies())}


def check(response: httpx.Response, request: dict[str, Any]) -> None:
    shown = {**request, "body": request["body"][:200]}
    assert response.status_code < 500, f"{response.status_code} for {shown}: {response.text[:500]}"
    text = response.text
    assert "Traceback" not in text and 'File "' not in text, f"traceback in the answer to {shown}: {text[:500]}"


def send(stack: ServiceStack, service: str, request: dict[str, Any]) -> None:
    with httpx.Client(base_url=stack.url(service), timeout=30,
                      transport=httpx.HTTPTransport(local_address=reader_ip())) as client:
        try:
            response = client.request(request["method"], request["path"], headers=request["headers"],
                                      content=request["body"])
        except httpx.RemoteProtocolError:
            # the server may close the connection on a request it cannot parse (answered 400 or refused)
            return
        check(response, request)


def fuzz(stack: ServiceStack, service: str, token: str | None, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(requests(service, token))
    def run(request: dict[str, Any]) -> None:
        send(stack, service, request)

    run()


@pytest.mark.parametrize("service", ["ingest", "publisher", "comments"])
def test_fuzzed_requests_never_5xx_nor_traceback(
    service: str, chaos_stack: ServiceStack, chaos_secrets: Secrets, chaos_profile: Any
) -> None:
    token = {"ingest": chaos_secrets.ingest_token, "comments": chaos_secrets.moderation_token}.get(service)
    fuzz(chaos_stack, service, token, chaos_profile.fuzz_examples)
    for proc in chaos_stack.processes[service]:
        assert proc.poll() is None, f"{service} exited during fuzzing"
