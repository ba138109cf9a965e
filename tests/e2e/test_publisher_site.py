"""The reader's site on the real Kafka and Redis: every page that shows an article follows its changes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import httpx
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.publisher.config import PublisherSettings
from services.publisher.live import SiteKeys
from services.publisher.rebuild import page_fingerprints, rebuild_site
from services.publisher.render import asset_path
from tests.support.drafts import ELECTION, get, make_draft, page_of, post, wait_for_version
from tests.support.stack import ServiceStack


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def eventually(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            if await check():
                return
        except AssertionError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            assert await check(), "condition not met in time"
            return
        await asyncio.sleep(0.1)


async def test_update_reaches_every_list_feed_and_sitemap(stack: ServiceStack, producer: AIOKafkaProducer) -> None:
    section = unique("sec")
    tag = unique("tag")
    author = unique("Author ")
    # The newest story of the shared stack, so it is on the home page and in the site feed whatever the earlier
    # tests published (most drafts share one 2024 date, and a tie at the page's end is settled by guid).
    draft = make_draft(section=(section, section.title()), subject=[{"code": tag, "name": tag}],
                       authors=[{"name": author, "biography": "Writes about ports."}],
                       published=datetime.now(UTC) - timedelta(minutes=10))
    await post(producer, stack, draft)
    path, body = await wait_for_version(stack, draft["guid"], 1)
    author_slug = author.lower().replace(" ", "-")
    lists = ["/", f"/section/{section}", f"/tag/{tag}", f"/author/{author_slug}", "/feed.xml",
             f"/section/{section}/feed.xml"]
    for listing in lists:
        async def shows_v1(listing: str = listing) -> bool:
            return draft["headline"] in (await get(stack, listing)).text
        await eventually(shows_v1)

    assert "Writes about ports." in (await get(stack, f"/author/{author_slug}")).text  # the author's profile

    updated = {**draft, "version": 2, "headline": f"Harbour strike ends after pay deal {draft['guid'][-6:]}",
               "authors": [{"name": author, "biography": "Covers the harbour and its unions."}]}
    await post(producer, stack, updated)
    await wait_for_version(stack, draft["guid"], 2)
    for listing in lists:
        async def shows_v2(listing: str = listing) -> bool:
            text = (await get(stack, listing)).text
            return updated["headline"] in text and draft["headline"] not in text
        await eventually(shows_v2)
    author_page = (await get(stack, f"/author/{author_slug}")).text
    assert "Covers the harbour and its unions." in author_page and "Writes about ports." not in author_page

    async def in_sitemap() -> bool:
        index = (await get(stack, "/sitemap.xml")).text
        parts = [loc.text for loc in ElementTree.fromstring(index).iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
        for part in parts:
            part_path = part.split("://", 1)[1].split("/", 1)[1]
            if path in (await get(stack, "/" + part_path)).text:
                return True
        return False
    await eventually(in_sitemap)


async def test_kill_takes_the_article_off_everything_and_answers_410(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    section = unique("kill")
    draft = make_draft(section=(section, section.title()))
    await post(producer, stack, draft)
    path, _ = await wait_for_version(stack, draft["guid"], 1)
    await post(producer, stack, {**draft, "version": 2, "pubstatus": "canceled"})

    async def gone() -> bool:
        statuses = [(await get(stack, p)).status_code for p in (path, f"/a/{draft['guid']}")]
        return statuses == [410, 410]
    await eventually(gone)
    for listing in ("/", f"/section/{section}", "/feed.xml", f"/section/{section}/feed.xml", "/news-sitemap.xml"):
        async def absent(listing: str = listing) -> bool:
            text = (await get(stack, listing)).text
            return draft["headline"] not in text and path not in text
        await eventually(absent)
    # a later version of a killed story never brings it back
    await post(producer, stack, {**draft, "version": 3})
    await asyncio.sleep(1.5)
    assert (await get(stack, path)).status_code == 410


async def test_changed_headline_of_b_reaches_the_check_also_of_a(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    topic = unique("lighthouse")
    body = (f"The {topic} keepers on the northern island voted to automate the lamp after a century of night watches. "
            f"Engineers installed solar panels and a battery bank beside the {topic} tower this spring. "
            f"Islanders said the {topic} keepers had guided fishing boats through winter storms for generations. "
            f"The coastguard will monitor the automated {topic} lamp from the mainland control room.")
    a = make_draft(body=body, headline=f"Island {topic} keepers hand over to automation")
    b_body = (f"Tourists will still be able to climb the {topic} tower in summer, the island council said. "
              f"The old {topic} keepers' cottage becomes a museum about lamps, storms and night watches. "
              f"A retired {topic} keeper will guide visitors along the island path to the tower. "
              f"Fishing crews welcomed the automated {topic} lamp but said they would miss the keepers.")
    b = make_draft(body=b_body, headline=f"Solar power comes to the {topic} tower")
    await post(producer, stack, a)
    await post(producer, stack, b)
    await wait_for_version(stack, a["guid"], 1)
    await wait_for_version(stack, b["guid"], 1)

    async def a_shows_b(headline: str) -> bool:
        _, _, page = await page_of(stack, a["guid"])
        return 'class="check-also"' in page and f'data-guid="{b["guid"]}"' in page and headline in page
    await eventually(lambda: a_shows_b(b["headline"]), timeout=15)

    renamed = f"Tower of {topic} now runs on the sun"
    await post(producer, stack, {**b, "version": 2, "headline": renamed})
    await eventually(lambda: a_shows_b(renamed), timeout=15)

    await post(producer, stack, {**b, "version": 3, "pubstatus": "canceled"})

    async def a_drops_b() -> bool:
        _, _, page = await page_of(stack, a["guid"])
        return f'data-guid="{b["guid"]}"' not in page
    await eventually(a_drops_b, timeout=15)


async def test_slug_change_leaves_a_301_and_the_feed_guid_stays(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    section = unique("slug")
    draft = make_draft(section=(section, section.title()), slugline="first slug line")
    await post(producer, stack, draft)
    old_path, _ = await wait_for_version(stack, draft["guid"], 1)
    await post(producer, stack, {**draft, "version": 2, "slugline": "second slug line"})
    new_path, _ = await wait_for_version(stack, draft["guid"], 2)
    assert old_path != new_path and new_path.endswith("second-slug-line")
    moved = await get(stack, old_path)
    assert moved.status_code == 301 and moved.headers["location"] == new_path

    async def one_feed_item() -> bool:
        feed = (await get(stack, f"/section/{section}/feed.xml")).text
        items = ElementTree.fromstring(feed).findall("./channel/item")
        guids = [item.findtext("guid") for item in items]
        return guids == [draft["guid"]] and new_path in feed
    await eventually(one_feed_item)


async def test_a_rewrite_ingested_before_its_original_still_receives_the_originals_links(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    """Partition lag, or the original redriven from the dead-letter topic: the rewrite arrives first and
    lives at a path of its own; the original's `/a/`, path and old paths must all lead there."""
    section = unique("rw")
    original = make_draft(section=(section, section.title()), slugline="original story line")
    rewrite = make_draft(section=(section, section.title()), slugline="rewritten story line",
                         evolvedfrom=original["guid"], published=datetime(2024, 3, 21, 9, 0, tzinfo=UTC))
    await post(producer, stack, rewrite)
    rewrite_path, _ = await wait_for_version(stack, rewrite["guid"], 1)
    await post(producer, stack, original)

    async def original_leads_to_the_rewrite() -> bool:
        first = await get(stack, f"/a/{original['guid']}")
        return first.status_code == 301 and first.headers["location"] == rewrite_path
    await eventually(original_leads_to_the_rewrite)
    status, path, _ = await page_of(stack, original["guid"])
    assert status == 200 and path == rewrite_path


async def test_news_sitemap_lists_only_the_last_48_hours(stack: ServiceStack, producer: AIOKafkaProducer) -> None:
    fresh = make_draft(body=ELECTION, published=datetime.now(UTC) - timedelta(hours=2),
                       headline=f"Election goes to a second round {uuid.uuid4().hex[:6]}")
    old = make_draft(body=ELECTION, published=datetime.now(UTC) - timedelta(hours=60),
                     headline=f"Campaign opens in the capital {uuid.uuid4().hex[:6]}")
    await post(producer, stack, fresh)
    await post(producer, stack, old)
    fresh_path, _ = await wait_for_version(stack, fresh["guid"], 1)
    old_path, _ = await wait_for_version(stack, old["guid"], 1)

    async def only_fresh() -> bool:
        text = (await get(stack, "/news-sitemap.xml")).text
        return fresh_path in text and old_path not in text
    await eventually(only_fresh)


async def test_http_caching_compression_and_security_headers(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    draft = make_draft()
    await post(producer, stack, draft)
    path, body = await wait_for_version(stack, draft["guid"], 1)
    page = await get(stack, path, headers={"accept-encoding": "gzip"})
    assert page.status_code == 200
    assert page.headers["content-encoding"] == "gzip"
    assert "stale-while-revalidate" in page.headers["cache-control"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"]
    assert page.headers["last-modified"].endswith("GMT")
    # The page may legitimately change meanwhile (its Check Also arrives after it): then a 200 with a new ETag.
    etag = page.headers["etag"]
    for _ in range(5):
        not_modified = await get(stack, path, headers={"if-none-match": etag})
        if not_modified.status_code == 304:
            break
        assert not_modified.status_code == 200 and not_modified.headers["etag"] != etag
        etag = not_modified.headers["etag"]
    assert not_modified.status_code == 304 and not_modified.content == b""
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        head = await client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 1000
    assert (await get(stack, "/no/such/page")).status_code == 404
    robots = await get(stack, "/robots.txt")
    assert robots.status_code == 200 and "sitemap.xml" in robots.text.lower()
    assert page.headers["date"].endswith(" GMT") and "content-length" not in not_modified.headers
    star = await get(stack, path, headers={"if-none-match": "*"})
    assert star.status_code == 304
    css = await get(stack, asset_path("site.css"))
    assert css.status_code == 200 and "immutable" in css.headers["cache-control"]
    # Only the asset's own hash is kept for a year: another replica's version must not be cached as this file.
    for other in ("/static/site.css?v=000000000000", "/static/site.css"):
        stale = await get(stack, other)
        assert stale.status_code == 200 and "immutable" not in stale.headers["cache-control"], other
    # every answer is counted and timed by route, for the dashboard's request rate and time panels
    metrics = (await get(stack, "/metrics")).text
    for route in ("page", "missing", "static"):
        assert f'broadsheet_http_requests_total{{route="{route}",service="publisher",status="' in metrics, route
        assert f'broadsheet_http_request_seconds_count{{route="{route}",service="publisher"}}' in metrics, route


async def test_flush_and_rebuild_gives_byte_identical_pages(stack: ServiceStack, producer: AIOKafkaProducer) -> None:
    drafts = [make_draft(section=("rebuild", "Rebuild")) for _ in range(5)]
    for draft in drafts:
        await post(producer, stack, draft)
    for draft in drafts:
        await wait_for_version(stack, draft["guid"], 1)
    await stack.wait_idle()  # every consumer caught up: the site is what the log says it is

    client = aioredis.Redis.from_url(stack.redis)
    settings = stack.settings("publisher", PublisherSettings)
    keys = SiteKeys(stack.namespace)
    try:
        active = (await client.get(keys.active) or stack.namespace.encode()).decode()
        before = {p: f for p, f in (await page_fingerprints(client, active)).items() if p != "/news-sitemap.xml"}
        bodies_before = {p: (await get(stack, p)).content for p in ("/", "/section/rebuild", "/feed.xml")}

        dry = await rebuild_site(settings, client, dry_run=True, settle_seconds=0.5)
        assert not dry.switched
        assert [p for p in dry.changed if p != "/news-sitemap.xml"] == [], "\n".join(dry.diffs.values())
        assert not dry.removed, dry.removed[:10]

        async def identical_in(namespace: str) -> tuple[list[str], list[str]]:
            after = {p: f for p, f in (await page_fingerprints(client, namespace)).items() if p != "/news-sitemap.xml"}
            missing = sorted(set(before) - set(after))
            differing = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
            return missing, differing

        report = await rebuild_site(settings, client, settle_seconds=0.5, keep_old_seconds=0.5)
        assert report.switched
        assert not [p for p in report.changed if p != "/news-sitemap.xml"], "\n".join(report.diffs.values())

        # The reference for what follows: the site as served now that every consumer is idle again.
        await stack.wait_idle()
        before = {p: f for p, f in (await page_fingerprints(client, report.new_namespace)).items()
                  if p != "/news-sitemap.xml"}

        # Redis loses everything: the publisher notices and rebuilds the site from the log by itself.
        # Everything of this site at once (one command), as a FLUSHALL or an empty restart would.
        doomed = [key async for key in client.scan_iter(match=f"{stack.namespace}*", count=1000)]
        await client.delete(*doomed)

        last: list[object] = []

        async def rebuilt() -> bool:
            namespace = (await client.get(keys.active) or b"").decode()
            if not namespace or await client.exists(SiteKeys.built(namespace)) != 1:
                return False
            last[:] = [namespace, await identical_in(namespace)]
            return last[1] == ([], [])
        try:
            await eventually(rebuilt, timeout=20)
        except AssertionError as exc:
            raise AssertionError(f"site not rebuilt identically: {last}") from exc

        async def served_again() -> bool:
            return [(await get(stack, p)).content for p in bodies_before] == list(bodies_before.values())
        await eventually(served_again, timeout=5)
    finally:
        await client.aclose()
