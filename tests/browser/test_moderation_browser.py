"""The moderation UI in a real browser (Debian's Chromium, driven by Playwright; no browser download) on the real
stack: a queue longer than a page, near-identical actions kept to the queue shown, a decision someone else took
first (409) and the audit trail of a comment.

Queues are built fast by producing `CommentSubmitted` events straight to the submissions topic, each from its
own address and IP (so the flood rule holds none back); first-time commenters are held as pending. The session
stack's queues also hold other tests' comments, so every check is about the comments a test made itself.
"""

from __future__ import annotations

import asyncio
import random
import re
import string
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import ConsoleMessage, Locator, Page, expect

from shared import topics
from shared.contracts.comments import CommentSubmitted
from tests.support.browser import chromium
from tests.support.drafts import make_draft, post, wait_for_version
from tests.support.stack import MODERATION_TOKEN, ServiceStack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

# Chromium logs every answer of 400 and above as "Failed to load resource"; a 409 is the API doing its job.
EXPECTED_CONSOLE = re.compile(r"status of 409")


class Api:
    """The moderation API, as a desk tool (or another moderator) would call it."""

    def __init__(self, stack: ServiceStack) -> None:
        self.client = httpx.AsyncClient(
            base_url=stack.url("comments"), headers={"Authorization": f"Bearer {MODERATION_TOKEN}"}, timeout=10
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def page(
        self, status: str, limit: int = 500, before: float | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        params: dict[str, Any] = {"status": status, "limit": limit}
        if before is not None:
            params["before"] = repr(before)
        response = await self.client.get("/moderation/comments", params=params)
        assert response.status_code == 200, response.text
        return response.json(), int(response.headers["x-total-count"])

    async def queue_ids(self, status: str) -> set[str]:
        """Every id in a queue, read page by page."""
        ids: set[str] = set()
        before: float | None = None
        while True:
            items, _ = await self.page(status, 500, before)
            ids.update(item["id"] for item in items)
            if len(items) < 500:
                return ids
            before = datetime.fromisoformat(items[-1]["submitted_at"]).timestamp()

    async def one(self, comment_id: str) -> dict[str, Any] | None:
        response = await self.client.get(f"/moderation/comments/{comment_id}")
        return response.json() if response.status_code == 200 else None

    async def act(self, comment_id: str, action: str, **body: Any) -> httpx.Response:
        return await self.client.post(f"/moderation/comments/{comment_id}/{action}", json=body)

    async def bulk(self, **body: Any) -> httpx.Response:
        return await self.client.post("/moderation/comments/bulk", json=body)

    async def wait_in_queue(self, status: str, ids: list[str], timeout: float = 30) -> None:
        async def there() -> bool:
            return set(ids) <= await self.queue_ids(status)

        assert await until(there, timeout), f"not all of {len(ids)} comments reached the {status} queue in {timeout}s"

    async def wait_status(self, comment_id: str, status: str, timeout: float = 10) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            record = await self.one(comment_id)
            return record if record is not None and record["status"] == status else None

        record: dict[str, Any] | None = await until(reached, timeout)
        assert record, f"comment {comment_id} did not become {status} within {timeout}s"
        return record


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 10, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


@pytest.fixture
async def api(stack: ServiceStack) -> AsyncIterator[Api]:
    client = Api(stack)
    yield client
    await client.close()


async def new_article(stack: ServiceStack, producer: AIOKafkaProducer, api: Api) -> str:
    """A fresh article, published an hour ago, known to the publisher and to moderation."""
    draft = make_draft(published=datetime.now(UTC) - timedelta(hours=1))
    await post(producer, stack, draft)
    await wait_for_version(stack, draft["guid"], 1)

    async def known() -> bool:
        return (await api.client.get(f"/moderation/articles/{draft['guid']}")).status_code == 200

    assert await until(known, 10, 0.1), f"moderation never learnt of {draft['guid']}"
    return str(draft["guid"])


async def submit(stack: ServiceStack, producer: AIOKafkaProducer, guid: str, bodies: list[str]) -> list[str]:
    """One first-time commenter per body, each with an address and an IP of their own; submitted a millisecond
    apart, oldest first. Returns the comment ids, oldest first."""
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    ids: list[str] = []
    futures = []
    for n, body in enumerate(bodies):
        submission = CommentSubmitted(
            id=f"mb-{tag}-{n:04d}",
            article_guid=guid,
            author=f"Reader {tag} {n}",
            email=f"r{tag}{n}@example.org",
            body=body,
            ip=f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}",
            submitted_at=now - timedelta(milliseconds=len(bodies) - n),
        )
        ids.append(submission.id)
        futures.append(
            await producer.send(
                stack.topic(topics.COMMENT_SUBMISSIONS), submission.model_dump_json().encode(), key=guid.encode()
            )
        )
    await asyncio.gather(*futures)
    return ids


def a_word() -> str:
    """A made-up word, so a test's texts are near-identical to each other and to nothing else."""
    return "".join(random.choices(string.ascii_lowercase, k=10))


@dataclass
class Ui:
    page: Page
    errors: list[str] = field(default_factory=list)

    def item(self, comment_id: str) -> Locator:
        return self.page.locator(f'li.comment[data-id="{comment_id}"]')

    async def queue(self, status: str) -> None:
        await self.page.locator(f'#queues button[data-status="{status}"]').click()
        await expect(self.page.locator("#status-line")).to_have_text(
            re.compile(rf"{status} comments?$"), timeout=10_000
        )

    def console_errors(self) -> list[str]:
        return [e for e in self.errors if not EXPECTED_CONSOLE.search(e)]


@asynccontextmanager
async def moderation_ui(stack: ServiceStack, name: str) -> AsyncIterator[Ui]:
    """The moderation page in a fresh browser, signed in as `name`, its first queue (Pending) loaded."""
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        ui = Ui(page)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                ui.errors.append(f"{message.text} ({message.location.get('url', '')})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: ui.errors.append(str(exc)))
        await page.goto(stack.url("comments", "/moderation/"))
        await page.fill("#token", MODERATION_TOKEN)
        await page.fill("#moderator", name)
        await page.click("#login-submit")
        await expect(page.locator("#status-line")).to_have_text(re.compile(r"pending comments?$"), timeout=10_000)
        yield ui


async def test_a_queue_longer_than_a_page_says_its_size_and_shows_the_older_comments(
    stack: ServiceStack, producer: AIOKafkaProducer, api: Api
) -> None:
    guid = await new_article(stack, producer, api)
    ids = await submit(
        stack, producer, guid, [f"Reader {n} thinks this is a fair summary of the harbour talks." for n in range(210)]
    )
    try:
        await api.wait_in_queue("pending", ids)
        _, total = await api.page("pending", 1)
        assert total >= 210
        async with moderation_ui(stack, "Paula Pager") as ui:
            page = ui.page
            status = page.locator("#status-line")
            # The queue's size from X-Total-Count, not the length of the page read.
            await status.filter(has_text=f"Showing 200 of {total} pending comments").wait_for(timeout=10_000)
            assert await page.locator("li.comment").count() == 200
            older = page.locator("#show-older")
            assert await older.is_visible()
            assert f"{total - 200} more" in await older.inner_text()
            # Reachable from the keyboard: a real button in the tab order, and the "o" key.
            clicks = 0
            while await older.is_visible():
                assert clicks < 5, "Show older never ran out"
                shown = await page.locator("li.comment").count()
                if clicks == 0:
                    await older.focus()
                    await page.keyboard.press("Enter")
                else:
                    await page.keyboard.press("o")
                clicks += 1
                await page.wait_for_function(
                    "n => document.querySelectorAll('li.comment').length > n"
                    " || document.getElementById('show-older').hidden",
                    arg=shown,
                    timeout=10_000,
                )
                await page.wait_for_function("() => !document.getElementById('show-older').disabled")
            listed: list[str] = await page.locator("li.comment").evaluate_all("items => items.map(i => i.dataset.id)")
            assert len(listed) == len(set(listed)), "a comment is listed twice"
            missing = set(ids) - set(listed)
            assert not missing, f"{len(missing)} of the article's comments never shown, e.g. {sorted(missing)[:3]}"
            assert len(listed) == total
            await status.filter(has_text=re.compile(rf"^{total} pending comments$")).wait_for(timeout=5000)
        assert ui.console_errors() == []
    finally:
        # Leave the shared pending queue as short as it was for the tests that come next.
        cleanup = await api.bulk(action="reject", ids=ids, reason="test clean-up")
        assert cleanup.status_code == 202, cleanup.text


async def test_near_identical_actions_stay_in_the_queue_shown(
    stack: ServiceStack, producer: AIOKafkaProducer, api: Api
) -> None:
    guid = await new_article(stack, producer, api)
    text = f"The harbour plan needs a proper budget before the council votes on it, {a_word()}."
    approved, spam, *pending = await submit(stack, producer, guid, [text] * 4)
    await api.wait_in_queue("pending", [approved, spam, *pending])
    assert (await api.act(approved, "approve", moderator="Setup Sam")).status_code == 202
    assert (await api.act(spam, "spam", moderator="Setup Sam")).status_code == 202
    await api.wait_status(approved, "approved")
    await api.wait_status(spam, "spam")
    near_key = (await api.one(approved) or {})["near_key"]

    async with moderation_ui(stack, "Nora Near") as ui:
        page = ui.page
        await ui.queue("approved")
        item = ui.item(approved)
        await item.wait_for(timeout=10_000)
        # Nothing to spam or reject "in bulk" from the published comments: no such buttons in this queue.
        assert await page.locator("#comments").get_by_role("button", name=re.compile("similar", re.I)).count() == 0
        assert "4 near-identical site-wide" in await item.inner_text(), "the group's size, not what an action takes"

        await ui.queue("spam")
        await ui.item(spam).wait_for(timeout=10_000)
        assert await ui.item(spam).get_by_role("button", name="Reject similar in this queue").count() == 1
        assert await ui.item(spam).get_by_role("button", name="Spam similar in this queue").count() == 0

        await ui.queue("pending")
        item = ui.item(pending[0])
        await item.wait_for(timeout=10_000)
        await item.get_by_role("button", name="Reject similar in this queue", exact=True).click()
        await page.locator("#status-line", has_text="Rejected 2 near-identical comments in this queue").wait_for(
            timeout=10_000
        )
        for comment_id in pending:
            assert await ui.item(comment_id).count() == 0
    assert ui.console_errors() == []

    for comment_id in pending:
        record = await api.wait_status(comment_id, "rejected")
        assert record["actor"] == "Nora Near"
    await asyncio.sleep(1.0)  # what a wider action would have changed has had time to land
    assert (await api.one(approved) or {})["status"] == "approved", "an approved comment outside the queue was touched"
    assert (await api.one(spam) or {})["status"] == "spam", "a comment of another work queue was touched"
    # What the group still holds is as the API says: the two rejected, the other two as they were.
    grouped, _ = await api.page("rejected", 500)
    assert {c["id"] for c in grouped if c["near_key"] == near_key} == set(pending)


async def test_a_decision_taken_elsewhere_first_is_refused_and_the_queue_shows_it(
    stack: ServiceStack, producer: AIOKafkaProducer, api: Api
) -> None:
    guid = await new_article(stack, producer, api)
    [comment_id] = await submit(stack, producer, guid, [f"A fair point about the night shift rota, {a_word()}."])
    await api.wait_in_queue("pending", [comment_id])

    async with moderation_ui(stack, "Rita Racer") as ui:
        page = ui.page
        item = ui.item(comment_id)
        await item.wait_for(timeout=10_000)
        assert "rev 1" in await item.inner_text()
        # Another moderator (a desk tool) approves it while the queue is on this screen.
        answer = await api.act(comment_id, "approve", moderator="Other Olga")
        assert answer.status_code == 202, answer.text
        await api.wait_status(comment_id, "approved")

        await item.get_by_role("button", name="Reject", exact=True).click()
        status = page.locator("#status-line")
        await page.locator("#status-line.error", has_text="changed since revision 1").wait_for(timeout=10_000)
        # The queue is read again: the comment has left the pending queue, and the error is still there to read.
        await item.wait_for(state="detached", timeout=10_000)
        await page.wait_for_function("() => !document.getElementById('status-line').textContent.includes('Reloading')")
        said = await status.inner_text()
        assert "Could not reject: the comment changed since revision 1: it is approved now" in said
        assert "pending comment" in said, "the count of the queue read again follows the error"
        assert await status.get_attribute("class") == "error"
    assert ui.console_errors() == []

    await asyncio.sleep(1.0)  # a reject that slipped through would have landed by now
    record = await api.one(comment_id)
    assert record is not None
    assert (record["status"], record["revision"], record["actor"]) == ("approved", 2, "Other Olga")


async def test_the_history_toggle_shows_who_decided_and_why(
    stack: ServiceStack, producer: AIOKafkaProducer, api: Api
) -> None:
    guid = await new_article(stack, producer, api)
    [comment_id] = await submit(
        stack, producer, guid, [f"I was at the meeting and the minutes leave out the objections, {a_word()}."]
    )
    await api.wait_in_queue("pending", [comment_id])

    async with moderation_ui(stack, "Hugo Historian") as ui:
        page = ui.page
        item = ui.item(comment_id)
        await item.wait_for(timeout=10_000)
        story = item.locator("a.article-link")  # the comment is read against its story
        assert await story.inner_text() == f"Dockers strike over night-shift pay {guid[-6:]}"
        href = await story.get_attribute("href") or ""
        assert re.fullmatch(r"https?://[^/]+/business/\d{4}/\d{2}/\d{2}/[a-z0-9-]+", href), href
        assert await story.get_attribute("rel") == "noopener noreferrer"
        await page.fill("#reason", "checked the source")
        await item.click()
        await page.keyboard.press("a")
        await page.locator("#status-line", has_text="Approved 1 comment").wait_for(timeout=10_000)
        await api.wait_status(comment_id, "approved")

        await ui.queue("approved")
        item = ui.item(comment_id)
        await item.wait_for(timeout=10_000)
        toggle = item.get_by_role("button", name="History", exact=True)
        assert await toggle.get_attribute("aria-expanded") == "false"
        await toggle.click()
        history = item.locator(".history-entries")
        await history.filter(has_text="Hugo Historian").wait_for(timeout=10_000)
        rows = await history.locator("li").all_inner_texts()
        assert len(rows) == 2, rows
        assert "rev 1" in rows[0] and "pending" in rows[0] and "pipeline" in rows[0]
        assert "first_time_commenter" in rows[0]
        assert "rev 2" in rows[1] and "approved" in rows[1] and "by Hugo Historian" in rows[1]
        assert "checked the source" in rows[1]
        hide = item.get_by_role("button", name="Hide history", exact=True)
        assert await hide.get_attribute("aria-expanded") == "true"
        await hide.click()
        assert await item.locator(".history").count() == 0
        # From the keyboard too: "h" opens the current comment's trail.
        await item.click()
        await page.keyboard.press("h")
        await item.locator(".history-entries", has_text="Hugo Historian").wait_for(timeout=10_000)
    assert ui.console_errors() == []
