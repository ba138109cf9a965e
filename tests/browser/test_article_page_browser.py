"""The seed article in a real browser (Debian's Chromium, driven by Playwright; no browser download).

It renders with no console error (a CSP violation or a missing asset would be one), its form is usable, it
reads on a phone and on a desktop (no sideways scrolling), and a screenshot of it is written for people to see.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.browser import chromium
from tests.support.drafts import wait_for_version
from tests.support.stack import ServiceStack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).parent / "artifacts"


async def test_seed_article_renders_cleanly_on_phone_and_desktop(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    draft = json.loads((REPO / "tests/fixtures/seed_draft.json").read_text())
    draft["guid"] = f"{stack.prefix}seed"
    # Published now, so its comments are open: a 2024 story's form gives way to "Comments are closed."
    # (tests/browser/test_comment_edge_browser.py), and this test fills the form in.
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    draft.update(firstcreated=now, versioncreated=now, firstpublished=now)
    await producer.send_and_wait(stack.topic("newsroom.drafts"), json.dumps(draft).encode(),
                                 key=draft["guid"].encode())
    path, _ = await wait_for_version(stack, draft["guid"], 1)
    ARTIFACTS.mkdir(exist_ok=True)
    async with chromium() as browser:
        sizes = (("phone", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 900}))
        for name, viewport in sizes:
            page = await browser.new_page(viewport=viewport)
            problems: list[str] = []
            page.on("console", lambda m, p=problems: p.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e, p=problems: p.append(str(e)))
            answer = await page.goto(stack.url("publisher", path), wait_until="load")
            assert answer is not None and answer.status == 200
            assert "content-security-policy" in answer.headers
            # external images cannot load on this closed network; nothing else may fail
            problems = [p for p in problems if "images.example.org" not in p and "ERR_NAME" not in p]
            assert problems == [], problems
            assert await page.locator("h1").count() == 1
            assert "What Do Russia" in await page.locator("h1").inner_text()
            assert await page.locator("html").get_attribute("lang") == "en"
            assert await page.locator("section.author-box h2").first.inner_text() == "About muhammadahmad"
            assert "Leave a Reply" in await page.content()
            lefts = await page.evaluate(
                "[...document.querySelectorAll('article.story, #comments, #respond')]"
                ".map(e => Math.round(e.getBoundingClientRect().left))"
            )
            assert len(lefts) == 3 and len(set(lefts)) == 1, f"the comments leave the story's column on {name}: {lefts}"
            text_lefts = await page.evaluate(
                """[...document.querySelectorAll('.site-name a, .site-nav a, .site-footer p, .footer-links a')]
                   .filter(e => e.closest('li') === null || e.closest('li') === e.closest('ul').firstElementChild)
                   .map(e => { const r = document.createRange(); r.selectNodeContents(e);
                               return Math.round(r.getBoundingClientRect().left); })"""
            )
            assert len(text_lefts) == 4 and len(set(text_lefts)) == 1, f"header or footer out of line: {text_lefts}"
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"sideways scrolling on {name}: {width}px"
            await page.fill("textarea[name=comment]", "A reader's thoughtful comment.")
            await page.fill("input[name=author]", "Reader")
            await page.fill("input[name=email]", "reader@example.org")
            submit = "form[action='/comments'] button, form[action='/comments'] input[type=submit]"
            assert await page.locator(submit).count() >= 1
            await page.screenshot(path=str(ARTIFACTS / f"seed-article-{name}.png"), full_page=True)
            await page.close()
    assert (ARTIFACTS / "seed-article-desktop.png").stat().st_size > 10_000
