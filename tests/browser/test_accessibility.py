"""WCAG 2.0 and 2.1, levels A and AA, on the pages readers and moderators use, checked by axe-core in a real
browser (Debian's Chromium, driven by Playwright; axe-core ships inside axe-playwright-python, so nothing is
fetched at run time).

Each page is checked in the state a person meets it in: the article with its picture, Check Also, an approved
comment and a reply; the same article as its author sees it right after posting; listings and the 404 page; the
pages the comment form answers with; the moderation UI before and after sign-in, with comments in its queue. axe
runs every rule of those four tags and none is turned off, so a violation anywhere fails the test and says what
to fix and where.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, Route, expect

from tests.support.browser import chromium
from tests.support.drafts import make_draft, post, wait_for_version
from tests.support.stack import MODERATION_TOKEN, ServiceStack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
# The site declares `color-scheme: light dark` and has a palette for each: a reader gets whichever the system
# asks for, so contrast must hold in both.
SCHEMES = ("light", "dark")
MODERATION_HEADERS = {"Authorization": f"Bearer {MODERATION_TOKEN}"}


@dataclass(frozen=True)
class Story:
    """An article whose page shows everything a reader can meet on one: picture, Check Also, a thread."""

    guid: str
    path: str
    comment_id: str
    reply_id: str


@dataclass
class Findings:
    """Violations per page, gathered across a test so one failure does not hide the next page's."""

    by_page: dict[str, list[dict[str, Any]]]

    def report(self) -> str:
        lines: list[str] = []
        for page_name, violations in self.by_page.items():
            for violation in violations:
                targets = "; ".join(" ".join(node["target"]) for node in violation["nodes"])
                lines.append(
                    f"[{page_name}] {violation['id']} ({violation['impact']}): {violation['help']}"
                    f" — {len(violation['nodes'])} node(s): {targets}"
                )
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return any(self.by_page.values())


def loopback_reader() -> str:
    """An address of the loopback range no other test draws from, so flood limits never meet another test's."""
    return f"127.43.{random.randint(0, 255)}.{random.randint(2, 254)}"


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        await asyncio.sleep(0.2)


async def comment_via_api(stack: ServiceStack, guid: str, body: str, parent: str = "0") -> str:
    """A comment from a reader of their own address and e-mail: a first-time commenter, so held as pending."""
    transport = httpx.AsyncHTTPTransport(local_address=loopback_reader())
    async with httpx.AsyncClient(base_url=stack.url("publisher"), transport=transport) as client:
        answer = await client.post("/api/comments", json={
            "comment_post_ID": guid, "comment_parent": parent, "author": f"Reader {uuid.uuid4().hex[:4]}",
            "email": f"a11y-{uuid.uuid4().hex[:8]}@example.org", "comment": body,
        })
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def send_from_an_address_of_its_own(route: Route) -> None:
    """The browser's form post, sent on from another loopback address: the browser's own is the one every
    browser test posts from, and an accepted comment holds it in the flood window for the next test."""
    request = route.request
    passed_on = {name: value for name, value in request.headers.items() if name in ("content-type", "origin")}
    transport = httpx.AsyncHTTPTransport(local_address=loopback_reader())
    async with httpx.AsyncClient(transport=transport) as client:
        answer = await client.post(request.url, content=request.post_data_buffer or b"", headers=passed_on)
    kept = {name: value for name, value in answer.headers.items() if name in ("content-type", "location")}
    await route.fulfill(status=answer.status_code, headers=kept, body=answer.content)


async def approve(stack: ServiceStack, comment_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url("comments"), headers=MODERATION_HEADERS) as moderation:
        async def held() -> bool:
            answer = await moderation.get(f"/moderation/comments/{comment_id}")
            return answer.status_code == 200 and answer.json()["status"] == "pending"

        await until(held, f"comment {comment_id} was not held for moderation")
        approved = await moderation.post(f"/moderation/comments/{comment_id}/approve",
                                         json={"moderator": "Ada Access"})
        assert approved.status_code == 202, approved.text


async def page_text(stack: ServiceStack, path: str) -> str:
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        return (await client.get(path)).text


def lighthouse_stories(tag: str) -> tuple[str, str]:
    """Two stories on one subject, told differently: related enough for each other's Check Also, not so alike
    that the related service takes them for copies of one story."""
    first = (f"The {tag} keepers on the northern island voted to automate the lamp after a century of night "
             f"watches. Engineers installed solar panels and a battery bank beside the {tag} tower this spring. "
             f"Islanders said the {tag} keepers had guided fishing boats through winter storms for generations. "
             f"The coastguard will monitor the automated {tag} lamp from the mainland control room.")
    second = (f"Tourists will still be able to climb the {tag} tower in summer, the island council said. "
              f"The old {tag} keepers' cottage becomes a museum about lamps, storms and night watches. "
              f"A retired {tag} keeper will guide visitors along the island path to the tower. "
              f"Fishing crews welcomed the automated {tag} lamp but said they would miss the keepers.")
    return first, second


@pytest.fixture(scope="module")
async def story(stack: ServiceStack, infra: dict[str, str]) -> Story:
    tag = uuid.uuid4().hex[:8]
    published = datetime.now(UTC) - timedelta(hours=1)  # comments open, so the page has its form
    picture = {
        "featuremedia": {
            "type": "picture",
            "description_text": "The lighthouse at dusk, its lamp lit for the last night with keepers",
            "body_text": "A white lighthouse on a rocky island under an orange evening sky",
            "byline": "Photo: Jane Doe/Agency",
            "renditions": {
                "original": {"href": f"https://images.example.org/{tag}.jpg", "width": 1200, "height": 675,
                             "mimetype": "image/jpeg"},
            },
        }
    }
    main_body, related_body = lighthouse_stories(tag)
    main = make_draft(body=main_body, headline=f"Island {tag} keepers hand over to automation",
                      published=published, associations=picture)
    related = make_draft(body=related_body, headline=f"Solar power comes to the {tag} tower",
                         published=published - timedelta(minutes=5))
    producer = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all")
    await producer.start()
    try:
        await post(producer, stack, related)
        await post(producer, stack, main)
    finally:
        await producer.stop()
    path, _ = await wait_for_version(stack, main["guid"], 1)

    async def moderation_knows() -> bool:
        async with httpx.AsyncClient(base_url=stack.url("comments"), headers=MODERATION_HEADERS) as moderation:
            return (await moderation.get(f"/moderation/articles/{main['guid']}")).status_code == 200

    await until(moderation_knows, "moderation never learnt of the article")
    comment_id = await comment_via_api(stack, main["guid"], "The keepers deserve a proper send-off.\n\nThank you.")
    await approve(stack, comment_id)
    await until(lambda: shows(stack, path, f'id="comment-{comment_id}"'), "the approved comment never showed")
    reply_id = await comment_via_api(stack, main["guid"], "Agreed, and a museum for the lamp.", parent=comment_id)
    await approve(stack, reply_id)
    await until(lambda: shows(stack, path, f'id="comment-{reply_id}"'), "the approved reply never showed")
    await until(lambda: shows(stack, path, f'data-guid="{related["guid"]}"'), "Check Also never showed")
    page = await page_text(stack, path)
    assert 'class="featured-picture"' in page and "<figcaption>" in page
    return Story(guid=main["guid"], path=path, comment_id=comment_id, reply_id=reply_id)


async def shows(stack: ServiceStack, path: str, marker: str) -> bool:
    return marker in await page_text(stack, path)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def violations_on(page: Page) -> list[dict[str, Any]]:
    results = await Axe().run(page, options=AXE_OPTIONS)
    found: list[dict[str, Any]] = results.response["violations"]
    return found


async def check_in_each_scheme(findings: Findings, name: str, page: Page) -> None:
    """The page as it stands, in each colour scheme: one visit, so a state reached by posting is reached once."""
    for scheme in SCHEMES:
        await page.emulate_media(color_scheme=scheme)
        findings.by_page[f"{name}, {scheme}"] = await violations_on(page)


async def check_url(
    browser: Browser, findings: Findings, name: str, url: str, ready: Callable[[Page], Awaitable[None]] | None = None
) -> None:
    page = await browser.new_page()
    try:
        await page.goto(url, wait_until="load")
        if ready is not None:
            await ready(page)
        await check_in_each_scheme(findings, name, page)
    finally:
        await page.close()


async def test_the_article_page_with_picture_check_also_and_a_thread(
    stack: ServiceStack, story: Story, browser: Browser
) -> None:
    findings = Findings({})

    async def thread_shown(page: Page) -> None:
        await expect(page.locator(f"#comment-{story.comment_id} #comment-{story.reply_id}")).to_be_visible()
        await expect(page.locator(".check-also")).to_be_visible()
        await expect(page.locator("figure.featured-picture figcaption")).to_be_visible()

    async def replying(page: Page) -> None:
        await thread_shown(page)
        await page.get_by_role("link", name=re.compile(r"^Reply to ")).first.click()
        await expect(page.locator("#replying-to")).to_be_visible()

    article_url = stack.url("publisher", story.path)
    await check_url(browser, findings, "article", article_url, thread_shown)
    await check_url(browser, findings, "article, replying to a comment", article_url, replying)
    assert not findings, findings.report()


async def test_the_check_also_excerpt_reads_as_written(stack: ServiceStack, story: Story, browser: Browser) -> None:
    """The style sheet added " …" after the lead link's excerpt, which ends with its own "…" when it is cut: seen
    and read aloud (screen readers read generated content) as "closure… …", and after a whole sentence too."""
    page = await browser.new_page()
    try:
        await page.goto(stack.url("publisher", story.path), wait_until="load")
        excerpt = page.locator(".check-also-lead p")
        await expect(excerpt).to_be_visible()
        generated = await excerpt.evaluate(
            "p => [getComputedStyle(p, '::before').content, getComputedStyle(p, '::after').content]"
        )
        assert generated == ["none", "none"], generated
        assert not (await excerpt.inner_text()).endswith("… …")
    finally:
        await page.close()


async def test_the_article_as_its_author_sees_it_right_after_posting(
    stack: ServiceStack, story: Story, browser: Browser
) -> None:
    findings = Findings({})
    page = await browser.new_page()
    try:
        await page.goto(stack.url("publisher", story.path), wait_until="load")
        text = f"The keepers' cottage should stay open all year, {uuid.uuid4().hex[:6]}."
        await page.fill("#comment", text)
        await page.fill("#author", "Ada Access")
        await page.fill("#email", f"ada-{uuid.uuid4().hex[:8]}@example.org")
        await page.route(re.compile(r"/comments$"), send_from_an_address_of_its_own)
        async with page.expect_navigation():
            await page.click("#submit")
        await expect(page.locator("#comment-pending")).to_be_visible(timeout=5000)
        await expect(page.locator(".pending-comments .comment-body", has_text=text)).to_be_visible()
        await page.wait_for_function("!window.location.search.includes('pending=')", timeout=5000)
        assert page.url.endswith(f"{story.path}#comment-pending")
        await check_in_each_scheme(findings, "article as its author sees it", page)
    finally:
        await page.close()
    assert not findings, findings.report()


async def test_listings_and_the_404_page(stack: ServiceStack, story: Story, browser: Browser) -> None:
    findings = Findings({})
    await check_url(browser, findings, "front page", stack.url("publisher", "/"))
    await check_url(browser, findings, "section page", stack.url("publisher", "/section/business"))
    await check_url(browser, findings, "404 page", stack.url("publisher", f"/no-such-page-{story.guid}"))
    assert not findings, findings.report()


async def test_the_pages_the_comment_form_answers_with(
    stack: ServiceStack, story: Story, browser: Browser, producer: AIOKafkaProducer
) -> None:
    findings = Findings({})
    page = await browser.new_page()
    try:
        await page.goto(stack.url("publisher", story.path), wait_until="load")
        # Refused by the server, not the browser: a name left out and an address it cannot read.
        await page.evaluate("document.getElementById('commentform').noValidate = true")
        await page.fill("#comment", "A thought worth keeping through a correction.")
        await page.fill("#email", "ada-at-example")
        async with page.expect_navigation():
            await page.click("#submit")
        await expect(page.locator(".comment-errors li")).to_have_count(2)
        await expect(page.locator("#comment")).to_have_value("A thought worth keeping through a correction.")
        await check_in_each_scheme(findings, "refused comment (400)", page)
    finally:
        await page.close()
    reply = f"/comments/{story.comment_id}/reply?comment_post_ID={story.guid}"

    async def reply_form(page: Page) -> None:
        await expect(page.locator("#commentform input[name=comment_parent]")).to_have_value(story.comment_id)

    await check_url(browser, findings, "reply page", stack.url("publisher", reply), reply_form)

    # An article whose comments have closed, and what a comment posted to it anyway answers: the text comes
    # back to copy, with no form.
    closed = make_draft()  # published in 2024, long past the closing period
    await post(producer, stack, closed)
    closed_path, closed_page = await wait_for_version(stack, closed["guid"], 1)
    token = re.search(r'name="form_token" value="([^"]+)"', closed_page)
    assert token, "the article page carries no form token"
    page = await browser.new_page()
    try:
        await page.goto(stack.url("publisher", closed_path), wait_until="load")
        await expect(page.locator("#comments-closed")).to_be_visible()
        await check_in_each_scheme(findings, "article with comments closed", page)
        # The page's script has taken the form away; a copy of the page opened before the closing still posts.
        fields = {"comment_post_ID": closed["guid"], "comment_parent": "0", "author": "Ada Access",
                  "email": "ada@example.org", "comment": "Too late, but worth saying.", "form_token": token.group(1)}
        async with page.expect_navigation():
            await page.evaluate(
                """fields => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = "/comments";
                    for (const [name, value] of Object.entries(fields)) {
                        const input = document.createElement("input");
                        input.type = "hidden";
                        input.name = name;
                        input.value = value;
                        form.appendChild(input);
                    }
                    document.body.appendChild(form);
                    form.submit();
                }""",
                fields,
            )
        await expect(page.locator("#kept-comment textarea")).to_have_value("Too late, but worth saying.")
        await check_in_each_scheme(findings, "comment on a closed article (403)", page)
    finally:
        await page.close()
    assert not findings, findings.report()


async def test_the_moderation_ui_before_and_after_sign_in(
    stack: ServiceStack, story: Story, browser: Browser
) -> None:
    """In the light scheme only: the moderation style sheet has one palette and declares no `color-scheme`,
    so a dark system setting changes nothing on it."""
    held = [await comment_via_api(stack, story.guid, f"Waiting for a moderator, {uuid.uuid4().hex[:6]}.")
            for _ in range(2)]
    findings = Findings({})
    page = await browser.new_page()
    try:
        await page.goto(stack.url("comments", "/moderation/"), wait_until="load")
        await expect(page.locator("#login")).to_be_visible()
        findings.by_page["moderation sign-in"] = await violations_on(page)

        await page.fill("#token", "not-the-token")
        await page.click("#login-submit")
        await expect(page.locator("#login-error")).to_be_visible(timeout=10_000)
        findings.by_page["moderation sign-in refused"] = await violations_on(page)

        await page.fill("#token", MODERATION_TOKEN)
        await page.fill("#moderator", "Ada Access")
        await page.click("#login-submit")
        for comment_id in held:
            await page.locator(f'li.comment[data-id="{comment_id}"]').wait_for(timeout=15_000)
        first = page.locator(f'li.comment[data-id="{held[0]}"]')
        await first.click()  # the current comment, as the keys move it
        await page.keyboard.press("x")  # and selected
        await first.get_by_role("button", name="History", exact=True).click()
        await first.locator(".history-entries li").first.wait_for(timeout=10_000)
        findings.by_page["moderation queue"] = await violations_on(page)
    finally:
        await page.close()
        async with httpx.AsyncClient(base_url=stack.url("comments"), headers=MODERATION_HEADERS) as moderation:
            cleanup = await moderation.post("/moderation/comments/bulk",
                                            json={"action": "reject", "ids": held, "reason": "test clean-up"})
            assert cleanup.status_code == 202, cleanup.text
    assert not findings, findings.report()
