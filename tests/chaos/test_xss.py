"""An XSS corpus (xss_vectors.txt: filter-evasion vectors and sanitizer-bypass / mXSS payloads) through every
draft field and every comment field, then the resulting pages loaded in headless Chromium.

No script may run: no dialog, no console message with the marker, no request to the marker host (requests are
intercepted; nothing leaves the machine), no inline event handler or `javascript:` URL in the DOM, and every
page carries a content-security-policy header. The comment form's error page, which shows the reader's text
again, is exercised by submitting the vectors through the form in the browser.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.chaos.harness import reader_ip
from tests.chaos.infra import Secrets
from tests.support.browser import chromium
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).with_name("xss_vectors.txt")
MARKER_HOST = "xss.invalid"
CONSOLE_MARKER = "XSSMARK"
SECTION = "xsssec"
DOM_AUDIT = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = (attr.value || '').replace(/[\\s\\u0000-\\u001f]+/g, '').toLowerCase();
      if (name.startsWith('on')) found.push(`${el.tagName} ${name}`);
      if (['href', 'src', 'action', 'formaction', 'data', 'xlink:href', 'background', 'poster', 'srcdoc']
            .includes(name) && (value.startsWith('javascript:') || value.startsWith('vbscript:')
            || value.startsWith('data:text/html') || name === 'srcdoc'))
        found.push(`${el.tagName} ${name}=${attr.value.slice(0, 60)}`);
    }
    const tag = el.tagName.toLowerCase();
    if (['iframe', 'object', 'embed', 'frame', 'frameset', 'applet', 'base', 'portal', 'math', 'svg']
          .includes(tag)) found.push(tag);
    if (tag === 'script' && el.type === 'application/ld+json') {
      try { JSON.parse(el.textContent); } catch (e) { found.push('JSON-LD broken out of'); }
    } else if (tag === 'script' && (el.textContent.trim() || !el.src.startsWith(location.origin))) {
      found.push(`script ${el.src || el.textContent.slice(0, 60)}`);
    }
    if (tag === 'meta' && el.httpEquiv) found.push(`meta http-equiv=${el.httpEquiv}`);
  }
  return found;
}"""


def vectors(limit: int | None) -> list[str]:
    lines = [line.rstrip("\n") for line in VECTORS.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit is None or limit >= len(lines):
        return lines
    step = len(lines) / limit
    return [lines[int(i * step)] for i in range(limit)]


def xss_draft(guid: str, i: int, vector: str) -> dict[str, Any]:
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30 + i)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "guid": guid, "version": 1, "type": "text", "pubstatus": "usable",
        "headline": f"Story {i} {vector}", "slugline": vector,
        "body_html": f"<p>Body of story {i}.</p>{vector}<p>{vector}</p>",
        "description_text": vector, "description_html": f"<p>{vector}</p>",
        "byline": vector,
        "authors": [{"name": f"Writer {i} {vector}", "role": "writer", "biography": vector,
                     "avatar_url": "javascript:alert(1)" if i % 2 else f"https://example.org/{vector}"}],
        "service": [{"code": SECTION, "name": f"Section {vector}"}],
        "subject": [{"code": f"xsstag{i}", "name": vector}],
        "keywords": [vector], "place": [{"name": vector}], "genre": [{"name": vector}],
        "ednote": vector,
        "associations": {"featuremedia": {
            "type": "picture", "description_text": vector, "body_text": vector,
            "renditions": {"original": {"href": f"https://example.org/picture-{i}.jpg", "width": 800, "height": 450}},
        }},
        "language": "en", "firstcreated": stamp, "versioncreated": stamp, "firstpublished": stamp,
    }


@dataclass
class Findings:
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dom: list[str] = field(default_factory=list)
    no_csp: list[str] = field(default_factory=list)
    csp_refusals: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, list[str]]:
        return {k: v[:15] for k, v in vars(self).items() if v}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


async def watched_page(browser: Any, findings: Findings) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    where = {"url": ""}

    async def on_dialog(dialog: Any) -> None:
        findings.dialogs.append(f"{where['url']}: {dialog.type} {dialog.message[:80]}")
        await dialog.dismiss()

    def on_console(message: Any) -> None:
        text = message.text
        if CONSOLE_MARKER in text:
            findings.console.append(f"{where['url']}: {text[:120]}")
        if "Content Security Policy" in text and ("script" in text or "event handler" in text):
            findings.csp_refusals.append(f"{where['url']}: {text[:200]}")

    async def on_route(route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if host in ("127.0.0.1", "localhost"):
            await route.continue_()
            return
        if MARKER_HOST in host and route.request.resource_type != "image":
            findings.requests.append(f"{where['url']}: {route.request.resource_type} {url[:120]}")
        await route.abort()

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    await page.route("**/*", on_route)
    page.where = where  # type: ignore[attr-defined]
    return page


async def visit(page: Any, url: str, findings: Findings) -> str:
    page.where["url"] = url
    response = await page.goto(url, wait_until="load")
    if response is not None and response.status < 400 and "content-security-policy" not in response.headers:
        findings.no_csp.append(url)
    await page.wait_for_timeout(150)  # let timers and autofocus handlers fire
    if response is not None and "html" in response.headers.get("content-type", ""):
        findings.dom.extend(f"{url}: {item}" for item in await page.evaluate(DOM_AUDIT))
    return await page.content()


async def publish(stack: ServiceStack, drafts: list[dict[str, Any]], within: float = 90) -> dict[str, str]:
    """guid → article path of the drafts that were published (some vectors make a draft invalid: fine)."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for draft in drafts:
            await producer.send(stack.topic("newsroom.drafts"), json.dumps(draft).encode(), key=draft["guid"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    paths: dict[str, str] = {}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=5) as client:
        while time.monotonic() < deadline and len(paths) < len(drafts):
            for draft in drafts:
                if draft["guid"] not in paths:
                    response = await client.get(f"/a/{draft['guid']}")
                    if response.status_code == 301:
                        paths[draft["guid"]] = response.headers["location"]
            await asyncio.sleep(0.5)
    return paths


async def comment(stack: ServiceStack, secret: str, guid: str, author: str, body: str, url: str) -> str | None:
    from services.publisher.comment_edge import comment_id, form_token

    email = f"x{uuid.uuid4().hex[:10]}@example.org"
    data = {"comment_post_ID": guid, "comment_parent": "0", "author": author[:100], "email": email, "url": url,
            "comment": body, "website_url": "", "form_token": form_token(secret, guid)}
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=reader_ip()), timeout=10) as client:
        response = await client.post(stack.url("publisher", "/comments"), data=data)
    return comment_id(guid, email, body) if response.status_code == 303 else None


async def test_xss_corpus_never_runs_a_script(
    chaos_stack: ServiceStack, chaos_secrets: Secrets, chaos_profile: Any, browser: Any
) -> None:
    stack = chaos_stack
    run = uuid.uuid4().hex[:6]
    corpus = vectors(chaos_profile.xss_vectors)
    drafts = [xss_draft(f"xss-{run}-{i:03d}", i, v) for i, v in enumerate(corpus)]
    paths = await publish(stack, drafts)
    assert len(paths) >= len(drafts) // 2, f"only {len(paths)} of {len(drafts)} XSS drafts were published"

    # comments carrying the vectors: most approved (article pages), the rest left pending (moderation UI)
    published = sorted(paths)
    ids: list[str] = []
    for i, vector in enumerate(corpus):
        guid = published[i % len(published)]
        cid = await comment(stack, chaos_secrets.form_secret, guid, f"R{i} {vector}", f"Comment {i}: {vector}",
                            "https://example.org/profile")
        if cid:
            ids.append(cid)
        await comment(stack, chaos_secrets.form_secret, guid, f"U{i}", f"With a website {i}", vector)
    moderation = httpx.AsyncClient(base_url=stack.url("comments"), timeout=10,
                                   headers={"Authorization": f"Bearer {chaos_secrets.moderation_token}"})
    async with moderation:
        deadline = time.monotonic() + 60
        known: set[str] = set()
        while time.monotonic() < deadline and len(known) < len(ids):
            for cid in ids:
                if cid not in known and (await moderation.get(f"/moderation/comments/{cid}")).status_code == 200:
                    known.add(cid)
            await asyncio.sleep(0.5)
        for cid in ids[: len(ids) * 2 // 3]:
            await moderation.post(f"/moderation/comments/{cid}/approve", json={})
    await asyncio.sleep(3)  # decisions reach the pages

    findings = Findings()
    page = await watched_page(browser, findings)
    base = stack.url("publisher")
    listing_paths = {"/", f"/section/{SECTION}", "/feed.xml", f"/section/{SECTION}/feed.xml", "/sitemap.xml",
                     "/news-sitemap.xml"}
    for guid in published:
        html = await visit(page, base + paths[guid], findings)
        listing_paths.update(re.findall(r'href="(/(?:author|tag)/[^"#?]+)"', html)[:4])
    for path in sorted(listing_paths):
        await visit(page, base + path, findings)

    # the comment form's error page shows the reader's text again: submit vectors with an invalid e-mail
    for vector in corpus[:: max(1, len(corpus) // 6)]:
        guid = published[0]
        await visit(page, base + paths[guid], findings)
        page.where["url"] = f"comment form with {vector[:40]}"
        await page.fill("#comment", vector)
        await page.fill("#author", vector[:100])
        await page.fill("#email", "not-an-address")
        await page.evaluate("() => { const e = document.querySelector('#email'); e.type = 'text'; "
                            "document.querySelectorAll('[required]').forEach(n => n.removeAttribute('required')); }")
        async with page.expect_navigation():
            await page.click("#submit")
        await page.wait_for_timeout(150)
        findings.dom.extend(f"error page: {item}" for item in await page.evaluate(DOM_AUDIT))

    # the moderation UI lists the pending comments (built with textContent)
    page.where["url"] = "moderation UI"
    response = await page.goto(stack.url("comments", "/moderation/"))
    if response is None or "content-security-policy" not in response.headers:
        findings.no_csp.append("/moderation/")
    await page.fill("#token", chaos_secrets.moderation_token)
    await page.click("#login-submit")
    await page.wait_for_selector("#comments li, #empty", timeout=10_000)
    await page.wait_for_timeout(500)
    for status in ("approved", "pending"):
        button = page.locator(f'button.queue[data-status="{status}"]')
        if await button.count():
            await button.first.click()
            await page.wait_for_timeout(700)
            findings.dom.extend(f"moderation {status}: {item}" for item in await page.evaluate(DOM_AUDIT))
    await page.context.close()

    assert not findings.problems(), json.dumps(findings.problems(), indent=1)
