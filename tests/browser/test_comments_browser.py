"""A reader and a moderator in a real browser (Debian's Chromium, driven by Playwright; no browser download).

The reader posts the article's form and sees the "awaiting moderation" notice; the moderator opens the
moderation UI, enters the token and approves the comment from the keyboard; the reader reloads and sees the
comment and the updated count. Neither page logs a console error (a CSP violation would be one).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import ConsoleMessage

from tests.support.browser import chromium
from tests.support.drafts import make_draft, post, wait_for_version
from tests.support.stack import MODERATION_TOKEN, ServiceStack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ARTIFACTS = Path(__file__).parent / "artifacts"
STORE_KEY = "broadsheet:pending-comments"


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

    async with chromium() as browser:
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
        await reader.locator("#comment-pending").wait_for(state="visible", timeout=5000)
        # The redirect named the comment for the script, which keeps the id and takes it out of the address.
        await reader.wait_for_function("!window.location.search.includes('pending=')", timeout=5000)
        assert reader.url.endswith(f"{path}#comment-pending")
        [stored] = await reader.evaluate(f"JSON.parse(localStorage.getItem('{STORE_KEY}'))")
        assert stored["confirmed"] and stored["id"].startswith("c")
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
    # The site serves no /favicon.ico yet, and the refused try is a 400 by design: neither is an error of a page.
    errors["article"] = [
        e for e in errors["article"] if not e.endswith("/favicon.ico)") and "status of 400" not in e
    ]
    assert errors == {"article": [], "moderation": []}


async def post_as_another_reader(stack: ServiceStack, guid: str, body: str) -> str:
    """A comment posted from an address of its own (the browser's is in the flood window of its own post)."""
    address = f"127.0.{random.randint(100, 250)}.{random.randint(2, 250)}"
    async with httpx.AsyncClient(
        base_url=stack.url("publisher"), transport=httpx.AsyncHTTPTransport(local_address=address)
    ) as client:
        answer = await client.post("/api/comments", json={
            "comment_post_ID": guid, "author": "Tom Twice", "email": f"tom-{uuid.uuid4().hex[:6]}@example.org",
            "comment": body,
        })
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_the_authors_note_goes_when_the_comment_is_turned_down(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    """The "Awaiting moderation" note lives in the reader's browser; the page asks the publisher how moderation went.

    The comments are posted from other addresses and planted in the browser's storage as its own form would have
    left them: one rejected at once (a banned word), whose redirect must say it was not published, and one held,
    then rejected by a moderator, whose note must go on the next visit."""

    draft = make_draft(published=datetime.now(UTC) - timedelta(hours=1))
    await post(producer, stack, draft)
    guid = draft["guid"]
    path, _ = await wait_for_version(stack, guid, 1)
    await moderation_knows(stack, guid)
    held_text = f"The harbour needs a second crane, says reader {uuid.uuid4().hex[:6]}."
    rude_text = "What the fuck is this nonsense."
    held_id = await post_as_another_reader(stack, guid, held_text)
    rude_id = await post_as_another_reader(stack, guid, rude_text)
    now_ms = int(time.time() * 1000)
    planted = [
        {"guid": guid, "author": "Tom Twice", "body": held_text, "at": now_ms, "confirmed": True, "id": held_id},
        {"guid": guid, "author": "Tom Twice", "body": rude_text, "at": now_ms, "confirmed": False},
    ]
    headers = {"Authorization": f"Bearer {MODERATION_TOKEN}"}

    async with chromium() as browser:
        reader = await (await browser.new_context()).new_page()
        await reader.goto(stack.url("publisher", "/robots.txt"))
        await reader.evaluate(f"localStorage.setItem('{STORE_KEY}', JSON.stringify({json.dumps(planted)}))")
        # Where the form's redirect lands for the comment with the banned word.
        await reader.goto(stack.url("publisher", f"{path}?pending={rude_id}#comment-pending"))
        notice = reader.locator("#comment-pending")
        await notice.filter(has_text="Your comment was not published.").wait_for(timeout=10_000)
        assert await reader.locator(".pending-comments .comment-body", has_text=rude_text).count() == 0
        assert await reader.locator(".pending-comments .comment-body", has_text=held_text).count() == 1
        assert "pending=" not in reader.url
        stored = await reader.evaluate(f"JSON.parse(localStorage.getItem('{STORE_KEY}'))")
        assert [entry["id"] for entry in stored] == [held_id], "only the held comment is remembered"

        async with httpx.AsyncClient(base_url=stack.url("comments"), headers=headers) as moderation:
            async def held() -> bool:
                answer = await moderation.get(f"/moderation/comments/{held_id}")
                return answer.status_code == 200 and answer.json()["status"] in ("pending", "spam")

            deadline = time.monotonic() + 10
            while not await held():
                assert time.monotonic() < deadline, "the comment was never held"
                await asyncio.sleep(0.1)
            rejected = await moderation.post(f"/moderation/comments/{held_id}/reject", json={"moderator": "Maria"})
            assert rejected.status_code == 202, rejected.text

        deadline = time.monotonic() + 10
        while await reader.locator(".pending-comments .comment-body", has_text=held_text).count():
            assert time.monotonic() < deadline, "the note of a rejected comment stayed"
            await asyncio.sleep(0.3)
            await reader.goto(stack.url("publisher", path))
        assert await reader.evaluate(f"JSON.parse(localStorage.getItem('{STORE_KEY}'))") == []
        assert "Tom Twice" not in await reader.locator("#comments").inner_text()
