"""The article page's comment form in a real browser (Debian's Chromium, driven by Playwright): a page rendered
while comments were open and still served after they closed gives way to "Comments are closed."; an open one
keeps its form and its in-page Reply. Pages are served from memory, no stack needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, Route

from services.publisher.render import STATIC_DIR, render_article
from services.publisher.site import SiteConfig
from tests.support.browser import chromium
from tests.unit.test_render import make_article, make_comment

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ORIGIN = "https://news.example"
ASSETS = {name: (STATIC_DIR / name).read_bytes() for name in ("site.css", "site.js")}


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser:
        yield await browser.new_page()


async def open_article(page: Page, published: datetime) -> list[str]:
    """Serve the article page as rendered for `published` and open it; the console errors it logged."""
    article = make_article(
        date_published=published, date_modified=published, picture=None, authors=[], body_html="<p>The story.</p>"
    )
    document = render_article(article, [], [make_comment("c1", 1)], SiteConfig(base_url=ORIGIN))

    async def serve(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("?")[0]
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            await route.fulfill(body=ASSETS[name], content_type=kind)
        else:
            await route.fulfill(body=document, content_type="text/html; charset=utf-8")

    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    await page.route(f"{ORIGIN}/**", serve)
    await page.goto(f"{ORIGIN}/article")
    await page.wait_for_load_state("load")
    return errors


async def test_a_page_served_after_comments_closed_shows_no_form(page: Page) -> None:
    errors = await open_article(page, datetime.now(UTC) - timedelta(days=14, minutes=1))
    assert await page.locator("#commentform").count() == 0
    assert await page.locator("#comments-closed").is_visible()
    assert await page.locator("#comments-closed").text_content() == "Comments are closed."
    assert await page.locator("a.comment-reply-link").count() == 0
    assert await page.locator("#comment-c1").is_visible()
    assert errors == []


async def test_an_open_article_keeps_its_form_and_in_page_replies(page: Page) -> None:
    errors = await open_article(page, datetime.now(UTC) - timedelta(days=13, hours=23))
    assert await page.locator("#commentform").is_visible()
    assert not await page.locator("#comments-closed").is_visible()
    await page.locator("a.comment-reply-link").click()
    assert page.url == f"{ORIGIN}/article", "the script answers Reply in the page"
    assert await page.locator('input[name="comment_parent"]').input_value() == "c1"
    assert await page.locator("#replying-to").is_visible()
    assert errors == []
