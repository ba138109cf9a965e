"""A reader and a moderator in a real browser (Debian's Chromium, driven by Playwright; no browser download).

The reader posts the article's form and sees the "awaiting moderation" notice; the moderator opens the
moderation UI, enters the token and approves the comment from the keyboard; the reader reloads and sees the
comment and the updated count. Neither page logs a console error (a CSP violation would be one).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.drafts import make_draft, post, wait_for_version
from tests.support.stack import MODERATION_TOKEN, ServiceStack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


async def moderation_knows(stack: ServiceStack, guid: str) -> None:
    headers = {"Authorization": f"Bearer {MODERATION_TOKEN}"}
    async with httpx.AsyncClient(base_url=stack.url("comments"), headers=headers) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (await client.get(f"/moderation/articles/{guid}")).status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"moderation never learnt of {guid}")


async def test_reader_posts_moderator_approves_reader_sees_it(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    if not await asyncio.to_thread(CHROMIUM.exists):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.async_api import ConsoleMessage, async_playwright

    draft = make_draft(published=datetime.now(UTC) - timedelta(hours=1))
    await post(producer, stack, draft)
    path, _ = await wait_for_version(stack, draft["guid"], 1)
    await moderation_knows(stack, draft["guid"])
    text = f"Fair pay for the night shift, says reader {uuid.uuid4().hex[:6]}."
    errors: dict[str, list[str]] = {"article": [], "moderation": []}

    def collect(name: str) -> object:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors[name].append(f"{message.text} ({message.location.get('url', '')})")

        return on_console

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            reader = await (await browser.new_context()).new_page()
            reader.on("console", collect("article"))
            reader.on("pageerror", lambda exc: errors["article"].append(str(exc)))
            await reader.goto(stack.url("publisher", path))
            assert await reader.locator("#comments h2").inner_text() == "No comments yet"
            # A first try the server refuses (the honeypot a bot would fill): never shown as awaiting moderation.
            refused = f"Refused try {uuid.uuid4().hex[:6]}."
            await reader.fill("#comment", refused)
            await reader.fill("#author", "Rita Reader")
            await reader.fill("#email", "rita-refused@example.org")
            await reader.evaluate("document.querySelector('[name=website_url]').value = 'https://spam.example'")
            async with reader.expect_navigation():
                await reader.click("#submit")
            assert refused in await reader.content()
            await reader.goto(stack.url("publisher", path))
            await reader.fill("#comment", text)
            await reader.fill("#author", "Rita Reader")
            await reader.fill("#email", f"rita-{uuid.uuid4().hex[:6]}@example.org")
            async with reader.expect_navigation():
                await reader.click("#submit")
            assert reader.url.endswith(f"{path}#comment-pending")
            await reader.locator("#comment-pending").wait_for(state="visible", timeout=5000)
            assert "awaiting moderation" in (await reader.locator("#comment-pending").inner_text()).lower()
            assert await reader.locator(".pending-comments .comment-body", has_text=text).count() == 1
            assert await reader.locator(".pending-comments .comment-body", has_text=refused).count() == 0

            moderator = await (await browser.new_context()).new_page()
            moderator.on("console", collect("moderation"))
            moderator.on("pageerror", lambda exc: errors["moderation"].append(str(exc)))
            await moderator.goto(stack.url("comments", "/moderation/"))
            await moderator.fill("#token", MODERATION_TOKEN)
            await moderator.fill("#moderator", "Maria Moderator")
            await moderator.click("#login-submit")
            item = moderator.locator("li.comment", has_text=text)
            await item.wait_for(timeout=10_000)
            assert not await moderator.locator("#login").is_visible(), "the sign-in form goes once signed in"
            assert await item.locator(".reasons li", has_text="first_time_commenter").count() == 1
            for label in ("Approve", "Reject", "Spam", "Ban author"):  # the mouse's way to act on one comment
                assert await item.get_by_role("button", name=label, exact=True).is_visible(), label
            await moderator.fill("#reason", "on topic, civil")
            await item.click()
            await moderator.keyboard.press("u")  # restore a pending comment: nothing to do, and it stays listed
            await moderator.locator("#status-line", has_text="already so").wait_for(timeout=5000)
            assert await moderator.locator("li.comment", has_text=text).count() == 1
            assert "current" in (await item.get_attribute("class") or "")
            await moderator.keyboard.press("a")
            await moderator.locator("#status-line", has_text="Approved 1 comment").wait_for(timeout=5000)
            assert await moderator.locator("li.comment", has_text=text).count() == 0

            async def published() -> bool:
                await reader.reload()  # a reload revalidates the page; a plain navigation may reuse the cache
                return await reader.locator("article.comment[id^=\"comment-\"]", has_text=text).count() == 1

            deadline = time.monotonic() + 10
            while not await published():
                assert time.monotonic() < deadline, "the approved comment never reached the page"
                await asyncio.sleep(0.2)
            assert await reader.locator("#comments h2").inner_text() == "1 Comment"
            comment = reader.locator("article.comment[id^=\"comment-\"]", has_text=text)
            assert (await comment.get_attribute("id") or "").startswith("comment-c")
            comment_id = (await comment.get_attribute("id") or "").removeprefix("comment-")
            async with httpx.AsyncClient(base_url=stack.url("comments")) as api:
                record = (await api.get(f"/moderation/comments/{comment_id}",
                                        headers={"Authorization": f"Bearer {MODERATION_TOKEN}"})).json()
            assert record["history"][-1]["actor"] == "Maria Moderator"
            assert "on topic, civil" in record["history"][-1]["reasons"], "the reason typed is in the audit trail"
            assert await reader.locator(".pending-comments").count() == 0, "the reader's own note goes away"
            await reader.goto(stack.url("publisher", path))
            await asyncio.to_thread(ARTIFACTS.mkdir, exist_ok=True)
            await reader.screenshot(path=str(ARTIFACTS / "article-with-comment.png"), full_page=True)
        finally:
            await browser.close()
    # The site serves no /favicon.ico yet, and the refused try is a 400 by design: neither is an error of a page.
    errors["article"] = [
        e for e in errors["article"] if not e.endswith("/favicon.ico)") and "status of 400" not in e
    ]
    assert errors == {"article": [], "moderation": []}
